"""The registry storage layer against both drivers; on the filesystem one, the exact tree
registry:2 would have written (link files, startedat, tag history, no temp leftovers)."""

import hashlib
import json
import os
import re

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.logger import capturedLogs, formatEvent

from distregistry import manifest as mf
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.registry import Registry, Validation, paths, purge_uploads
from distregistry.registry.purge import go_time, parse_rfc3339
from distregistry.registry.registry import less_path
from distregistry.registry.uploads import HashStateCache
from distregistry.storage.driver import factory
from distregistry.storage.driver.base import PathNotFoundError

NOW = 1_700_000_000          # 2023-11-14T22:13:20Z
NOW_TEXT = "2023-11-14T22:13:20Z"
V2 = "docker/registry/v2"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexof(digest):
    return digest.partition(":")[2]


class Env:
    def __init__(self, kind, driver, root):
        self.kind = kind
        self.driver = driver
        self.root = root      # pathlib.Path of the driver root, filesystem only
        self.clock = task.Clock()
        self.clock.advance(NOW)

    def registry(self, **kwargs):
        kwargs.setdefault("clock", self.clock)
        return Registry(self.driver, **kwargs)

    def files(self):
        """{relative path: bytes} of every file under the filesystem root."""
        out = {}
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                full = os.path.join(dirpath, name)
                with open(full, "rb") as f:
                    out[os.path.relpath(full, self.root)] = f.read()
        return out

    def dirs(self):
        return {os.path.relpath(os.path.join(d, n), self.root)
                for d, names, _ in os.walk(self.root) for n in names}


@pytest.fixture(params=["inmemory", "filesystem"])
def env(request, tmp_path):
    env = Env(request.param, None, tmp_path if request.param == "filesystem" else None)
    if request.param == "inmemory":
        # Stamped by the env's clock, as the registry's own times are.
        driver = env.driver = factory.create("inmemory", {}, reactor=env.clock)
    else:
        driver = env.driver = factory.create("filesystem", {"rootdirectory": str(tmp_path), "maxthreads": 8})
    yield env
    pytest_twisted.blockon(driver.close())
    if env.root:
        assert [p for p in list(env.files()) + list(env.dirs()) if p.endswith(".tmp")] == []


@pytest.fixture
def fs_env(env):
    if env.kind != "filesystem":
        pytest.skip("asserts the on-disk tree")
    return env


async def raises(code, d):
    """Await *d*, which must fail with a RegistryError whose first code is *code*."""
    with pytest.raises(RegistryError) as info:
        await d
    assert info.value.code is code, info.value
    return info.value


async def push(repo, data, chunks=1):
    status = await repo.uploads.start()
    step = max(1, -(-len(data) // chunks))
    for start in range(0, len(data), step):
        writer = await repo.uploads.append(status.uuid, start)
        await writer.write(data[start:start + step])
        await writer.close()
    return await repo.uploads.commit(status.uuid, sha(data))


def descriptor(media_type, data, **extra):
    return dict({"mediaType": media_type, "digest": sha(data), "size": len(data)}, **extra)


CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER1 = b"layer one" * 100
LAYER2 = b"layer two" * 100


def image(media_type=mf.OCI_MANIFEST, config=CONFIG, layers=(LAYER1, LAYER2), **extra):
    config_type = ("application/vnd.oci.image.config.v1+json" if media_type == mf.OCI_MANIFEST
                   else "application/vnd.docker.container.image.v1+json")
    layer_type = (mf.OCI_LAYER_GZIP if media_type == mf.OCI_MANIFEST
                  else "application/vnd.docker.image.rootfs.diff.tar.gzip")
    doc = {"schemaVersion": 2, "mediaType": media_type, "config": descriptor(config_type, config),
           "layers": [descriptor(layer_type, layer) for layer in layers]}
    doc.update(extra)
    return json.dumps(doc, indent=3).encode()   # odd indentation: bytes must be kept exactly


def index(children, media_type=mf.OCI_INDEX, **extra):
    child_type = mf.OCI_MANIFEST if media_type == mf.OCI_INDEX else mf.DOCKER_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "manifests": [descriptor(child_type, payload, platform={"architecture": arch, "os": "linux"})
                         for payload, arch in children]}
    doc.update(extra)
    return json.dumps(doc).encode()


def artifact(subject_payload, artifact_type, annotations=None):
    doc = {"schemaVersion": 2, "mediaType": mf.OCI_MANIFEST, "artifactType": artifact_type,
           "config": descriptor(mf.OCI_EMPTY, b"{}"), "layers": [descriptor("text/plain", artifact_type.encode())],
           "subject": descriptor(mf.OCI_MANIFEST, subject_payload)}
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


async def push_image_blobs(repo, *blobs):
    for blob in blobs or (CONFIG, LAYER1, LAYER2):
        await push(repo, blob)


# -- names ---------------------------------------------------------------------------------

def test_repository_name_validated(env):
    registry = env.registry()
    for bad in ("", "UPPER", "a//b", "../etc", "a/_layers", "a" * 300, "localhost:5000/x"):
        with pytest.raises(RegistryError) as info:
            registry.repository(bad)
        assert info.value.code is ErrorCode.NAME_INVALID
    assert registry.repository("library/ubuntu").name == "library/ubuntu"


# -- uploads -------------------------------------------------------------------------------

async def test_upload_layout_and_commit(env):
    repo = env.registry().repository("library/app")
    status = await repo.uploads.start()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", status.uuid)
    assert (status.size, status.started_at, status.name) == (0, NOW_TEXT, "library/app")
    upload = f"{V2}/repositories/library/app/_uploads/{status.uuid}"
    if env.root:
        # The data file appears with the first append, as registry:2's.
        assert env.files() == {f"{upload}/startedat": NOW_TEXT.encode()}

    data = os.urandom(300_000)
    for offset in range(0, len(data), 100_000):
        writer = await repo.uploads.append(status.uuid, offset)
        for piece in range(offset, offset + 100_000, 25_000):
            await writer.write(data[piece:piece + 25_000])
        assert writer.size == offset + 100_000
        await writer.close()
        assert (await repo.uploads.status(status.uuid)).size == offset + 100_000

    desc = await repo.uploads.commit(status.uuid, sha(data), size=len(data))
    assert (desc.digest, desc.size, desc.media_type) == (sha(data), len(data), "application/octet-stream")
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.status(status.uuid))
    assert await repo.blobs.stat(sha(data)) == desc
    reader = await repo.blobs.open(sha(data), 299_990)
    assert await reader.read(1 << 20) == data[299_990:]
    reader.close()
    assert await repo.blobs.redirect_url("GET", sha(data)) is None

    if env.root:
        h = hexof(sha(data))
        assert env.files() == {
            f"{V2}/blobs/sha256/{h[:2]}/{h}/data": data,
            f"{V2}/repositories/library/app/_layers/sha256/{h}/link": sha(data).encode(),
        }
        assert len(env.files()[f"{V2}/repositories/library/app/_layers/sha256/{h}/link"]) == 71
        assert f"{V2}/repositories/library/app/_uploads" in env.dirs()     # only the session dir goes
        assert not any(".tmp" in d for d in env.dirs())


async def test_resume_on_another_replica(env):
    """A PATCH on one replica, the next PATCH and the PUT on another, sharing storage only."""
    first, second = env.registry(), env.registry()
    a, b = first.repository("r"), second.repository("r")
    status = await a.uploads.start()
    writer = await a.uploads.append(status.uuid, 0)
    await writer.write(b"hello ")
    await writer.close()
    writer = await b.uploads.append(status.uuid, 6)     # b has no hash state: writes unhashed
    await writer.write(b"world")
    await writer.close()
    assert len(second.hash_states) == 0
    # a's cached state is for 6 bytes, the data has 11: it must re-hash, not trust the cache.
    assert (await a.uploads.commit(status.uuid, sha(b"hello world"))).size == 11


async def test_resume_after_restart(env):
    registry = env.registry()
    repo = registry.repository("r")
    status = await repo.uploads.start()
    writer = await repo.uploads.append(status.uuid)
    await writer.write(b"abc" * 1000)
    await writer.close()
    restarted = env.registry().repository("r")
    writer = await restarted.uploads.append(status.uuid, 3000)
    await writer.write(b"def")
    await writer.close()
    assert (await restarted.uploads.commit(status.uuid, sha(b"abc" * 1000 + b"def"))).size == 3003


async def test_wrong_digest_keeps_session(env):
    registry = env.registry()
    repo = registry.repository("r")
    status = await repo.uploads.start()
    writer = await repo.uploads.append(status.uuid, 0)
    await writer.write(b"content")
    await writer.close()
    wrong = sha(b"other")
    error = await raises(ErrorCode.DIGEST_INVALID, repo.uploads.commit(status.uuid, wrong))
    assert error.detail == {"Digest": wrong, "Reason": {}}
    assert (await repo.uploads.status(status.uuid)).size == 7
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat(wrong))
    registry.hash_states.drop(("r", status.uuid))    # the retry may land elsewhere, too
    assert (await repo.uploads.commit(status.uuid, sha(b"content"))).digest == sha(b"content")


async def test_commit_refusals(env):
    repo = env.registry().repository("r")
    status = await repo.uploads.start()
    writer = await repo.uploads.append(status.uuid, 0)
    await writer.write(b"12345")
    await writer.close()
    await raises(ErrorCode.RANGE_INVALID, repo.uploads.append(status.uuid, 4))
    await raises(ErrorCode.RANGE_INVALID, repo.uploads.append(status.uuid, 0))
    await raises(ErrorCode.SIZE_INVALID, repo.uploads.commit(status.uuid, sha(b"12345"), size=6))
    error = await raises(ErrorCode.DIGEST_INVALID, repo.uploads.commit(status.uuid, "sha256:abc"))
    assert error.detail == "invalid checksum digest format"
    error = await raises(ErrorCode.DIGEST_INVALID, repo.uploads.commit(status.uuid, None))
    assert error.detail == "digest missing"
    await raises(ErrorCode.UNSUPPORTED, repo.uploads.commit(status.uuid, "sha512:" + "a" * 128))
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.commit(
        "00000000-0000-4000-8000-000000000000", sha(b"12345")))
    for bad in ("..", ".", "x", "../../blobs"):
        await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.status(bad))
        await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.append(bad))
    assert (await repo.uploads.commit(status.uuid, sha(b"12345"), size=5)).size == 5


async def test_empty_blob(env):
    repo = env.registry().repository("r")
    desc = await push(repo, b"")
    assert (desc.digest, desc.size) == (sha(b""), 0)
    assert (await repo.blobs.stat(sha(b""))).size == 0
    # A session has no data file until its first append (as registry:2's), and commits the
    # empty blob too.
    other = env.registry().repository("s")
    status = await other.uploads.start()
    with pytest.raises(PathNotFoundError):
        await env.driver.stat(paths.upload_data("s", status.uuid))
    assert (await other.uploads.status(status.uuid)).size == 0
    assert (await other.uploads.commit(status.uuid, sha(b""))).size == 0


async def test_cancel(env):
    repo = env.registry(delete_enabled=False).repository("r")
    status = await repo.uploads.start()
    writer = await repo.uploads.append(status.uuid)
    await writer.write(b"x")
    await writer.close()
    await repo.uploads.cancel(status.uuid)
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.status(status.uuid))
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.cancel(status.uuid))
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.commit(status.uuid, sha(b"x")))
    if env.root:
        assert not any("_uploads/" in f for f in env.files())


async def test_abort_drops_hash_state(env):
    registry = env.registry()
    repo = registry.repository("r")
    status = await repo.uploads.start()
    writer = await repo.uploads.append(status.uuid, 0)
    await writer.write(b"first")
    await writer.close()
    assert registry.hash_states.get(("r", status.uuid))[0] == 5
    writer = await repo.uploads.append(status.uuid, 5)
    await writer.write(b"-partial")
    await writer.abort()
    assert registry.hash_states.get(("r", status.uuid)) is None
    kept = (await repo.uploads.status(status.uuid)).size
    assert kept == 13   # both drivers keep what reached them; the client resumes from status
    assert (await repo.uploads.commit(status.uuid, sha(b"first-partial"))).size == 13


async def test_concurrent_commits_of_one_digest(env):
    registry = env.registry()
    repos = [registry.repository("one"), registry.repository("two"), registry.repository("one")]
    data = b"same content" * 5000
    sessions = []
    for repo in repos:
        status = await repo.uploads.start()
        writer = await repo.uploads.append(status.uuid, 0)
        await writer.write(data)
        await writer.close()
        sessions.append((repo, status.uuid))
    results = await defer.gatherResults(
        [repo.uploads.commit(uuid, sha(data)) for repo, uuid in sessions], consumeErrors=True)
    assert {r.digest for r in results} == {sha(data)}
    for repo, uuid in sessions:
        await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.status(uuid))
        assert (await repo.blobs.stat(sha(data))).size == len(data)
    if env.root:
        h = hexof(sha(data))
        files = env.files()
        assert files[f"{V2}/blobs/sha256/{h[:2]}/{h}/data"] == data
        assert sorted(f for f in files if "_uploads" in f or ".tmp" in f) == []


async def test_same_session_committed_twice_at_once(env):
    registry = env.registry()
    repo = registry.repository("r")
    status = await repo.uploads.start()
    writer = await repo.uploads.append(status.uuid, 0)
    await writer.write(b"racy")
    await writer.close()
    results = await defer.DeferredList(
        [registry.repository("r").uploads.commit(status.uuid, sha(b"racy")) for _ in range(2)]
        + [repo.uploads.cancel(status.uuid)], consumeErrors=True)
    # In one process they run in turn: the first commits, the others find the session gone.
    assert [ok or result.value.code for ok, result in results] == [
        True, ErrorCode.BLOB_UPLOAD_UNKNOWN, ErrorCode.BLOB_UPLOAD_UNKNOWN]
    assert (await repo.blobs.stat(sha(b"racy"))).size == 4
    assert len(registry.upload_locks) == 0


async def test_reads_go_written_upload(env):
    """registry:2 leaves hashstates/ in sessions and may have no data file yet."""
    repo = env.registry().repository("go/repo")
    uuid = "3f2a9c1e-8b7d-4c6e-9a5f-1b2c3d4e5f60"
    await env.driver.put_content(paths.upload_startedat("go/repo", uuid), b"2026-12-03T17:54:54Z")
    await env.driver.put_content(paths.upload_data("go/repo", uuid), b"go bytes")
    await env.driver.put_content(paths.upload_dir("go/repo", uuid) + "/hashstates/sha256/8", b"sha\x03" + b"\0" * 104)
    status = await repo.uploads.status(uuid)
    assert (status.size, status.started_at) == (8, "2026-12-03T17:54:54Z")
    writer = await repo.uploads.append(uuid, 8)
    await writer.write(b"!")
    await writer.close()
    assert (await repo.uploads.commit(uuid, sha(b"go bytes!"))).size == 9
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, repo.uploads.status(uuid))


def test_hash_state_cache_is_bounded_lru():
    cache = HashStateCache(capacity=2)
    cache.put("a", 1, hashlib.sha256())
    cache.put("b", 2, hashlib.sha256())
    assert cache.get("a")[0] == 1          # a is now the most recent
    cache.put("c", 3, hashlib.sha256())
    assert (cache.get("a")[0], cache.get("b"), cache.get("c")[0], len(cache)) == (1, None, 3, 2)


# -- blobs ---------------------------------------------------------------------------------

async def test_blob_isolation_and_mount(env):
    registry = env.registry()
    a, b = registry.repository("a"), registry.repository("b")
    desc = await push(a, b"shared")
    error = await raises(ErrorCode.BLOB_UNKNOWN, b.blobs.stat(desc.digest))
    assert error.detail == desc.digest
    await raises(ErrorCode.BLOB_UNKNOWN, b.blobs.open(desc.digest))
    assert await b.blobs.mount(desc.digest, "c") is None           # not linked in c
    assert await b.blobs.mount(desc.digest, "Not/Valid") is None   # bad source name
    assert await b.blobs.mount("sha256:zz", "a") is None           # bad digest
    assert await b.blobs.mount(desc.digest, "a") == desc
    assert await b.blobs.stat(desc.digest) == desc
    if env.root:
        link = f"{V2}/repositories/b/_layers/sha256/{hexof(desc.digest)}/link"
        assert env.files()[link] == desc.digest.encode()


async def test_blob_lookup_errors(env):
    repo = env.registry().repository("r")
    await raises(ErrorCode.DIGEST_INVALID, repo.blobs.stat("sha256:short"))
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat("sha384:" + "a" * 96))   # go-digest's, not ours
    missing = sha(b"never stored")
    await env.driver.put_content(paths.layer_link("r", missing), missing.encode())
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat(missing))       # link without data
    data = sha(b"data")
    await env.driver.put_content(paths.blob_data(data), b"data")
    await env.driver.put_content(paths.layer_link("r", data), data.encode() + b"\n")
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat(data))          # not a bare digest
    await env.driver.put_content(paths.layer_link("r", data), missing.encode())
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat(data))          # names another digest
    await env.driver.put_content(paths.layer_link("r", data), data.encode())
    assert (await repo.blobs.stat(data)).size == 4
    await raises(ErrorCode.RANGE_INVALID, repo.blobs.open(data, 5))


async def test_blob_delete(env):
    repo = env.registry(delete_enabled=True).repository("r")
    desc = await push(repo, b"to delete")
    await raises(ErrorCode.UNSUPPORTED, env.registry().repository("r").blobs.delete(desc.digest))
    await repo.blobs.delete(desc.digest)
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat(desc.digest))
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.delete(desc.digest))
    h = hexof(desc.digest)
    assert await env.driver.get_content(paths.blob_data(desc.digest)) == b"to delete"   # GC's job
    if env.root:
        assert f"{V2}/repositories/r/_layers/sha256/{h}" in env.dirs()      # only the link file went
        assert not any(f.endswith(f"{h}/link") for f in env.files())


# -- manifests -----------------------------------------------------------------------------

@pytest.mark.parametrize("media_type", [mf.OCI_MANIFEST, mf.DOCKER_MANIFEST])
async def test_image_manifest_put_get(env, media_type):
    repo = env.registry().repository("img")
    await push_image_blobs(repo)
    payload = image(media_type)
    m = await repo.manifests.put(payload, media_type + "; charset=utf-8", sha(payload))
    assert (m.digest, m.media_type) == (sha(payload), media_type)
    got = await repo.manifests.get(m.digest)
    assert (got.payload, got.media_type) == (payload, media_type)
    assert await repo.manifests.exists(m.digest)
    await raises(ErrorCode.BLOB_UNKNOWN, repo.blobs.stat(m.digest))      # not in _layers
    assert not await env.registry().repository("other").manifests.exists(m.digest)
    if env.root:
        h = hexof(m.digest)
        files = env.files()
        assert files[f"{V2}/blobs/sha256/{h[:2]}/{h}/data"] == payload
        assert files[f"{V2}/repositories/img/_manifests/revisions/sha256/{h}/link"] == m.digest.encode()
        assert f"{V2}/repositories/img/_layers/sha256/{h}/link" not in files
        assert sorted(f for f in files if "/_layers/" in f) == sorted(
            f"{V2}/repositories/img/_layers/sha256/{hexof(sha(b))}/link" for b in (CONFIG, LAYER1, LAYER2))


@pytest.mark.parametrize("list_type,child_type",
                         [(mf.OCI_INDEX, mf.OCI_MANIFEST), (mf.DOCKER_LIST, mf.DOCKER_MANIFEST)])
async def test_index_put_get(env, list_type, child_type):
    repo = env.registry().repository("multi")
    await push_image_blobs(repo)
    amd, arm = image(child_type), image(child_type, layers=(LAYER1,))
    for child in (amd, arm):
        await repo.manifests.put(child, child_type)
    payload = index([(amd, "amd64"), (arm, "arm64")], media_type=list_type)
    m = await repo.manifests.put(payload, list_type)
    got = await repo.manifests.get(m.digest)
    assert (got.payload, got.media_type, got.is_index) == (payload, list_type, True)
    assert [c.digest for c in got.manifests] == [sha(amd), sha(arm)]


async def test_missing_references_all_reported(env):
    repo = env.registry().repository("r")
    await push(repo, LAYER1)
    payload = image(layers=(LAYER1, LAYER2, b"third"))
    error = await raises(ErrorCode.MANIFEST_BLOB_UNKNOWN, repo.manifests.put(payload, mf.OCI_MANIFEST))
    assert [(c, d) for c, _, d in error.errors] == [
        (ErrorCode.MANIFEST_BLOB_UNKNOWN, sha(CONFIG)),
        (ErrorCode.MANIFEST_BLOB_UNKNOWN, sha(LAYER2)),
        (ErrorCode.MANIFEST_BLOB_UNKNOWN, sha(b"third")),
    ]
    assert error.status == 400
    assert not await repo.manifests.exists(sha(payload))
    # A blob linked only in another repository does not count.
    await push_image_blobs(env.registry().repository("elsewhere"))
    await raises(ErrorCode.MANIFEST_BLOB_UNKNOWN, repo.manifests.put(image(), mf.OCI_MANIFEST))


async def test_put_by_digest_must_match(env):
    repo = env.registry().repository("r")
    await push_image_blobs(repo)
    payload = image()
    await raises(ErrorCode.DIGEST_INVALID, repo.manifests.put(payload, mf.OCI_MANIFEST, sha(b"x")))
    await raises(ErrorCode.MANIFEST_INVALID, repo.manifests.put(payload, "application/json"))
    assert (await repo.manifests.put(payload, mf.OCI_MANIFEST, "latest")).digest == sha(payload)


async def test_index_children_validation(env):
    amd, arm = image(), image(layers=(LAYER1,))
    payload = index([(amd, "amd64"), (arm, "arm64")])

    async def fresh(name, **validation):
        repo = env.registry(validation=Validation(**validation) if validation else None).repository(name)
        await push_image_blobs(repo)
        await repo.manifests.put(amd, mf.OCI_MANIFEST)      # arm64 child missing
        return repo

    error = await raises(ErrorCode.MANIFEST_BLOB_UNKNOWN, (await fresh("all")).manifests.put(payload, mf.OCI_INDEX))
    assert [d for _, _, d in error.errors] == [sha(arm)]
    await (await fresh("none", index_platforms="none")).manifests.put(payload, mf.OCI_INDEX)
    await (await fresh("amd", index_platforms="list", platformlist=[("amd64", "linux")])).manifests.put(
        payload, mf.OCI_INDEX)
    await raises(ErrorCode.MANIFEST_BLOB_UNKNOWN, (await fresh(
        "arm", index_platforms="list", platformlist=[("arm64", "linux")])).manifests.put(payload, mf.OCI_INDEX))
    await raises(ErrorCode.MANIFEST_BLOB_UNKNOWN, (await fresh(
        "empty", index_platforms="list", platformlist=[])).manifests.put(payload, mf.OCI_INDEX))
    await (await fresh("disabled", disabled=True)).manifests.put(payload, mf.OCI_INDEX)


async def test_foreign_layer_urls(env):
    foreign = {"mediaType": mf.DOCKER_FOREIGN_LAYER, "digest": sha(b"win"), "size": 3,
               "urls": ["https://mcr.example.com/layer"]}
    doc = json.loads(image(mf.DOCKER_MANIFEST, layers=(LAYER1,)))
    doc["layers"].append(foreign)
    payload = json.dumps(doc).encode()

    async def repo_with(name, validation=None):
        repo = env.registry(validation=validation).repository(name)
        await push_image_blobs(repo, CONFIG, LAYER1)
        return repo

    await raises(ErrorCode.MANIFEST_INVALID, (await repo_with("default")).manifests.put(payload, mf.DOCKER_MANIFEST))
    allowed = Validation(urls_allow=[re.compile(r"^https://mcr\.example\.com/")])
    await (await repo_with("allowed", allowed)).manifests.put(payload, mf.DOCKER_MANIFEST)
    denied = Validation(urls_allow=[re.compile("^https://")], urls_deny=[re.compile("mcr")])
    await raises(ErrorCode.MANIFEST_INVALID, (await repo_with("denied", denied)).manifests.put(
        payload, mf.DOCKER_MANIFEST))
    # validation.disabled as in registry:2: URLs pass, but linked blobs are still required.
    disabled = await repo_with("disabled", Validation(disabled=True))
    await disabled.manifests.put(payload, mf.DOCKER_MANIFEST)
    await raises(ErrorCode.MANIFEST_BLOB_UNKNOWN, disabled.manifests.put(image(layers=(b"nope",)), mf.OCI_MANIFEST))


async def test_manifest_delete(env):
    registry = env.registry(delete_enabled=True)
    repo = registry.repository("r")
    await push_image_blobs(repo)
    m = await repo.manifests.put(image(), mf.OCI_MANIFEST)
    other = await repo.manifests.put(image(layers=(LAYER2,)), mf.OCI_MANIFEST)
    for tag, digest in (("v1", m.digest), ("latest", m.digest), ("stable", other.digest)):
        await repo.tags.tag(tag, digest)

    await raises(ErrorCode.UNSUPPORTED, env.registry().repository("r").manifests.delete(m.digest))
    await repo.manifests.delete(m.digest)
    error = await raises(ErrorCode.MANIFEST_UNKNOWN, repo.manifests.get(m.digest))
    assert error.detail == {"Name": "r", "Revision": m.digest}
    assert not await repo.manifests.exists(m.digest)
    assert await repo.tags.list() == ["stable"]
    await raises(ErrorCode.MANIFEST_UNKNOWN, repo.manifests.delete(m.digest))
    assert await env.driver.get_content(paths.blob_data(m.digest)) == m.payload     # GC's job
    if env.root:
        files = env.files()
        h = hexof(m.digest)
        assert f"{V2}/repositories/r/_manifests/revisions/sha256/{h}/link" not in files
        assert not any("/tags/v1/" in f or "/tags/latest/" in f for f in files)
        assert f"{V2}/repositories/r/_manifests/tags/stable/current/link" in files


# -- referrers -----------------------------------------------------------------------------

async def test_referrers(env):
    registry = env.registry(delete_enabled=True)
    repo = registry.repository("r")
    await push_image_blobs(repo, CONFIG, LAYER1, LAYER2, b"{}", b"sbom", b"sig")
    subject = await repo.manifests.put(image(), mf.OCI_MANIFEST)
    assert await repo.referrers.list(subject.digest) == []
    sbom = await repo.manifests.put(artifact(subject.payload, "sbom", {"org.example": "x"}), mf.OCI_MANIFEST)
    sig = await repo.manifests.put(artifact(subject.payload, "sig"), mf.OCI_MANIFEST)

    listed = await repo.referrers.list(subject.digest)
    assert [d.digest for d in listed] == sorted([sbom.digest, sig.digest])
    by_digest = {d.digest: d for d in listed}
    assert by_digest[sbom.digest].to_json() == {
        "mediaType": mf.OCI_MANIFEST, "digest": sbom.digest, "size": len(sbom.payload),
        "artifactType": "sbom", "annotations": {"org.example": "x"}}
    assert [d.digest for d in await repo.referrers.list(subject.digest, "sig")] == [sig.digest]
    assert await repo.referrers.list(subject.digest, "none") == []
    assert await env.registry().repository("elsewhere").referrers.list(subject.digest) == []
    assert await repo.referrers.list("sha384:" + "a" * 96) == []
    if env.root:
        entry = (f"{V2}/repositories/r/_referrers/sha256/{hexof(subject.digest)}/sha256/{hexof(sig.digest)}"
                 "/descriptor.json")
        assert json.loads(env.files()[entry])["artifactType"] == "sig"

    await repo.manifests.delete(sig.digest)
    assert [d.digest for d in await repo.referrers.list(subject.digest)] == [sbom.digest]
    # Deleted behind our back (registry:2's GC removes revision dirs): skipped, not an error.
    await env.driver.delete(paths.revision_dir("r", sbom.digest))
    assert await repo.referrers.list(subject.digest) == []
    # An image whose config gives the artifact type: config.mediaType.
    doc = json.loads(image())
    doc["subject"] = descriptor(mf.OCI_MANIFEST, subject.payload)
    signed = await repo.manifests.put(json.dumps(doc).encode(), mf.OCI_MANIFEST)
    assert [(d.digest, d.artifact_type) for d in await repo.referrers.list(subject.digest)] == [
        (signed.digest, "application/vnd.oci.image.config.v1+json")]


async def test_subject_need_not_exist(env):
    repo = env.registry().repository("r")
    await push_image_blobs(repo, b"{}", b"sig")
    absent = image(layers=(b"never pushed",))
    sig = await repo.manifests.put(artifact(absent, "sig"), mf.OCI_MANIFEST)
    assert [d.digest for d in await repo.referrers.list(sha(absent))] == [sig.digest]


# -- tags ----------------------------------------------------------------------------------

async def test_tags(env):
    repo = env.registry(delete_enabled=True).repository("r")
    error = await raises(ErrorCode.NAME_UNKNOWN, repo.tags.list())
    assert error.detail == {"name": "r"}
    assert await repo.tags.lookup(sha(b"x")) == []
    await push_image_blobs(repo)
    first = await repo.manifests.put(image(), mf.OCI_MANIFEST)
    second = await repo.manifests.put(image(layers=(LAYER1,)), mf.OCI_MANIFEST)
    await repo.tags.tag("latest", first.digest)
    await repo.tags.tag("latest", second.digest)
    for tag in ("b", "B", "a-b", "a.b", "a_b", "a", "1.0"):
        await repo.tags.tag(tag, first.digest)
    assert await repo.tags.resolve("latest") == second.digest
    assert await repo.tags.list() == ["1.0", "B", "a", "a-b", "a.b", "a_b", "b", "latest"]
    assert await repo.tags.lookup(second.digest) == ["latest"]
    assert len(await repo.tags.lookup(first.digest)) == 7
    await raises(ErrorCode.TAG_INVALID, repo.tags.tag("-bad", first.digest))
    error = await raises(ErrorCode.MANIFEST_UNKNOWN, repo.tags.resolve("nope"))
    assert error.detail == {"Tag": "nope"}
    await raises(ErrorCode.MANIFEST_UNKNOWN, repo.tags.resolve("../../x"))

    if env.root:
        base = f"{V2}/repositories/r/_manifests/tags/latest"
        files = env.files()
        assert {f: v for f, v in files.items() if f.startswith(base)} == {
            f"{base}/current/link": second.digest.encode(),
            f"{base}/index/sha256/{hexof(first.digest)}/link": first.digest.encode(),
            f"{base}/index/sha256/{hexof(second.digest)}/link": second.digest.encode(),
        }

    await raises(ErrorCode.UNSUPPORTED, env.registry().repository("r").tags.untag("latest"))
    await repo.tags.untag("latest")
    error = await raises(ErrorCode.MANIFEST_UNKNOWN, repo.tags.untag("latest"))
    assert error.detail == {"Tag": "latest"}
    await raises(ErrorCode.MANIFEST_UNKNOWN, repo.tags.resolve("latest"))
    assert await repo.manifests.exists(second.digest)      # untag leaves the manifest
    if env.root:
        assert not any("/tags/latest" in d for d in env.dirs())


async def test_reads_go_written_repository(env):
    """A tree laid out by registry:2: bare-digest links, written with no newline."""
    payload = image()
    d = sha(payload)
    for blob in (CONFIG, LAYER1, LAYER2, payload):
        await env.driver.put_content(paths.blob_data(sha(blob)), blob)
    for blob in (CONFIG, LAYER1, LAYER2):
        await env.driver.put_content(paths.layer_link("go", sha(blob)), sha(blob).encode())
    await env.driver.put_content(paths.revision_link("go", d), d.encode())
    await env.driver.put_content(paths.tag_index_link("go", "v1", d), d.encode())
    await env.driver.put_content(paths.tag_current_link("go", "v1"), d.encode())
    repo = env.registry().repository("go")
    assert await repo.tags.resolve("v1") == d
    assert (await repo.manifests.get(d)).payload == payload
    assert (await repo.blobs.stat(sha(LAYER1))).size == len(LAYER1)
    assert await env.registry().catalog(10) == ["go"]


# -- catalog -------------------------------------------------------------------------------

def test_less_path():
    names = ["ab", "a-b", "a/b", "a", "a/b/c", "a0"]
    assert sorted(names, key=lambda n: n.replace("/", "\x00")) == ["a", "a/b", "a/b/c", "a-b", "a0", "ab"]
    assert less_path("a/b", "a-b") and not less_path("a-b", "a/b")


async def make_repositories(env, names):
    for name in names:
        await env.driver.put_content(paths.revision_link(name, sha(name.encode())), sha(name.encode()).encode())


async def test_catalog_order_and_pages(env):
    registry = env.registry()
    await make_repositories(env, ["ab", "a-b", "a/b", "a", "b/c", "z/y/x", "a/b/c"])
    # Only mounted blobs (registry:2 2.8 would list it, 3.x does not) and only uploads.
    await registry.repository("layers/only").blobs.link(sha(b"x"))
    await registry.repository("uploads/only").uploads.start()

    assert await registry.catalog(100) == ["a", "a/b", "a/b/c", "a-b", "ab", "b/c", "z/y/x"]
    assert await registry.catalog(2) == ["a", "a/b"]
    assert await registry.catalog(2, "a/b") == ["a/b/c", "a-b"]
    assert await registry.catalog(3, "a-b") == ["ab", "b/c", "z/y/x"]
    assert await registry.catalog(3, "b") == ["b/c", "z/y/x"]          # last need not exist
    assert await registry.catalog(3, "z/y/x") == []
    assert await registry.catalog(0) == []
    # Paging through one name at a time gives the same list.
    pages, last = [], None
    while True:
        page = await registry.catalog(1, last)
        if not page:
            break
        pages += page
        last = page[-1]
    assert pages == ["a", "a/b", "a/b/c", "a-b", "ab", "b/c", "z/y/x"]


async def test_catalog_after_any_last(env):
    # A page starts at *last* (the walk's start-after hint); whatever *last* is, the page is
    # the repositories after it in registry:2's order.
    names = ["a", "a/b", "a/b/c", "a-b", "a0", "ab", "b/c", "z/y/x"]
    await make_repositories(env, names)
    registry = env.registry()
    for last in ["a", "a/", "a//b", "a/b/", "a/_manifests", "a\x00", "a\x00b", "a-", "a/b\x00c", "_", "0",
                 "a/b/c/d", "b", "b/c/_manifests/x", "zz", "~", "a b", "../a"]:
        assert await registry.catalog(3, last) == [n for n in names if less_path(last, n)][:3], last


async def test_catalog_empty(env):
    assert await env.registry().catalog(10) == []


class CountingDriver:
    """Wraps a driver, recording what a walk visits."""

    def __init__(self, driver):
        self._driver = driver
        self.visited = []

    def __getattr__(self, name):
        return getattr(self._driver, name)

    def walk(self, path, visit, start_after=None):
        def counting(info):
            self.visited.append(info.path)
            return visit(info)
        return self._driver.walk(path, counting, start_after)


async def test_catalog_stops_and_skips(env):
    await make_repositories(env, [f"r{i:02d}" for i in range(20)])
    counting = CountingDriver(env.driver)
    registry = Registry(counting, clock=env.clock)
    assert await registry.catalog(2) == ["r00", "r01"]
    root = paths.REPOSITORIES
    assert not any(p.startswith(f"{root}/r02") for p in counting.visited)   # stopped at page's end
    assert not any("/_manifests/" in p for p in counting.visited)           # never inside _ dirs
    counting.visited.clear()
    assert await registry.catalog(1, "r17") == ["r18"]
    # Repositories before *last* are passed over, not even visited.
    assert not any(p.startswith(f"{root}/r05") for p in counting.visited)


# -- purge ---------------------------------------------------------------------------------

def test_rfc3339():
    assert parse_rfc3339(NOW_TEXT) == NOW
    assert parse_rfc3339("2023-11-14T23:13:20.5+01:00") == NOW + 0.5
    for bad in ("2023-11-14 22:13:20Z", "2023-02-30T00:00:00Z", "yesterday", "2023-11-14T22:13:20"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)
    assert go_time(NOW) == "2023-11-14 22:13:20 +0000 UTC"
    assert go_time(NOW + 0.25) == "2023-11-14 22:13:20.25 +0000 UTC"


async def test_purge_uploads(env):
    old = env.registry().repository("old/repo")
    stale = await old.uploads.start()
    busy_repo = env.registry().repository("busy")
    busy = await busy_repo.uploads.start()
    env.clock.advance(3600)
    # Started as long ago as *stale*, but written to since: in progress, kept.
    writer = await busy_repo.uploads.append(busy.uuid)
    await writer.write(b"more")
    await writer.close()
    # (The stale upload never got a byte, so it has no data file to date: as in registry:2.)
    recent = await env.registry().repository("new").uploads.start()
    # registry:2's cancel leaves a dir with hashstates and no startedat: never purged.
    orphan = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    await env.driver.put_content(paths.upload_dir("new", orphan) + "/hashstates/sha256/0", b"x")
    garbled = "bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    await env.driver.put_content(paths.upload_startedat("new", garbled), b"Tuesday")
    await env.driver.put_content(paths.upload_dir("new", "not-a-uuid") + "/startedat", NOW_TEXT.encode())

    cutoff = NOW + 1800
    with capturedLogs() as events:
        deleted, errors = await purge_uploads(env.driver, cutoff, False)
    stale_dir = paths.upload_dir("old/repo", stale.uuid)
    assert deleted == [stale_dir] and len(errors) == 1
    assert (await old.uploads.status(stale.uuid)).size == 0          # dry run
    lines = [formatEvent(e) for e in events if e.get("log_namespace") == "distregistry.registry.purge"]
    busy_dir = paths.upload_dir("busy", busy.uuid)
    assert lines.pop(1).startswith(
        f"Upload files in {busy_dir} have older date (2023-11-14 22:13:20 +0000 UTC) than purge date "
        "(2023-11-14 22:43:20 +0000 UTC), but were written to at "), lines
    assert lines == [
        "PurgeUploads starting: olderThan=2023-11-14 22:43:20 +0000 UTC, actuallyDelete=false",
        f"Upload files in {stale_dir} have older date (2023-11-14 22:13:20 +0000 UTC) than purge date "
        "(2023-11-14 22:43:20 +0000 UTC).  Dry run: not removing the upload directory.",
        "Purge uploads finished.  Num deleted=1, num errors=1",
    ]

    deleted, errors = await purge_uploads(env.driver, cutoff, True)
    assert deleted == [stale_dir] and len(errors) == 1
    await raises(ErrorCode.BLOB_UPLOAD_UNKNOWN, old.uploads.status(stale.uuid))
    assert (await env.registry().repository("new").uploads.status(recent.uuid)).started_at == "2023-11-14T23:13:20Z"
    assert (await busy_repo.uploads.status(busy.uuid)).size == 4
    assert await env.driver.stat(paths.upload_dir("new", orphan))
    assert await env.driver.stat(paths.upload_dir("new", garbled))
    deleted, errors = await purge_uploads(env.driver, cutoff, True)
    assert (deleted, len(errors)) == ([], 1)


async def test_purge_nothing(env):
    assert await purge_uploads(env.driver, NOW, True) == ([], [])
