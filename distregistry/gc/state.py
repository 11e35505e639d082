"""What one GC run carries from the mark phase to the sweep: only digests, never manifest bodies."""

import attr
from twisted.internet import defer


@attr.s(frozen=True, slots=True)
class Options:
    dry_run = attr.ib(default=False)
    delete_untagged = attr.ib(default=False)
    # Seconds: blobs, layer links and revision links modified more recently are kept (and what
    # a young link names is marked). 0 for the offline command, as registry:2.
    grace = attr.ib(default=0.0)
    # Driver calls in flight at once (S3 latency is hidden by parallel requests, not speed).
    concurrency = attr.ib(default=16)


@attr.s(frozen=True, slots=True)
class ManifestCandidate:
    repository = attr.ib()
    digest = attr.ib()
    subject = attr.ib()   # digest of its subject, or None: its referrers-index entry goes too


class RunState:
    def __init__(self, driver, options, now, invalidate, guard=None, since=None):
        self.driver = driver
        self.invalidate = invalidate   # GCGuard.deleted: the cache invalidation hook, online or not
        self.options = options
        # Links and blobs modified at or after this are young (kept, and what they name marked).
        self.horizon = now - options.grace if options.grace > 0 else None
        self.guard = guard
        self.since = since          # the guard protects what pushes recorded at or after this
        self.marked = set()         # every digest reachable from a kept manifest, plus young links
        self.manifest_candidates = []
        self.layer_candidates = []  # (repository, digest): links not marked by their repository
        self.limit = defer.DeferredSemaphore(options.concurrency)

    def is_young(self, modtime):
        return self.horizon is not None and modtime >= self.horizon

    def mark(self, digest):
        """True if *digest* was not marked yet."""
        if digest in self.marked:
            return False
        self.marked.add(digest)
        return True

    def call(self, fn, *args):
        """One driver call under the run's concurrency limit."""
        return self.limit.run(fn, *args)
