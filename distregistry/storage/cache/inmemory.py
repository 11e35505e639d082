"""``blobdescriptor: inmemory``: an LRU of ``blobdescriptorsize`` entries in this process.

Per process: a delete on another replica is not seen here (use ``redis`` with replicas)."""

from collections import OrderedDict

from twisted.internet import defer

from distregistry.storage.cache import CacheStats


class InMemoryDescriptorCache:
    def __init__(self, size=0):
        self._size = size  # 0: unbounded, as registry:2's blobdescriptorsize 0
        self._entries = OrderedDict()
        self.stats = CacheStats()

    def get(self, repo, digest):
        descriptor = self._entries.get((repo, digest))
        if descriptor is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            self._entries.move_to_end((repo, digest))
        return defer.succeed(descriptor)

    def set(self, repo, descriptor):
        self._entries[(repo, descriptor.digest)] = descriptor
        self._entries.move_to_end((repo, descriptor.digest))
        while self._size and len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return defer.succeed(None)

    def clear(self, repo, digest):
        self._entries.pop((repo, digest), None)
        return defer.succeed(None)

    def close(self):
        return defer.succeed(None)
