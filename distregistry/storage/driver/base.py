"""The storage driver contract: bytes and paths only, every call Deferred-returning.

Drivers know nothing of digests, manifests or the registry layout (that is
``distregistry.registry.paths``). Paths are absolute, ``/``-separated and must match
registry:2's ``PathRegexp``; a driver raises :class:`InvalidPathError` otherwise, so a
hostile name can never reach outside the driver's root.
"""

import functools
import re

import attr
from zope.interface import Attribute, Interface

PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


class StorageDriverError(Exception):
    """Base of driver errors; carries the driver name and path."""

    def __init__(self, path, driver="", message=""):
        self.path = path
        self.driver = driver
        super().__init__(message or f"{type(self).__name__}: {driver}: {path}")


class PathNotFoundError(StorageDriverError):
    pass


class InvalidPathError(StorageDriverError):
    pass


class InvalidOffsetError(StorageDriverError):
    pass


def check_path(path, driver=""):
    """Raise InvalidPathError unless *path* is a clean absolute driver path.

    ``/`` alone is allowed (the root, for stat/list/walk).
    """
    if type(path) is not str or not _clean(path):
        raise InvalidPathError(path, driver)
    return path


@functools.lru_cache(maxsize=4096)   # pure, and hot paths (links, blobs) recur request after request
def _clean(path):
    return path == "/" or (PATH_RE.fullmatch(path) is not None and
                           not any(p in (".", "..") for p in path.split("/")))


@attr.s(frozen=True, slots=True)
class FileInfo:
    path = attr.ib()
    size = attr.ib(default=0)
    modtime = attr.ib(default=0.0)   # POSIX seconds
    is_dir = attr.ib(default=False)


class SkipDir(Exception):
    """Raised (or returned) by a walk visitor to skip the directory it was given."""


class IFileReader(Interface):
    def read(n):
        """Deferred[bytes]: up to *n* bytes; b"" at end of file."""

    def close():
        """Release the underlying handle (idempotent, synchronous)."""


class ILocalFileReader(IFileReader):
    """A reader on a local OS file, which a caller may send with ``os.sendfile`` instead of
    read() (no copy through Python). Only drivers whose bytes are in a local file provide it."""

    offset = Attribute("position in the file of the next read()")

    def fileno():
        """The file's OS descriptor, owned by the reader and valid until close(). Reading it
        with an explicit offset (pread, sendfile) does not move ``offset``."""

    def cached(offset, count):
        """Whether bytes [offset, offset+count) are in the page cache, so sendfile would not
        wait for the disk; answered without waiting (may say False when unsure)."""

    def prefetch(offset, count):
        """Deferred firing once bytes [offset, offset+count) were read into the page cache
        (in the driver's threads, never on the caller's)."""


class IFileWriter(Interface):
    size = Attribute("bytes written so far (including those from before an append)")

    def write(data):
        """Deferred firing once *data* is stored. Writes are applied in call order;
        callers may queue several and use the Deferreds for backpressure."""

    def commit():
        """Deferred: make all written bytes durable and visible at the path."""

    def cancel():
        """Deferred: abandon the write and remove what it wrote."""

    def close():
        """Deferred: stop writing, keep what was written (appendable later)."""


class IStorageDriver(Interface):
    name = Attribute("driver name as in config.yml, e.g. 'filesystem'")

    def get_content(path):
        """Deferred[bytes]; PathNotFoundError if absent. For small files only."""

    def put_content(path, data):
        """Deferred: atomically replace the file at *path* with *data*."""

    def reader(path, offset=0):
        """Deferred[IFileReader] positioned at *offset*; InvalidOffsetError past the end."""

    def writer(path, append=False):
        """Deferred[IFileWriter]; append continues an existing file (PathNotFoundError if absent)."""

    def stat(path):
        """Deferred[FileInfo]; PathNotFoundError if absent."""

    def list(path):
        """Deferred[list[str]]: full paths of the direct children, sorted; PathNotFoundError if absent.
        Listing ``/`` of an empty driver gives []."""

    def move(source, dest):
        """Deferred: rename, replacing *dest*; PathNotFoundError if *source* is absent."""

    def delete(path):
        """Deferred: remove a file or a whole tree; PathNotFoundError if absent."""

    def walk(path, visit, start_after=None):
        """Deferred: call ``visit(FileInfo)`` for every entry below *path*, depth first, children
        in sorted order. *visit* may return a Deferred; raising SkipDir on a directory skips it.
        *start_after*: a path below *path* the walk may start after (registry:2's
        ``WithStartAfterHint``): a driver may skip what comes before it, or walk it all."""

    def redirect_url(method, path):
        """Deferred[str or None]: a URL the client can fetch *path* from directly, or None."""
