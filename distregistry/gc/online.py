"""Online GC: the same mark and sweep as ``garbage-collect``, from the maintenance service,
while the registry serves (``storage.maintenance.gc``).

What keeps it safe under concurrent pushes (see ``guard`` and the README):
- blobs, layer links and manifest revisions modified within ``graceperiod`` are kept, and
  what a young link names is marked: an upload committed for a push whose manifest is not
  there yet keeps its blob;
- uploads, mounts and manifest PUTs of this process record the digests they rely on before
  they check them; the sweep claims each digest right before deleting it and skips what was
  recorded since the run started (or within the grace period);
- before each delete the path is stat'ed again and kept if it was modified since the mark.
It never deletes manifests (there is no online ``--delete-untagged``): only blobs no
manifest revision reaches and layer links no manifest references.
"""

import random

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger, LogLevel

from distregistry.gc.collect import Report, garbage_collect, human_bytes
from distregistry.gc.state import Options

log = Logger()


class OnlineGC(service.Service):
    """Runs every ``interval`` (measured from the end of the previous run, so runs never
    overlap); a failed run is logged and the schedule goes on."""

    def __init__(self, registry, config, clock):
        self._registry = registry
        self._config = config
        self._clock = clock
        self._call = None
        self._running = None
        self.runs = 0

    def startService(self):
        super().startService()
        # Pushes must be recorded for at least the grace period from now on.
        self._registry.gc_guard.window = self._config.graceperiod
        # Spread replicas that were started together, as the upload purger does.
        delay = self._config.interval * random.uniform(0.5, 1.0)
        log.info("Starting online garbage collection in {delay:.0f}s (every {interval:.0f}s, grace period "
                 "{grace:.0f}s{dry})", delay=delay, interval=self._config.interval,
                 grace=self._config.graceperiod, dry=", dry run" if self._config.dryrun else "")
        self._call = self._clock.callLater(delay, self._run)

    def run_once(self):
        """Deferred[Result] of one run now."""
        return defer.ensureDeferred(self._collect())

    async def _collect(self):
        cfg = self._config
        options = Options(dry_run=cfg.dryrun, grace=cfg.graceperiod)
        started = self._clock.seconds()
        self.runs += 1
        run = self.runs
        log.info("garbage collection run {run} started", run=run)
        # Per-item lines at debug; the totals at info (the blank separator line is for terminals).
        report = Report(lambda line: log.debug("gc: {line}", line=line),
                        lambda line: log.info("gc: {line}", line=line) if line else None)
        result = await garbage_collect(self._registry, options, report, guard=self._registry.gc_guard)
        log.info("garbage collection run {run} finished in {seconds:.2f}s: {repositories} repositories, "
                 "{marked} blobs marked, {deleted} blobs deleted ({freed}), {kept} kept by the re-check",
                 run=run, seconds=self._clock.seconds() - started, repositories=result.repositories,
                 marked=result.marked, deleted=result.blobs_deleted, freed=human_bytes(result.bytes_freed),
                 kept=result.kept)
        return result

    def _run(self):
        self._call = None
        self._running = self.run_once()
        self._running.addErrback(lambda f: log.failure("garbage collection run failed", f, level=LogLevel.error))
        self._running.addBoth(self._schedule)

    def _schedule(self, _):
        self._running = None
        if self.running:
            self._call = self._clock.callLater(self._config.interval, self._run)

    def stopService(self):
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        # A run in progress finishes before the driver is closed under it.
        if self._running is not None:
            d = defer.Deferred()
            self._running.addBoth(lambda _: d.callback(None))
            return d
        return None
