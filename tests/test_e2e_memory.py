"""End-to-end: pushing a 2 GiB blob keeps the daemon's memory flat (issue 2, part 3).

(a) monolithic: POST, then one PUT ?digest= carrying the whole 2 GiB body;
(b) chunked: POST, 32 PATCHes of 64 MiB with Content-Range, then the final PUT ?digest=.

The client streams a deterministic pseudo-random sequence (a 1 MiB random block repeated with a
counter) from a generator -- nothing big touches the client's disk or memory.  The daemon's
peak RSS (VmHWM) must stay under 150 MiB, it must not write temp files outside its storage root
(TMPDIR points at an empty dir, its cwd is an empty dir, and its open file descriptors are
sampled during the upload), and the committed blob must have the right size and digest.

Only the distregistry cases matter; the Go cases (256 MiB) are a cheap sanity check of the harness (their
memory is reported, not asserted).  DISTREGISTRY_E2E_BIG_MIB overrides the size (multiple of 64)
for quick local iterations.
"""

from __future__ import annotations

import http.client
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:
    from support import KIND_PARAMS, report
    from support import goregistry as gr
    from support.images import counter_stream, stream_digest
except ImportError:  # tests is a package
    from tests.support import KIND_PARAMS, report
    from tests.support import goregistry as gr
    from tests.support.images import counter_stream, stream_digest

pytestmark = pytest.mark.e2e

MiB = 1 << 20
SIZE = int(os.environ.get("DISTREGISTRY_E2E_BIG_MIB", "2048")) * MiB
GO_SIZE = min(SIZE, 256 * MiB)  # the Go sanity run only proves the harness (Go 2.8 does ~130 MiB/s)
CHUNK = 64 * MiB
RSS_LIMIT_KIB = 150 * 1024
HTTP_TIMEOUT = 600
SEEDS = {"monolithic": "mono-2g", "chunked": "chunk-2g"}
assert SIZE % CHUNK == 0 and GO_SIZE % CHUNK == 0

_digests: dict[tuple[str, int], str] = {}


def expected_digest(seed: str, size: int) -> str:
    """Digest of the client stream, computed once per session (~1.5 s for 2 GiB)."""
    key = (seed, size)
    if key not in _digests:
        _digests[key] = stream_digest(counter_stream(seed, size))[0]
    return _digests[key]


def path_of(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_digest(location: str, digest: str) -> str:
    p = path_of(location)
    return p + ("&" if "?" in p else "?") + "digest=" + digest


def send(reg, method: str, path: str, body, length: int, headers: dict | None = None):
    """One streamed request; returns (status, headers, body).  If the server answers early and
    closes, the send error is swallowed and the server's answer is returned."""
    conn = http.client.HTTPConnection("127.0.0.1", reg.port, timeout=HTTP_TIMEOUT)
    hdrs = {"Content-Length": str(length), "Content-Type": "application/octet-stream", **(headers or {})}
    try:
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError) as exc:
            send_error = exc
        else:
            send_error = None
        try:
            resp = conn.getresponse()
        except (http.client.HTTPException, OSError) as exc:
            raise AssertionError(f"{method} {path}: no response ({exc!r}; send error {send_error!r})")
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


class FdWatcher(threading.Thread):
    """Samples the daemon's open files while it works; flags every regular file that is not in
    the storage root (and not its log / Python code), incl. unlinked temp files."""

    def __init__(self, reg, allowed_prefixes: list[Path]):
        super().__init__(daemon=True)
        self.reg = reg
        self.allowed = [str(p) for p in allowed_prefixes]
        self.stop_event = threading.Event()
        self.seen: set[str] = set()
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.seen.update(self.reg.open_files())
                self.samples += 1
            except Exception:
                pass
            self.stop_event.wait(0.05)

    def violations(self) -> list[str]:
        bad = []
        for target in sorted(self.seen):
            if not target.startswith("/"):
                continue  # socket:[..], pipe:[..], anon_inode:[..]
            path = target.removesuffix(" (deleted)")
            if target.endswith(" (deleted)") and not path.startswith(self.allowed[0]):
                bad.append(target)
                continue
            if path.startswith(("/dev/", "/proc/", "/sys/")):
                continue
            if path.endswith((".py", ".pyc", ".so", ".pth")) or "/site-packages/" in path:
                continue
            if any(path == a or path.startswith(a.rstrip("/") + "/") for a in self.allowed):
                continue
            bad.append(target)
        return bad

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(5)


def push_monolithic(reg, repo: str, seed: str, digest: str, size: int) -> float:
    r = reg.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, (r.status, r.body)
    t0 = time.monotonic()
    status, headers, body = send(reg, "PUT", with_digest(r.header("Location"), digest), counter_stream(seed, size), size)
    elapsed = time.monotonic() - t0
    assert status == 201, (status, body[:500])
    assert headers.get("Docker-Content-Digest") == digest
    assert headers.get("Location", "").endswith(f"/v2/{repo}/blobs/{digest}")
    return elapsed


def push_chunked(reg, repo: str, seed: str, digest: str, size: int) -> float:
    r = reg.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, (r.status, r.body)
    location = r.header("Location")
    stream = counter_stream(seed, size)
    per_patch = CHUNK // MiB
    t0 = time.monotonic()
    for start in range(0, size, CHUNK):
        end = start + CHUNK - 1
        body = (next(stream) for _ in range(per_patch))
        status, headers, rbody = send(
            reg, "PATCH", path_of(location), body, CHUNK, {"Content-Range": f"{start}-{end}"}
        )
        assert status == 202, (start, status, rbody[:500])
        assert headers.get("Range") == f"0-{end}", (start, headers.get("Range"))
        location = headers.get("Location")
        assert location, "PATCH response without Location"
    assert next(stream, None) is None
    status, headers, rbody = send(reg, "PUT", with_digest(location, digest), b"", 0)
    elapsed = time.monotonic() - t0
    assert status == 201, (status, rbody[:500])
    assert headers.get("Docker-Content-Digest") == digest
    return elapsed


@pytest.mark.parametrize("flow", ["monolithic", "chunked"])
@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_push_2gib_blob_memory_and_temp_files(kind, flow, daemons, tmp_path):
    seed = SEEDS[flow]
    size = SIZE if kind == "distregistry" else GO_SIZE
    digest = expected_digest(seed, size)
    root = tmp_path / "storage"
    tmpdir = tmp_path / "daemon-tmp"
    cwd = tmp_path / "daemon-cwd"
    tmpdir.mkdir()
    cwd.mkdir()
    reg = daemons.start(
        kind, root=root, cwd=cwd, env={"TMPDIR": str(tmpdir), "TMP": None, "TEMP": None}
    )
    repo = f"mem/{flow}"
    try:
        rss_idle = reg.vmhwm_kib()
        with FdWatcher(reg, [root, reg.log_path]) as watcher:
            elapsed = (push_monolithic if flow == "monolithic" else push_chunked)(reg, repo, seed, digest, size)
        hwm = reg.vmhwm_kib()
        report(
            f"memory[{kind}/{flow}] {size / MiB:.0f} MiB blob: {size / MiB / elapsed:.0f} MiB/s "
            f"({elapsed:.1f}s), VmHWM {hwm / 1024:.1f} MiB (idle {rss_idle / 1024:.1f} MiB), "
            f"{watcher.samples} fd samples"
        )

        # The committed blob: size and digest via HEAD, content spot checks via Range.
        r = reg.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        assert r.status == 200, r.status
        assert int(r.header("Content-Length")) == size
        assert r.header("Docker-Content-Digest") == digest
        for block in (0, size // MiB // 2, size // MiB - 1):
            r = reg.request("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes={block * MiB}-{block * MiB + 7}"})
            assert r.status == 206, (r.status, r.body[:200])
            assert r.body == block.to_bytes(8, "big"), f"block {block} content"
        data = gr.blob_data_path(root, digest)
        assert data.stat().st_size == size
        assert gr.read_link(gr.layer_link(root, repo, digest)) == digest

        # No temp files outside the storage root; no upload leftovers inside it.
        assert watcher.samples > 0
        in_root = [t for t in watcher.seen if t.startswith(str(root))]
        if kind == "go":  # proves the sampler sees the upload file (Go keeps it open)
            assert any("/_uploads/" in t for t in in_root), sorted(watcher.seen)
        assert watcher.violations() == [], "daemon opened files outside its storage root"
        assert sorted(os.listdir(tmpdir)) == [], "daemon wrote into TMPDIR"
        assert sorted(os.listdir(cwd)) == [], "daemon wrote into its cwd"
        uploads = gr.repo_dir(root, repo) / "_uploads"
        left = [str(p) for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
        assert left == [], f"upload files left behind: {left}"

        if kind == "distregistry":
            assert hwm < RSS_LIMIT_KIB, f"peak RSS {hwm / 1024:.1f} MiB >= {RSS_LIMIT_KIB / 1024:.0f} MiB"
    finally:
        reg.stop()
        shutil.rmtree(root, ignore_errors=True)  # 2 GiB; do not leave it in pytest's kept tmp dirs
