"""GC in process, on both drivers: mark and sweep through the registry layer, the guard that
protects pushes, the cache invalidation hook, and the ``storage.maintenance.gc`` section."""

import pytest
import pytest_twisted
from twisted.internet import task

from distregistry import manifest as mf
from distregistry.config import Config, ConfigError
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.gc.collect import Report, garbage_collect, tty_progress
from distregistry.gc.guard import GCGuard
from distregistry.gc.mark import GCError
from distregistry.gc.online import OnlineGC
from distregistry.gc.state import Options
from distregistry.registry import Registry, paths
from distregistry.storage.driver import factory

try:
    from test_registry import CONFIG, LAYER1, LAYER2, NOW, artifact, image, index, push, push_image_blobs, sha
except ImportError:  # tests is a package
    from tests.test_registry import CONFIG, LAYER1, LAYER2, NOW, artifact, image, index, push, push_image_blobs, sha


@pytest.fixture(params=["inmemory", "filesystem", "s3"])
def registry(request, tmp_path):
    clock = task.Clock()
    clock.advance(NOW)
    if request.param == "inmemory":
        driver = factory.create("inmemory", {}, clock)
    elif request.param == "s3":   # an object store: no directories, paginated listings
        moto_s3 = request.getfixturevalue("moto_s3")
        parameters = Config.parse({"version": "0.1", "storage": {"s3": moto_s3.parameters(moto_s3.bucket())}})
        driver = factory.create("s3", parameters.storage.parameters)
    else:
        driver = factory.create("filesystem", {"rootdirectory": str(tmp_path), "maxthreads": 8})
    yield Registry(driver, delete_enabled=True, clock=clock)
    pytest_twisted.blockon(driver.close())


class Lines:
    def __init__(self):
        self.items, self.summary = [], []

    def report(self):
        return Report(self.items.append, self.summary.append)


async def exists(registry, digest):
    try:
        await registry.driver.stat(paths.blob_data(digest))
    except Exception:
        return False
    return True


@pytest_twisted.ensureDeferred
async def test_mark_and_sweep_on_any_driver(registry):
    repo = registry.repository("gc/app")
    await push_image_blobs(repo)
    kept = await repo.manifests.put(image(), mf.OCI_MANIFEST)
    await repo.tags.tag("v1", kept.digest)
    gone_layer = b"only in the deleted image" * 10
    await push_image_blobs(repo, CONFIG, LAYER1, gone_layer)
    gone = await repo.manifests.put(image(layers=(LAYER1, gone_layer)), mf.OCI_MANIFEST)
    await repo.manifests.delete(gone.digest)
    untagged = await repo.manifests.put(image(layers=(LAYER2,)), mf.OCI_MANIFEST)
    await push_image_blobs(repo, b"{}", mf.OCI_EMPTY.encode())
    signature = await repo.manifests.put(artifact(image(), mf.OCI_EMPTY), mf.OCI_MANIFEST)
    parent = await repo.manifests.put(index([(image(), "amd64")]), mf.OCI_INDEX)
    await repo.tags.tag("multi", parent.digest)

    invalidated = []
    registry.gc_guard.add_invalidator(lambda kind, name, digest: invalidated.append((kind, name, digest)))
    lines = Lines()
    result = await garbage_collect(registry, Options(delete_untagged=True), lines.report())
    assert (result.blobs_eligible, result.manifests_eligible) == (3, 1)
    for digest in (gone.digest, sha(gone_layer), untagged.digest):
        assert not await exists(registry, digest)
    for digest in (kept.digest, sha(CONFIG), sha(LAYER1), sha(LAYER2), signature.digest, parent.digest):
        assert await exists(registry, digest)
    assert not await repo.manifests.exists(untagged.digest)
    assert await repo.manifests.exists(signature.digest)       # its subject (v1's image) is kept
    assert [d.digest for d in await repo.referrers.list(kept.digest)] == [signature.digest]
    assert {(k, d) for k, _, d in invalidated} >= {("blob", gone.digest), ("blob", sha(gone_layer)),
                                                   ("manifest", untagged.digest), ("layer", sha(gone_layer))}
    assert f"manifest eligible for deletion: {{gc/app {untagged.digest} []}}" in lines.items
    assert lines.summary[1] == f"{result.marked} blobs marked, 3 blobs and 1 manifests eligible for deletion"


@pytest_twisted.ensureDeferred
async def test_grace_period_keeps_young_blobs_and_links(registry):
    repo = registry.repository("gc/young")
    await push(repo, LAYER1)   # committed for a push whose manifest has not arrived yet
    result = await garbage_collect(registry, Options(grace=60), Lines().report(), guard=registry.gc_guard)
    assert result.blobs_eligible == 0
    assert (await repo.blobs.stat(sha(LAYER1))).digest == sha(LAYER1)
    registry.clock.advance(61)
    if registry.driver.name != "inmemory":
        pytest.skip("the filesystem's and S3's modtimes follow the wall clock, not the test clock")
    result = await garbage_collect(registry, Options(grace=60), Lines().report(), guard=registry.gc_guard)
    assert (result.blobs_eligible, result.blobs_deleted, result.layer_links_eligible) == (1, 1, 1)


def test_guard_record_before_claim_protects():
    clock = task.Clock()
    guard = GCGuard(clock)
    guard.window = 10
    since = guard.begin_run()
    assert guard.record(["sha256:a"]).called
    assert not guard.claim("sha256:a", since)
    assert guard.claim("sha256:b", since)
    guard.release("sha256:b")
    clock.advance(11)
    guard.end_run(since)
    guard.record(["sha256:c"])            # prunes what is older than the window
    assert guard.claim("sha256:a", clock.seconds() - 10)
    guard.release("sha256:a")


def test_guard_claim_before_record_makes_the_push_wait():
    guard = GCGuard(task.Clock())
    assert guard.claim("sha256:a", 0)
    assert guard.claim("sha256:a", 0)     # its layer link in another repository
    waiting = guard.record(["sha256:a", "sha256:b"])
    assert not waiting.called
    guard.release("sha256:a")
    assert not waiting.called
    guard.release("sha256:a")
    assert waiting.called


def test_guard_keeps_nothing_without_online_gc():
    guard = GCGuard(task.Clock())
    guard.record(["sha256:a"])
    assert guard.claim("sha256:a", 0)


@pytest_twisted.ensureDeferred
async def test_manifest_put_waits_for_a_delete_under_way(registry):
    repo = registry.repository("gc/race")
    await push_image_blobs(repo)
    assert registry.gc_guard.claim(sha(LAYER1), 0)        # the sweep is deleting LAYER1 ...
    await registry.driver.delete(paths.blob_dir(sha(LAYER1)))
    put = repo.manifests.put(image(), mf.OCI_MANIFEST)     # ... while a push refers to it
    from twisted.internet import reactor

    await task.deferLater(reactor, 0.05, lambda: None)
    assert not put.called
    registry.gc_guard.release(sha(LAYER1))
    with pytest.raises(RegistryError) as info:
        await put
    assert info.value.code is ErrorCode.MANIFEST_BLOB_UNKNOWN


def _gc_config(body):
    return Config.parse(f"version: 0.1\nstorage: {{inmemory: , maintenance: {{gc: {body}}}}}\n", "config.yml").storage.gc


def test_gc_config_section():
    gc = _gc_config("{enabled: true, interval: 10m, graceperiod: 30s, dryrun: true}")
    assert (gc.enabled, gc.interval, gc.graceperiod, gc.dryrun) == (True, 600.0, 30.0, True)
    default = Config.parse("version: 0.1\nstorage: inmemory\n").storage.gc
    assert (default.enabled, default.interval, default.graceperiod, default.dryrun) == (False, 86400.0, 3600.0, False)
    assert not [w for w in Config.parse("version: 0.1\nstorage: {inmemory: , maintenance: {gc: {enabled: false}}}\n")
                .warnings if "gc" in w]


@pytest.mark.parametrize("body, message", [
    ("{enabled: true, interval: 0s}", "config.yml: storage.maintenance.gc.interval: must be greater than zero"),
    ("{graceperiod: soon}", 'config.yml: storage.maintenance.gc.graceperiod: expected a duration such as "168h"'),
    ("{enabled: 'yes'}", "config.yml: storage.maintenance.gc.enabled: expected true or false"),
])
def test_gc_config_errors_name_the_key(body, message):
    with pytest.raises(ConfigError) as info:
        _gc_config(body)
    assert str(info.value).startswith(message)


@pytest_twisted.ensureDeferred
async def test_unreadable_manifest_stops_the_run_before_any_delete(registry):
    repo = registry.repository("gc/broken")
    await push_image_blobs(repo)
    m = await repo.manifests.put(image(), mf.OCI_MANIFEST)
    orphan = await push(registry.repository("gc/other"), b"unreferenced")
    await registry.driver.put_content(paths.blob_data(m.digest), b"not json")
    with pytest.raises(GCError, match=f"failed to mark: gc/broken: manifest {m.digest} is unreadable"):
        await garbage_collect(registry, Options(), Lines().report())
    assert await exists(registry, orphan.digest)


@pytest_twisted.ensureDeferred
async def test_online_dry_run_deletes_nothing():
    clock = task.Clock()
    clock.advance(NOW)
    registry = Registry(factory.create("inmemory", {}, clock), clock=clock)   # its modtimes follow *clock*
    orphan = await push(registry.repository("gc/dry"), b"unreferenced")
    clock.advance(7200)
    gc = OnlineGC(registry, _gc_config("{enabled: true, interval: 1h, graceperiod: 1h, dryrun: true}"), clock)
    result = await gc.run_once()
    assert (result.blobs_eligible, result.blobs_deleted, result.bytes_freed) == (1, 0, len(b"unreferenced"))
    assert await exists(registry, orphan.digest)


def test_progress_only_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert tty_progress(io.StringIO()) is None
    out = Terminal()
    show = tty_progress(out)
    show("deleting blobs", 1, 4)
    show("deleting blobs", 4, 4)
    assert out.getvalue() == "\rdeleting blobs: 1/4 (25%)\rdeleting blobs: 4/4 (100%)\n"


@pytest_twisted.ensureDeferred
async def test_gc_clears_the_descriptor_cache_of_what_it_deletes():
    from distregistry.storage.cache.inmemory import InMemoryDescriptorCache

    clock = task.Clock()
    clock.advance(NOW)
    cache = InMemoryDescriptorCache()
    registry = Registry(factory.create("inmemory", {}, clock), delete_enabled=True, clock=clock, blob_cache=cache)
    for name in ("gc/one", "gc/two"):
        repo = registry.repository(name)
        await push(repo, b"garbage blob")
        assert (await repo.blobs.stat(sha(b"garbage blob"))).size == len(b"garbage blob")   # now cached
    result = await garbage_collect(registry, Options(), Lines().report())
    assert result.blobs_deleted == 1
    for name in ("gc/one", "gc/two"):
        with pytest.raises(RegistryError) as info:
            await registry.repository(name).blobs.stat(sha(b"garbage blob"))
        assert info.value.code is ErrorCode.BLOB_UNKNOWN
