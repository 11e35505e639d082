"""What keeps online GC from deleting what a push depends on, and the cache invalidation hook.

One ``GCGuard`` per Registry (process-wide: the API makes a Repository per request). The
upload commit, cross-repository mount and manifest PUT call ``record()`` with every digest
they are about to rely on, *before* they check that it exists. The sweep calls ``claim()``
right before it deletes a digest's blob or layer link and ``release()`` after. Both run on
the reactor thread, so for each digest one of two orders holds:

- ``record`` first: ``claim`` sees the digest referenced within the window and refuses;
- ``claim`` first: ``record`` waits for the delete to finish, so the push's existence check
  then sees the blob gone and the push fails cleanly (BLOB_UNKNOWN / re-upload) instead of
  linking a manifest to data that vanishes a moment later.

Entries live for the GC's grace period (longer while a run that started earlier is going),
so a push that re-uploads a blob which already existed unreferenced (its data keeps its old
modtime) is protected too. With online GC off the window is 0 and nothing is kept.
"""

from collections import OrderedDict

from twisted.internet import defer


class GCGuard:
    def __init__(self, clock):
        self._clock = clock
        self.window = 0.0            # seconds; set by the online GC service to its grace period
        self._seen = OrderedDict()   # digest -> last time recorded, oldest first
        self._deleting = {}          # digest -> [deletes holding it, [Deferred] of pushes waiting]
        self._runs = []              # start times of GC runs in progress (keep what they may need)
        self._invalidators = []

    # -- pushes ---------------------------------------------------------------------------

    def record(self, digests):
        """Deferred firing once no GC delete of any of *digests* is in flight."""
        now = self._clock.seconds()
        waits = []
        for digest in digests:
            if self.window > 0 or self._runs:
                self._seen[digest] = now
                self._seen.move_to_end(digest)
            if digest in self._deleting:
                d = defer.Deferred()
                self._deleting[digest][1].append(d)
                waits.append(d)
        self._prune(now)
        return defer.gatherResults(waits) if waits else defer.succeed(None)

    def _prune(self, now):
        horizon = now - self.window
        if self._runs:
            horizon = min(horizon, min(self._runs) - self.window)
        while self._seen:
            digest, when = next(iter(self._seen.items()))
            if when >= horizon:
                break
            self._seen.popitem(last=False)

    # -- the sweep --------------------------------------------------------------------------

    def begin_run(self):
        """A GC run starts: what is recorded from now on stays until it ends. Returns a token."""
        start = self._clock.seconds()
        self._runs.append(start)
        return start

    def end_run(self, token):
        self._runs.remove(token)

    def referenced_since(self, digest, since):
        when = self._seen.get(digest)
        return when is not None and when >= since

    def claim(self, digest, since):
        """True (and the digest is held until ``release``) unless a push recorded it at or after
        *since*. Several deletes may hold one digest (its layer links in several repositories)."""
        if self.referenced_since(digest, since):
            return False
        self._deleting.setdefault(digest, [0, []])[0] += 1
        return True

    def release(self, digest):
        held = self._deleting[digest]
        held[0] -= 1
        if held[0] == 0:
            del self._deleting[digest]
            for d in held[1]:
                d.callback(None)

    # -- caches -----------------------------------------------------------------------------

    def add_invalidator(self, fn):
        """``fn(kind, repository, digest)`` is called after GC deleted something: kind "blob"
        once with repository None (the data is gone for every repository) and once for each
        repository linking it, "layer" (one repository's link) or "manifest" (a revision).
        Descriptor caches (in-memory, Redis) plug in here; *fn* may return a Deferred."""
        self._invalidators.append(fn)

    def deleted(self, kind, repository, digest):
        """Deferred: every invalidator has run (a Redis one returns a Deferred)."""
        return defer.gatherResults([defer.maybeDeferred(fn, kind, repository, digest)
                                    for fn in self._invalidators], consumeErrors=True)
