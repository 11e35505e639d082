"""GC timing: distregistry's mark and sweep against ``docker-registry garbage-collect`` (Debian's
Go 2.8.2) on the same 10,000-manifest tree, as a ratio (ours / Go; lower is better).

The tree is written straight in registry:2's layout: ``repositories`` repositories, each
manifest with a config, one of 50 shared base layers and a layer of its own; 80 % tagged, and
10 % deleted (revision link removed) so the sweep has garbage to delete. Each side runs a
real (not dry) collection on its own copy (on tmpfs unless ``--workdir`` says otherwise), stdout to /dev/null, timed as a process (start-up
included on both sides), and the two copies must end with the same blobs.

``python -m benchmarks.gc [--manifests N] [--repositories N] [--workdir DIR]`` prints the
numbers; ``run()`` returns them for the benchmark runner.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GO_REGISTRY = "/usr/bin/docker-registry"
REPO_ROOT = Path(__file__).resolve().parents[1]
V2 = Path("docker/registry/v2")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _blob(root, data):
    digest = hashlib.sha256(data).hexdigest()
    path = root / V2 / "blobs/sha256" / digest[:2] / digest / "data"
    if not path.exists():
        _write(path, data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _link(path, digest):
    _write(path, digest.encode())


def build_tree(root, manifests=10_000, repositories=100, seed=0):
    """Write the tree under *root*; returns the number of blobs written."""
    rng = random.Random(seed)
    root = Path(root)
    bases = [_blob(root, f"base layer {i}".encode() * 64) for i in range(50)]
    per_repo = manifests // repositories
    for r in range(repositories):
        repo = root / V2 / "repositories" / f"bench/repo{r:03d}"
        for m in range(per_repo):
            config = _blob(root, json.dumps({"architecture": "amd64", "os": "linux", "n": [r, m]}).encode())
            own = _blob(root, f"layer {r} {m} {rng.random()}".encode() * 16)
            base = rng.choice(bases)
            layers = [dict(base, mediaType="application/vnd.oci.image.layer.v1.tar"),
                      dict(own, mediaType="application/vnd.oci.image.layer.v1.tar")]
            doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"), "layers": layers}
            manifest = _blob(root, json.dumps(doc, sort_keys=True).encode())
            for d in (config, base, own):
                _link(repo / "_layers/sha256" / d["digest"][7:] / "link", d["digest"])
            roll = rng.random()
            if roll < 0.1:
                continue   # deleted: no revision link, its blobs are garbage
            _link(repo / "_manifests/revisions/sha256" / manifest["digest"][7:] / "link", manifest["digest"])
            if roll < 0.9:
                tag = repo / "_manifests/tags" / f"t{m}"
                _link(tag / "current/link", manifest["digest"])
                _link(tag / "index/sha256" / manifest["digest"][7:] / "link", manifest["digest"])
    return sum(1 for _ in (root / V2 / "blobs").rglob("data"))


def _config(path, root):
    path.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n")
    return path


def _timed(cmd, env=None):
    """(wall seconds, peak RSS in MiB) of *cmd*, which must succeed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {err.read()[-2000:].decode(errors='replace')}")
    return elapsed, usage.ru_maxrss / 1024


def _blobs(root):
    return {p.parent.name for p in (Path(root) / V2 / "blobs").rglob("data")}


def run(workdir=None, manifests=10_000, repositories=100):
    """Build the tree, collect it with both, return the timings and their ratio."""
    own_dir = workdir is None
    # tmpfs by default: the disks here are shared and slow at creating small files, which
    # would time the disk, not the collectors.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = Path(workdir or tempfile.mkdtemp(prefix="gc-bench-", dir=shm))
    try:
        # The same seed writes the same tree twice (faster than copying it).
        blobs = build_tree(work / "go", manifests, repositories)
        build_tree(work / "ours", manifests, repositories)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        go, go_rss = _timed([GO_REGISTRY, "garbage-collect", str(_config(work / "go.yml", work / "go"))], env)
        env["PYTHONPATH"] = str(REPO_ROOT)
        ours, ours_rss = _timed([sys.executable, "-m", "distregistry", "garbage-collect",
                       str(_config(work / "ours.yml", work / "ours"))], env)
        left_go, left_ours = _blobs(work / "go"), _blobs(work / "ours")
        if left_go != left_ours:
            raise RuntimeError(f"different results: {len(left_go ^ left_ours)} blobs differ")
        return {"manifests": manifests, "blobs": blobs, "deleted": blobs - len(left_ours),
                "go_seconds": go, "ours_seconds": ours, "ratio": ours / go,
                "go_peak_rss_mib": go_rss, "ours_peak_rss_mib": ours_rss}
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=10_000)
    parser.add_argument("--repositories", type=int, default=100)
    parser.add_argument("--workdir", help="keep the trees here (default: a temporary directory, removed)")
    args = parser.parse_args(argv)
    r = run(args.workdir, args.manifests, args.repositories)
    print(f"gc: {r['manifests']} manifests, {r['blobs']} blobs, {r['deleted']} deleted; "
          f"docker-registry {r['go_seconds']:.2f} s ({r['go_peak_rss_mib']:.0f} MiB peak), "
          f"distregistry {r['ours_seconds']:.2f} s ({r['ours_peak_rss_mib']:.0f} MiB peak); "
          f"ratio {r['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
