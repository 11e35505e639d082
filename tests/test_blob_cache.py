"""Blob-descriptor caches: inmemory, and redis against a real redis-server."""

import time

import pytest
from twisted.internet import reactor, task

from distregistry.config import Config
from distregistry.config.errors import ConfigError
from distregistry.descriptor import Descriptor
from distregistry.errcode import RegistryError
from distregistry.registry import Registry
from distregistry.registry import paths
from distregistry.storage.cache.inmemory import InMemoryDescriptorCache
from distregistry.storage.cache.redis import RedisDescriptorCache
from distregistry.storage.driver.inmemory import InMemoryDriver

DIGEST = "sha256:" + "0123456789" * 6 + "0123"  # digits only: what convertNumbers would mangle


def _redis_config(server, **extra):
    cfg = Config.parse({"version": "0.1", "storage": {"inmemory": {}, "cache": {"blobdescriptor": "redis"}},
                        "redis": {"addr": server.addr, "readtimeout": "300ms", "dialtimeout": "300ms", **extra}})
    return cfg.redis


async def _stored_blob(registry, name, data=b"layer"):
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    await registry.driver.put_content(paths.blob_data(digest), data)
    await registry.repository(name).blobs.link(digest)
    return digest


@pytest.fixture
def redis_cache(redis_server):
    cache = RedisDescriptorCache(_redis_config(redis_server))
    yield cache
    import pytest_twisted

    pytest_twisted.blockon(cache.close())


async def test_redis_keys_are_registry2s(redis_cache, redis_server):
    d = Descriptor(media_type="application/octet-stream", digest=DIGEST, size=7)
    await redis_cache.set("lib/app", d)
    assert await redis_cache.get("lib/app", DIGEST) == d
    assert await redis_cache.get("other", DIGEST) is None
    assert redis_server.command("HGET", f"blobs::{DIGEST}", "size") == "$1"
    assert redis_server.command("SISMEMBER", "repository::lib/app::blobs", DIGEST) == ":1"
    assert redis_server.command("EXISTS", f"repository::lib/app::blobs::{DIGEST}") == ":1"
    assert (redis_cache.stats.hits, redis_cache.stats.misses, redis_cache.stats.errors) == (1, 1, 0)
    await redis_cache.clear("lib/app", DIGEST)
    assert await redis_cache.get("lib/app", DIGEST) is None
    assert redis_server.command("SISMEMBER", "repository::lib/app::blobs", DIGEST) == ":0"


async def test_registry_hits_the_cache_and_delete_invalidates(redis_cache):
    driver = InMemoryDriver()
    registry = Registry(driver, delete_enabled=True, blob_cache=redis_cache)
    digest = await _stored_blob(registry, "app")
    blobs = registry.repository("app").blobs
    first = await blobs.stat(digest)
    assert (redis_cache.stats.hits, redis_cache.stats.misses) == (0, 1)
    # A hit needs no storage: even with the link gone behind the registry's back.
    await driver.delete(paths.layer_link("app", digest))
    assert await blobs.stat(digest) == first
    assert redis_cache.stats.hits == 1
    # Deleting through the registry clears the entry, even though the link was already gone.
    with pytest.raises(RegistryError):
        await blobs.delete(digest)
    with pytest.raises(RegistryError):
        await blobs.stat(digest)
    # Re-push: linked again, found again from storage.
    await blobs.link(digest)
    assert await blobs.stat(digest) == first


async def test_redis_down_falls_back_to_storage_and_recovers(redis_server):
    cache = RedisDescriptorCache(_redis_config(redis_server), retry_after=0.2)
    registry = Registry(InMemoryDriver(), delete_enabled=True, blob_cache=cache)
    digest = await _stored_blob(registry, "app")
    blobs = registry.repository("app").blobs
    await blobs.stat(digest)
    assert cache.stats.errors == 0
    redis_server.stop()
    start = time.monotonic()
    descriptor = await blobs.stat(digest)  # from storage, after one timed-out call
    assert descriptor.digest == digest
    await blobs.delete(digest)  # the clear cannot reach Redis: it is kept for later
    with pytest.raises(RegistryError):
        await blobs.stat(digest)
    assert time.monotonic() - start < 5
    assert cache.stats.errors >= 1
    redis_server.start()
    await blobs.link(digest)
    # Once txredisapi has reconnected (its own back-off), the pending clear reaches Redis
    # first and the cache is filled again.
    deadline = time.monotonic() + 30
    while redis_server.command("SISMEMBER", "repository::app::blobs", digest) != ":1":
        assert time.monotonic() < deadline, "the cache never came back"
        assert (await blobs.stat(digest)).digest == digest
        await task.deferLater(reactor, 0.2, lambda: None)
    assert not cache._pending_clears
    hits = cache.stats.hits
    await blobs.stat(digest)
    assert cache.stats.hits == hits + 1
    await cache.close()
    # txredisapi's reconnect timer may still be pending for a moment after disconnect.
    await task.deferLater(reactor, 0.1, lambda: None)


async def test_redis_over_tls(tmp_path):
    try:
        from support.redisserver import RedisServer
    except ImportError:
        from tests.support.redisserver import RedisServer
    server = RedisServer(tmp_path / "redis-tls", tls=True).start()
    try:
        cache = RedisDescriptorCache(_redis_config(server, tls={"rootcas": [str(server.ca)]}))
        d = Descriptor(media_type="application/octet-stream", digest=DIGEST, size=3)
        await cache.set("tls", d)
        assert await cache.get("tls", DIGEST) == d
        assert cache.stats.errors == 0
        await cache.close()
        # Plain RESP to the TLS port gets nowhere: a miss, counted as an error.
        untrusting = RedisDescriptorCache(_redis_config(server))
        assert await untrusting.get("tls", DIGEST) is None
        assert untrusting.stats.errors == 1
        await untrusting.close()
        await task.deferLater(reactor, 0.1, lambda: None)
    finally:
        server.stop()


async def test_inmemory_lru_is_bounded():
    cache = InMemoryDescriptorCache(size=2)
    for i in range(3):
        await cache.set("r", Descriptor(media_type="x", digest=f"sha256:{i}", size=i))
    assert await cache.get("r", "sha256:0") is None
    assert (await cache.get("r", "sha256:2")).size == 2
    await cache.clear("r", "sha256:2")
    assert await cache.get("r", "sha256:2") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)


def test_config_cache_section():
    base = {"version": "0.1", "storage": {"inmemory": {}, "cache": {"blobdescriptor": "redis"}}}
    with pytest.raises(ConfigError, match="storage.cache.blobdescriptor: redis configuration required"):
        Config.parse(base)
    cfg = Config.parse({**base, "redis": {"addrs": ["10.0.0.1:6380"], "db": 2, "poolsize": 4}})
    assert (cfg.redis.host, cfg.redis.port, cfg.redis.db, cfg.redis.poolsize) == ("10.0.0.1", 6380, 2, 4)
    with pytest.raises(ConfigError, match="redis.addrs"):
        Config.parse({**base, "redis": {"addrs": ["a:1", "b:2"]}})
    cfg = Config.parse({"version": "0.1", "storage": {"inmemory": {}, "cache": {"layerinfo": "inmemory",
                                                                                 "blobdescriptorsize": 5}}})
    assert (cfg.storage.blobdescriptor_cache, cfg.storage.blobdescriptor_size) == ("inmemory", 5)
    cfg = Config.parse({"version": "0.1", "storage": {"inmemory": {}, "cache": {"blobdescriptor": "memcache"}}})
    assert cfg.storage.blobdescriptor_cache is None and any("memcache" in w for w in cfg.warnings)
