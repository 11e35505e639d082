"""Several replicas: two distregistry processes on one S3 bucket (moto) and one Redis, the
same http.secret, behind nginx running conf/nginx.conf (issue 4's HA test)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

try:
    from support.daemon import REPO_ROOT, free_port
    from support.images import summarize_layout
    from support.processes import terminate
except ImportError:  # tests is a package
    from tests.support.daemon import REPO_ROOT, free_port
    from tests.support.images import summarize_layout
    from tests.support.processes import terminate

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECRET = "shared-by-every-replica"


class Nginx:
    """nginx on conf/nginx.conf, with its addresses and log paths rewritten for the test."""

    def __init__(self, workdir: Path, upstreams: list[int]):
        self.workdir = workdir
        self.port = free_port()
        text = (REPO_ROOT / "conf" / "nginx.conf").read_text()
        text = text.replace("listen 127.0.0.1:5000;", f"listen 127.0.0.1:{self.port};")
        text = text.replace("127.0.0.1:5001", f"127.0.0.1:{upstreams[0]}").replace("127.0.0.1:5002", f"127.0.0.1:{upstreams[1]}")
        text = text.replace("/var/log/nginx/", f"{workdir}/")
        text = text.replace("worker_processes auto;", "worker_processes 1;")
        assert f"127.0.0.1:{upstreams[1]}" in text and f"{self.port};" in text
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(text)
        with open(workdir / "nginx.out", "wb") as out:
            self.proc = subprocess.Popen(
                [NGINX, "-p", str(workdir), "-c", str(self.conf), "-g", f"daemon off; pid {workdir}/nginx.pid;"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError((workdir / "nginx.out").read_text() + (workdir / "registry.error.log").read_text())
            if subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{self.port}/v2/"]).returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError("nginx did not come up")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self):
        # SIGTERM: the master stops its workers, then exits (a killed master would orphan them).
        terminate(self.proc, timeout=20)


@pytest.fixture
def cluster(daemons, moto_s3, redis_server, tmp_path):
    bucket = moto_s3.bucket("ha")
    config = {
        "storage": {"s3": moto_s3.parameters(bucket, rootdirectory="/registry"), "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "redis"}},
        "redis": {"addr": redis_server.addr},
        "http": {"secret": SECRET},
    }
    a = daemons.start("distregistry", extra_config=config, name="replica-a")
    b = daemons.start("distregistry", extra_config=config, name="replica-b")
    lb = Nginx(tmp_path / "nginx", [a.port, b.port])
    yield a, b, lb
    lb.stop()


def _request(port, method, path, body=b"", headers=None):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={"Content-Length": str(len(body)), **(headers or {})})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def _path(location):
    return re.sub(r"^https?://[^/]+", "", location)


def test_patches_alternating_between_replicas_complete(cluster):
    a, b, lb = cluster
    chunks = [os.urandom(3 << 20) + bytes([i]) for i in range(6)]  # 6 x ~3 MiB: both sides of S3's 5 MiB
    data = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = _request(a.port, "POST", "/v2/ha/alt/blobs/uploads/")
    assert status == 202
    location, offset = _path(headers["Location"]), 0
    for i, chunk in enumerate(chunks):
        replica = (b, a)[i % 2]
        status, headers, body = _request(replica.port, "PATCH", location, chunk,
                                         {"Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                                          "Content-Type": "application/octet-stream"})
        assert status == 202, (i, replica.name, status, body)
        offset += len(chunk)
        assert headers["Range"] == f"0-{offset - 1}"
        location = _path(headers["Location"])
        # The other replica sees the session's real size at once.
        other = a if replica is b else b
        status, headers, _ = _request(other.port, "GET", location)
        assert (status, headers["Range"]) == (204, f"0-{offset - 1}")
    status, _, body = _request(b.port, "PUT", f"{location}&digest={digest}")
    assert status == 201, body
    status, _, body = _request(lb.port, "GET", f"/v2/ha/alt/blobs/{digest}")
    assert status == 307  # to the bucket, from whichever replica answered


def test_push_through_one_pull_through_the_other(cluster, skopeo, e2e_images, tmp_path):
    a, b, lb = cluster
    img = e2e_images.small
    skopeo.copy(img.ref, a.docker_ref("ha/one", "s1"))
    skopeo.copy(b.docker_ref("ha/one", "s1"), f"oci:{tmp_path / 'pulled'}:s1")
    assert summarize_layout(tmp_path / "pulled", "s1") == img.summary()


def test_delete_and_repush_through_the_shared_cache(cluster, skopeo, e2e_images, tmp_path):
    """registry:2's "manifest unknown after re-push": the Redis cache must not keep saying a
    deleted blob is there. Deleted through one replica, re-pushed through the other."""
    a, b, lb = cluster
    img = e2e_images.small
    ref = a.docker_ref("ha/again", "s1")
    skopeo.copy(img.ref, ref)
    # Warm the shared cache for every blob through b.
    layer_blobs = {d: s for d, s in img.blobs().items() if d != img.digest}
    for digest in layer_blobs:
        assert _request(b.port, "HEAD", f"/v2/ha/again/blobs/{digest}")[0] == 307
    assert _request(a.port, "DELETE", f"/v2/ha/again/manifests/{img.digest}")[0] == 202
    for digest in layer_blobs:
        assert _request(a.port, "DELETE", f"/v2/ha/again/blobs/{digest}")[0] == 202
        # b answers from the same cache: gone, not a stale 307.
        assert _request(b.port, "HEAD", f"/v2/ha/again/blobs/{digest}")[0] == 404
    skopeo.copy(img.ref, b.docker_ref("ha/again", "s1"))
    skopeo.copy(a.docker_ref("ha/again", "s1"), f"oci:{tmp_path / 'pulled'}:s1")
    assert summarize_layout(tmp_path / "pulled", "s1") == img.summary()


def test_killing_a_replica_mid_push_the_retry_completes(cluster, skopeo, e2e_images, tmp_path):
    a, b, lb = cluster
    img = e2e_images.big
    ref = f"docker://{lb.host}/ha/big:v1"
    errors, results = [], []

    def push():
        try:
            results.append(skopeo.copy(img.ref, ref, "--retry-times=5", timeout=600))
        except Exception as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=push)
    t.start()
    # Kill a as soon as it is busy with an upload of this push.
    deadline = time.monotonic() + 60
    while "PATCH /v2/ha/big/blobs/uploads/" not in a.log_text() and "PUT /v2/ha/big/blobs/uploads/" not in a.log_text():
        assert time.monotonic() < deadline and t.is_alive(), "the push never reached replica a"
        time.sleep(0.02)
    os.kill(a.pid, signal.SIGKILL)
    assert t.is_alive(), "the push finished before the replica was killed"
    t.join(600)
    assert not t.is_alive() and not errors, errors
    # Requests to the killed replica failed (in flight: reset; later: refused); nginx passed
    # the idempotent ones on, skopeo retried the others (--retry-times), the push completed.
    errors_log = (lb.workdir / "registry.error.log").read_text()
    assert f"upstream: \"http://127.0.0.1:{a.port}/v2/ha/big/" in errors_log, errors_log
    a.stop()
    skopeo.copy(ref, f"oci:{tmp_path / 'pulled'}:v1")
    assert summarize_layout(tmp_path / "pulled", "v1") == img.summary()
