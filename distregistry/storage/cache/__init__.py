"""Blob-descriptor caches (``storage.cache.blobdescriptor``): what ``BlobStore.stat`` found
for a blob in a repository, so a hit costs no storage request.

Every cache provides ``get(repo, digest)`` (Deferred[Descriptor or None]), ``set(repo,
descriptor)`` and ``clear(repo, digest)``; none of them ever fails: a broken cache reads
as a miss, is counted in ``stats.errors`` and logged, and the caller goes to storage.
"""

import attr


@attr.s(slots=True)
class CacheStats:
    """Counters of one cache, for the metrics endpoint (registry:2's
    ``registry_storage_cache_{requests,hits,misses,errors}_total``)."""

    hits = attr.ib(default=0)
    misses = attr.ib(default=0)
    errors = attr.ib(default=0)

    @property
    def requests(self):
        return self.hits + self.misses


def build(kind, size=0, redis=None, reactor=None):
    """The cache for ``storage.cache.blobdescriptor`` *kind* (None: no cache)."""
    if kind is None:
        return None
    if kind == "inmemory":
        from distregistry.storage.cache.inmemory import InMemoryDescriptorCache

        return InMemoryDescriptorCache(size)
    from distregistry.storage.cache.redis import RedisDescriptorCache

    return RedisDescriptorCache(redis, reactor=reactor)
