"""Upload purging (registry:2's storage/purgeuploads.go).

Walks every repository's ``_uploads/<uuid>`` directory and deletes those whose
``startedat`` is older than the cut-off. A missing or unparseable ``startedat`` means
"never purge" (registry:2 dates such uploads 10000 hours into the future); an unparseable
or unreadable one also counts as an error. Logs the lines registry:2 logs.

Unlike registry:2, an upload whose ``data`` was written to after the cut-off is kept: it is
in progress (a large layer pushed in chunks over a slow link can outlive ``age``), and
deleting its directory under a running PATCH would fail the push.
"""

import math
import re
import time
from datetime import datetime, timezone

from twisted.logger import Logger

from distregistry.registry import deferred, paths
from distregistry.registry.uploads import UUID_RE
from distregistry.storage.driver.base import PathNotFoundError, SkipDir

log = Logger()

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:Z|([+-])(\d{2}):(\d{2}))$")


def parse_rfc3339(text):
    """POSIX seconds of an RFC 3339 timestamp, as Go's ``time.Parse(time.RFC3339, ...)``;
    ValueError otherwise."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"parsing time {text!r} as RFC3339: bad format")
    when = datetime(*(int(g) for g in match.group(1, 2, 3, 4, 5, 6)), tzinfo=timezone.utc)   # checks ranges
    seconds = when.timestamp() + float(match.group(7) or 0)
    if match.group(8):
        offset = int(match.group(9)) * 3600 + int(match.group(10)) * 60
        seconds += -offset if match.group(8) == "+" else offset
    return seconds


def go_time(seconds):
    """Go's ``time.Time.String()`` for a UTC time: ``2006-01-02 15:04:05.999999999 +0000 UTC``."""
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1_000_000_000)   # on the fraction alone: floats lack the digits
    whole, nanos = whole + nanos // 1_000_000_000, nanos % 1_000_000_000
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + fraction + " +0000 UTC"


async def _outstanding_uploads(driver, errors):
    """``[(upload dir, startedat seconds or None)]`` for every ``_uploads/<uuid>`` dir."""
    found = []

    def visit(info):
        parent, _, base = info.path.rpartition("/")
        if not info.is_dir:
            return None
        if parent.endswith("/_uploads"):
            if UUID_RE.match(base):
                found.append(info.path)
            raise SkipDir()   # nothing below an upload dir is needed to date it
        if base.startswith("_") and base != "_uploads":
            raise SkipDir()
        return None

    try:
        await driver.walk(paths.REPOSITORIES, visit)
    except PathNotFoundError:
        pass
    except Exception as error:
        errors.append(error)

    uploads = []
    for upload_dir in found:
        started = None
        try:
            started = parse_rfc3339((await driver.get_content(upload_dir + "/startedat")).decode("ascii"))
        except PathNotFoundError:
            pass
        except Exception as error:   # unparseable or unreadable: counted, never purged
            errors.append(error)
        uploads.append((upload_dir, started))
    return uploads


async def _last_write(driver, upload_dir):
    """Modification time of the upload's data, None when it has none (yet)."""
    try:
        return (await driver.stat(upload_dir + "/data")).modtime
    except PathNotFoundError:
        return None


@deferred
async def purge_uploads(driver, older_than_epoch, actually_delete):
    """Deferred[(deleted upload dirs, errors)]."""
    older_than = go_time(older_than_epoch)
    log.info("PurgeUploads starting: olderThan={olderThan}, actuallyDelete={actuallyDelete}",
             olderThan=older_than, actuallyDelete="true" if actually_delete else "false")
    errors = []
    deleted = []
    for upload_dir, started in await _outstanding_uploads(driver, errors):
        if started is None or started >= older_than_epoch:
            continue
        written = await _last_write(driver, upload_dir)
        if written is not None and written >= older_than_epoch:
            log.info("Upload files in {containingDir} have older date ({startedAt}) than purge date ({olderThan}), "
                     "but were written to at {writtenAt}: in progress, kept.",
                     containingDir=upload_dir, startedAt=go_time(started), olderThan=older_than,
                     writtenAt=go_time(written))
            continue
        log.info("Upload files in {containingDir} have older date ({startedAt}) than purge date ({olderThan}).  "
                 + ("Removing upload directory." if actually_delete else "Dry run: not removing the upload directory."),
                 containingDir=upload_dir, startedAt=go_time(started), olderThan=older_than)
        try:
            if actually_delete:
                await driver.delete(upload_dir)
        except Exception as error:
            errors.append(error)
        else:
            deleted.append(upload_dir)
    log.info("Purge uploads finished.  Num deleted={deleted}, num errors={errors}",
             deleted=len(deleted), errors=len(errors))
    return deleted, errors
