"""``blobdescriptor: redis``: registry:2's Redis keys (storage/cache/redis/redis.go), so the
cache is shared by every replica:

- ``blobs::<digest>``: hash ``{digest, size, mediatype}``
- ``repository::<repo>::blobs``: set of the digests linked into the repository
- ``repository::<repo>::blobs::<digest>``: hash ``{mediatype}``

No TTLs are set (as registry:2): give Redis ``maxmemory-policy allkeys-lru``.

txredisapi waits for its reconnect without failing while Redis is down (twisted.md 1.4),
so every command has a timeout (``readtimeout``); after a failure Redis is left alone for
RETRY_AFTER seconds and requests go straight to storage. ``clear`` is always tried: a
delete must not leave a stale "exists" behind when Redis answers.
"""

from twisted.internet import defer, ssl
from twisted.logger import Logger

import txredisapi

from distregistry.descriptor import Descriptor
from distregistry.storage.cache import CacheStats

log = Logger()

RETRY_AFTER = 5.0


def _tls_creator(config):
    trust = None
    if config.tls_rootcas:
        certs = []
        for path in config.tls_rootcas:
            with open(path, "rb") as f:
                certs.append(ssl.Certificate.loadPEM(f.read()))
        trust = ssl.trustRootFromCertificates(certs)
    client = None
    if config.tls_certificate:
        with open(config.tls_certificate, "rb") as c, open(config.tls_key, "rb") as k:
            client = ssl.PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())
    return ssl.optionsForClientTLS(config.host, trustRoot=trust, clientCertificate=client)


class RedisDescriptorCache:
    def __init__(self, config, reactor=None, retry_after=RETRY_AFTER):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._timeout = config.readtimeout
        self._retry_after = retry_after
        self._down_until = 0.0
        self._failing = False
        # (repo, digest) deleted while Redis failed: its entry there is stale until removed
        self._pending_clears = set()
        self.stats = CacheStats()
        self.address = f"{config.host}:{config.port}"
        self._redis = txredisapi.lazyConnectionPool(
            config.host, config.port, dbid=config.db, poolsize=config.poolsize,
            password=config.password or None, username=config.username or None,
            ssl_context_factory=_tls_creator(config) if config.tls else False,
            connectTimeout=config.dialtimeout, replyTimeout=config.readtimeout,
            # Never turn a stored value into an int (twisted.md 1.4).
            convertNumbers=False,
        )

    def close(self):
        return self._redis.disconnect()

    async def _call(self, fn):
        """Run one command with a timeout; None (and counted, logged) when Redis fails."""
        d = fn()
        d.addTimeout(self._timeout, self._reactor)
        try:
            result = await d
        except Exception as e:
            self.stats.errors += 1
            self._down_until = self._reactor.seconds() + self._retry_after
            if not self._failing:
                self._failing = True
                log.error("redis {address} unavailable ({error!r}): blob descriptors come from storage",
                          address=self.address, error=e)
            raise _Unavailable() from None
        if self._failing:
            self._failing = False
            log.info("redis {address} answers again: blob-descriptor cache back in use", address=self.address)
        return result

    def _skipping(self):
        return self._reactor.seconds() < self._down_until

    def get(self, repo, digest):
        return defer.ensureDeferred(self._get(repo, digest))

    async def _get(self, repo, digest):
        if self._skipping():
            self.stats.errors += 1
            return None
        try:
            if self._pending_clears:
                await self._flush_pending()
            if (repo, digest) in self._pending_clears:
                self.stats.misses += 1
                return None
            member = await self._call(lambda: self._redis.sismember(f"repository::{repo}::blobs", digest))
            if not member:
                self.stats.misses += 1
                return None
            fields = await self._call(lambda: self._redis.hmget(f"blobs::{digest}", ["digest", "size", "mediatype"]))
        except _Unavailable:
            return None
        stored, size, media_type = fields
        if stored != digest or not size or not size.isdigit():
            # Half written, or cleared from the global hash: ask storage.
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return Descriptor(media_type=media_type, digest=digest, size=int(size))

    def set(self, repo, descriptor):
        return defer.ensureDeferred(self._set(repo, descriptor))

    async def _set(self, repo, descriptor):
        if self._skipping():
            return
        digest = descriptor.digest
        try:
            # The global hash first: a membership without it reads as a miss, never wrong.
            await self._call(lambda: self._redis.hmset(
                f"blobs::{digest}", {"digest": digest, "size": str(descriptor.size), "mediatype": descriptor.media_type}))
            await self._call(lambda: self._redis.hset(f"repository::{repo}::blobs::{digest}", "mediatype",
                                                      descriptor.media_type))
            await self._call(lambda: self._redis.sadd(f"repository::{repo}::blobs", digest))
        except _Unavailable:
            pass

    def clear(self, repo, digest):
        return defer.ensureDeferred(self._clear(repo, digest))

    async def _clear(self, repo, digest):
        try:
            await self._remove(repo, digest)
        except _Unavailable:
            # Kept here, read as a miss, and removed from Redis once it answers again.
            self._pending_clears.add((repo, digest))
            log.warn("blob {digest} deleted from {repo}: its cache entry is removed when redis is back",
                     digest=digest, repo=repo)

    async def _remove(self, repo, digest):
        await self._call(lambda: self._redis.srem(f"repository::{repo}::blobs", digest))
        await self._call(lambda: self._redis.delete(f"repository::{repo}::blobs::{digest}"))

    async def _flush_pending(self):
        while self._pending_clears:
            repo, digest = next(iter(self._pending_clears))
            await self._remove(repo, digest)
            self._pending_clears.discard((repo, digest))


class _Unavailable(Exception):
    pass
