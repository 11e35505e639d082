"""One garbage-collection run: mark every repository, then sweep. Shared by the offline
command and the online service; only *options*, the guard and the report differ."""

import sys

import attr

from distregistry.gc.mark import mark_repository, repositories
from distregistry.gc.state import RunState
from distregistry.gc.sweep import eligible_blobs, sweep_blobs, sweep_layer_links, sweep_manifests


@attr.s(slots=True)
class Result:
    repositories = attr.ib(default=0)
    marked = attr.ib(default=0)
    blobs_eligible = attr.ib(default=0)
    manifests_eligible = attr.ib(default=0)
    layer_links_eligible = attr.ib(default=0)
    blobs_deleted = attr.ib(default=0)
    bytes_freed = attr.ib(default=0)   # would be freed, in a dry run
    kept = attr.ib(default=0)          # eligible at mark time, kept by the re-check before deleting


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class Report:
    """registry:2's output lines. *item* gets the per-manifest/per-blob lines (None: --quiet),
    *summary* the totals; *progress* (on a TTY) gets ``(phase, done, total)``."""

    def __init__(self, item, summary, progress=None):
        self._item = item
        self._summary = summary
        self._progress = progress
        self.result = Result()
        self._sweep_total = 0
        self._swept = 0

    def _line(self, text):
        if self._item is not None:
            self._item(text)

    def repository(self, name, done, total):
        self._line(name)
        self.result.repositories += 1
        if self._progress is not None:
            self._progress("marking repositories", done, total)

    def marking_manifest(self, name, digest):
        self._line(f"{name}: marking manifest {digest} ")   # registry:2's trailing space

    def marking_blob(self, name, digest):
        self._line(f"{name}: marking blob {digest}")

    def manifest_eligible(self, name, digest, tags):
        self._line(f"manifest eligible for deletion: {{{name} {digest} [{' '.join(tags)}]}}")

    def totals(self, marked, blobs, manifests):
        self.result.marked, self.result.blobs_eligible, self.result.manifests_eligible = marked, blobs, manifests
        self._sweep_total = blobs
        self._summary("")
        self._summary(f"{marked} blobs marked, {blobs} blobs and {manifests} manifests eligible for deletion")

    def blob_eligible(self, digest):
        self._line(f"blob eligible for deletion: {digest}")

    def layer_eligible(self, name, digest):
        self._line(f"{name}: layer link eligible for deletion: {digest}")

    def deleting(self, kind, path):
        self._line(f"Deleting {kind}: {path}")

    def kept(self, kind, name, digest):
        self.result.kept += 1
        where = f" in {name}" if name else ""
        self._line(f"{kind} {digest}{where} kept: referenced or modified since the mark")

    def swept(self, deleted):
        self._swept += 1
        self.result.blobs_deleted += deleted
        if self._progress is not None:
            self._progress("deleting blobs", self._swept, self._sweep_total)

    def done(self, bytes_freed, layer_links, dry_run):
        self.result.bytes_freed = bytes_freed
        self.result.layer_links_eligible = layer_links
        verb = "would free" if dry_run else "freed"
        self._summary(f"{verb} {bytes_freed} bytes ({human_bytes(bytes_freed)}) in "
                      f"{self.result.blobs_eligible if dry_run else self.result.blobs_deleted} "
                      f"blobs; {layer_links} layer links "
                      f"{'eligible for deletion' if dry_run else 'deleted'}")


def tty_progress(stream=sys.stderr):
    """A one-line progress display on *stream* if it is a terminal, else None."""
    if not stream.isatty():
        return None

    def show(phase, done, total):
        stream.write(f"\r{phase}: {done}/{total} ({100 * done // max(total, 1)}%)")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show


async def garbage_collect(registry, options, report, guard=None):
    """Mark and sweep *registry*'s storage; returns the report's Result.

    With a *guard* (online), a run registers itself so what pushes record while it runs is
    protected, and every delete is claimed against those pushes first.
    """
    token = guard.begin_run() if guard is not None else None
    try:
        now = registry.clock.seconds()
        since = (now - options.grace) if guard is not None else None
        state = RunState(registry.driver, options, now, registry.gc_guard.deleted, guard=guard, since=since)
        names = await repositories(state)   # names only, a few bytes per repository
        for i, name in enumerate(names, 1):
            report.repository(name, i, len(names))
            await mark_repository(state, name, report)
        await sweep_manifests(state, report)
        blobs = await eligible_blobs(state)
        report.totals(len(state.marked), len(blobs), len(state.manifest_candidates))
        freed = await sweep_blobs(state, blobs, report)
        links = await sweep_layer_links(state, report)
        report.done(freed, links, options.dry_run)
        return report.result
    finally:
        if guard is not None:
            guard.end_run(token)
