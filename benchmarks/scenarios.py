"""The issue's scenarios (issue 9): blob push/pull, small blobs, manifests, listings, skopeo.

Every measurement writes new content (a fresh 8-byte prefix, counter or annotation), so no
run is answered from an earlier one's blob; all data is made before the timed part.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from benchmarks.client import Client, file_digest, image_manifest
from benchmarks.core import Measurement, Scenario
from benchmarks.loadgen import head_load
from tests.support.images import SKOPEO

GiB = 1 << 30
ACCEPT_OCI = "application/vnd.oci.image.manifest.v1+json"
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')
_WRK_RATE = re.compile(r"Requests/sec:\s*([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")


def _prefix(bench):
    return bench.unique().to_bytes(8, "big")


def _client(target):
    return Client("127.0.0.1", target.port)


# -- blobs --------------------------------------------------------------------------------
def _push(bench, target, chunked):
    prefix = _prefix(bench)
    digest = file_digest(prefix, bench.blob_file)
    size = len(prefix) + os.path.getsize(bench.blob_file)
    c = _client(target)
    try:
        t0 = time.perf_counter()
        if chunked:
            c.push_file_chunked("bench/blobs", prefix, bench.blob_file, digest, bench.sizes["chunk"])
        else:
            c.push_file("bench/blobs", prefix, bench.blob_file, digest)
        wall = time.perf_counter() - t0
    finally:
        c.close()
    target.data["pulled"] = digest
    return Measurement(size / wall / 1e6, size / GiB)


def push_monolithic(bench, target):
    return _push(bench, target, chunked=False)


def push_chunked(bench, target):
    return _push(bench, target, chunked=True)


def setup_pull(bench, target):
    if "pulled" not in target.data:
        _push(bench, target, chunked=False)


def _in_threads(count, fn):
    """Run fn(i) in *count* threads at once; the wall time. The first error is raised: a
    failed client must not look fast."""
    errors = []

    def run(i):
        try:
            fn(i)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall


def _pull(bench, target, clients):
    digest = target.data["pulled"]
    done = []

    def one(_):
        c = _client(target)
        try:
            done.append(c.pull("bench/blobs", digest, bytearray(1 << 20)))
        finally:
            c.close()

    wall = _in_threads(clients, one)
    return Measurement(sum(done) / wall / 1e6, sum(done) / GiB)


def pull_one(bench, target):
    return _pull(bench, target, 1)


def pull_four(bench, target):
    return _pull(bench, target, 4)


# -- many small operations in parallel ------------------------------------------------------
def _parallel(target, threads, duration, op):
    """Run op(client, n) in *threads* threads until *duration* passed: (ops/s, ops)."""
    counts = [0] * threads
    deadline = time.perf_counter() + duration

    def loop(i):
        c = _client(target)
        try:
            while time.perf_counter() < deadline:
                op(c, i * 10_000_000 + counts[i])
                counts[i] += 1
        finally:
            c.close()

    wall = _in_threads(threads, loop)
    return Measurement(sum(counts) / wall, sum(counts))


def small_blobs(bench, target):
    base = _prefix(bench)
    body = os.urandom(4096 - 16)

    def op(c, n):
        c.push_bytes("bench/small", base + n.to_bytes(8, "big") + body)

    return _parallel(target, 16, bench.sizes["duration"], op)


def setup_manifests(bench, target):
    c = _client(target)
    try:
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = os.urandom(1024)
        target.data["refs"] = ((c.push_bytes("bench/manifests", config), len(config)),
                               (c.push_bytes("bench/manifests", layer), len(layer)))
        c.put_manifest("bench/manifests", "latest", image_manifest(*target.data["refs"], "latest"))
    finally:
        c.close()


def manifest_put(bench, target):
    run = bench.unique()
    config, layer = target.data["refs"]

    def op(c, n):
        c.put_manifest("bench/manifests", f"r{run}-{n}", image_manifest(config, layer, f"{run}-{n}"))

    return _parallel(target, 16, bench.sizes["duration"], op)


# -- wrk: small GET/HEAD at 64 connections --------------------------------------------------
def wrk(bench, target, path, accept=None):
    script = os.path.join(bench.workdir, "wrk.lua")
    with open(script, "w") as f:
        f.write(f'wrk.headers["Accept"] = "{accept}"\n' if accept else "")
    s = bench.sizes
    # wrk's default 2 s timeout counts slow answers as errors on a loaded machine.
    cmd = ["wrk", f"-t{s['wrk_threads']}", f"-c{s['wrk_connections']}", f"-d{s['duration']}s", "--timeout", "30s",
           "-s", script, target.url + path]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=s["duration"] + 30, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise AssertionError(f"wrk saw errors against {target.name}:\n{out}")
    return Measurement(float(_WRK_RATE.search(out).group(1)), int(_WRK_TOTAL.search(out).group(1)))


def manifest_get(bench, target):
    return wrk(bench, target, "/v2/bench/manifests/manifests/latest", ACCEPT_OCI)


def manifest_head(bench, target):
    s = bench.sizes
    done, wall = head_load(target.port, "/v2/bench/manifests/manifests/latest", {"Accept": ACCEPT_OCI},
                           s["wrk_connections"], s["duration"])
    return Measurement(done / wall, done)


def ping(bench, target):
    return wrk(bench, target, "/v2/")


# -- listings -----------------------------------------------------------------------------
def setup_listings(bench, target):
    """10,000 repositories and a repository with 10,000 tags, made directly on disk (pushing
    them would take minutes): listings read directory names only, so a repository is its
    marker directories (``_layers`` for 2.8's catalog, ``_manifests`` for 3.x's and ours)
    and a tag is its directory."""
    if "listing" in target.data:
        return
    repos_dir = os.path.join(target.root, "docker/registry/v2/repositories")
    n = bench.sizes["listing"]
    for i in range(n):
        repo = os.path.join(repos_dir, f"catalog/r{i:05d}")
        os.makedirs(os.path.join(repo, "_layers"))
        os.makedirs(os.path.join(repo, "_manifests"))
    tags = os.path.join(repos_dir, "bench/tags/_manifests/tags")
    os.makedirs(os.path.join(repos_dir, "bench/tags/_layers"))
    for i in range(n):
        os.makedirs(os.path.join(tags, f"t{i:05d}"))
    target.data["listing"] = n


def _follow(target, path, key):
    """Every entry of a paged list, following Link headers."""
    c = _client(target)
    entries = []
    try:
        while path:
            body, headers = c.get_json(path)
            entries += body[key] or []
            m = _NEXT.search(headers.get("Link") or "")
            path = m.group(1) if m else None
    finally:
        c.close()
    return entries


def catalog(bench, target):
    t0 = time.perf_counter()
    repos = _follow(target, "/v2/_catalog?n=1000", "repositories")
    wall = time.perf_counter() - t0
    if sum(r.startswith("catalog/") for r in repos) != target.data["listing"]:
        raise AssertionError(f"{target.name}: catalog listed {len(repos)} repositories")
    return Measurement(wall)


def tags_list(bench, target):
    t0 = time.perf_counter()
    tags = _follow(target, "/v2/bench/tags/tags/list", "tags")   # no n: the whole list, as skopeo asks
    wall = time.perf_counter() - t0
    if len(tags) != target.data["listing"]:
        raise AssertionError(f"{target.name}: tags list had {len(tags)} tags")
    return Measurement(wall)


# -- skopeo -------------------------------------------------------------------------------
SYSTEM_BLOB_CACHE = "/var/lib/containers/cache"   # skopeo's blob-info cache when run as root


def _skopeo_copy(bench, src, dst):
    """skopeo copy in a private mount namespace with an empty blob-info cache: with the
    machine's, every push after the first is a cross-repository mount of blobs skopeo
    remembers (0.2 s instead of 2 s), not an upload."""
    cache = tempfile.mkdtemp(dir=bench.workdir, prefix="blob-info-cache-")
    os.makedirs(SYSTEM_BLOB_CACHE, exist_ok=True)
    sk = bench.skopeo
    cmd = ["unshare", "-m", "sh", "-c", f'mount --bind "$0" {SYSTEM_BLOB_CACHE} && exec "$@"', cache,
           SKOPEO, "--policy", str(sk.policy), "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false",
           "--dest-tls-verify=false", src, dst]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=sk.env(), capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    shutil.rmtree(cache)
    if p.returncode != 0:
        raise AssertionError(f"skopeo copy {src} {dst}: {p.stderr[-2000:]}")
    return wall


def skopeo_push(bench, target):
    repo = f"skopeo/p{bench.unique()}"
    wall = _skopeo_copy(bench, bench.image.ref, f"docker://127.0.0.1:{target.port}/{repo}:latest")
    target.data["skopeo"] = repo
    return Measurement(wall)


def setup_skopeo_pull(bench, target):
    if "skopeo" not in target.data:
        skopeo_push(bench, target)


def skopeo_pull(bench, target):
    dest = os.path.join(bench.workdir, f"pull-{target.name}")
    shutil.rmtree(dest, ignore_errors=True)
    wall = _skopeo_copy(bench, f"docker://127.0.0.1:{target.port}/{target.data['skopeo']}:latest", f"dir:{dest}")
    with open(os.path.join(dest, "manifest.json")) as f:
        manifest = json.load(f)
    if len(manifest["layers"]) != len(bench.image.layers):
        raise AssertionError(f"{target.name}: pulled {len(manifest['layers'])} layers")
    shutil.rmtree(dest)
    return Measurement(wall)


SCENARIOS = [
    Scenario("blob push monolithic", "MB/s", True, push_monolithic, op="GiB", target=1.0, peak_rss=True),
    Scenario("blob push chunked", "MB/s", True, push_chunked, op="GiB", target=1.0, peak_rss=True),
    Scenario("blob pull, 1 client", "MB/s", True, pull_one, op="GiB", target=1.0, setup=setup_pull),
    Scenario("blob pull, 4 clients", "MB/s", True, pull_four, op="GiB", target=1.0, setup=setup_pull),
    Scenario("small blob push+commit (4 KiB, 16 conc.)", "ops/s", True, small_blobs, op="blob", target=1.5),
    Scenario("manifest PUT (16 conc.)", "ops/s", True, manifest_put, op="manifest", target=1.5,
             setup=setup_manifests),
    Scenario("manifest GET by tag (wrk)", "req/s", True, manifest_get, op="request", target=4.0,
             setup=setup_manifests),
    Scenario("manifest HEAD by tag (asyncio client)", "req/s", True, manifest_head, op="request", target=4.0,
             setup=setup_manifests),
    Scenario("GET /v2/ (wrk)", "req/s", True, ping, op="request", sides=("ours", "go", "ceiling"), aa=False),
    Scenario("catalog, 10,000 repositories", "s", False, catalog, op="listing", target=1.0,
             setup=setup_listings),
    Scenario("tags list, 10,000 tags", "s", False, tags_list, op="listing", target=1.0, setup=setup_listings),
    Scenario("skopeo copy push (5 layers)", "s", False, skopeo_push, op="copy", target=1.0),
    Scenario("skopeo copy pull (5 layers)", "s", False, skopeo_pull, op="copy", target=1.0,
             setup=setup_skopeo_pull),
]
