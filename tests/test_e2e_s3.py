"""End-to-end on S3 (moto's server): skopeo round-trip of a ≥ 50 MiB image, blob redirects
followed by curl, and a 1 GiB blob in 64 MiB PATCHes under 150 MiB of RSS."""

from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

try:
    from support import report
    from support.images import summarize_layout
    from test_e2e_memory import RSS_LIMIT_KIB, expected_digest, push_chunked
except ImportError:  # tests is a package
    from tests.support import report
    from tests.support.images import summarize_layout
    from tests.test_e2e_memory import RSS_LIMIT_KIB, expected_digest, push_chunked

pytestmark = pytest.mark.e2e

MiB = 1 << 20


def s3_daemon(daemons, moto_s3, redirect=True, name=None, **s3_extra):
    storage = {"s3": moto_s3.parameters(moto_s3.bucket(), rootdirectory="/registry", **s3_extra),
               "delete": {"enabled": True}, "redirect": {"disable": not redirect}}
    return daemons.start("distregistry", extra_config={"storage": storage}, name=name)


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True, timeout=90)


def test_skopeo_roundtrip_big_image_on_s3_with_redirects(daemons, moto_s3, skopeo, e2e_images, tmp_path):
    reg = s3_daemon(daemons, moto_s3)
    img = e2e_images.big
    total = sum(img.blobs().values())
    assert total >= 50 * MiB
    dest = reg.docker_ref("s3/big", "v1")
    t0 = time.monotonic()
    skopeo.copy(img.ref, dest)
    t_push = time.monotonic() - t0
    t0 = time.monotonic()
    # Every blob GET of the pull is a 307 to moto, followed by skopeo.
    skopeo.copy(dest, f"oci:{tmp_path / 'pulled'}:v1")
    t_pull = time.monotonic() - t0
    report(f"skopeo[s3] big image {total / MiB:.1f} MiB: push {t_push:.2f}s, pull {t_pull:.2f}s (redirected)")
    assert summarize_layout(tmp_path / "pulled", "v1") == img.summary()

    digest, size = max(img.blobs().items(), key=lambda kv: kv[1])
    url = f"{reg.url}/v2/s3/big/blobs/{digest}"
    # Without following: 307 to a presigned URL on the S3 endpoint, HEAD too.
    for method in ("GET", "HEAD"):
        r = reg.request(method, f"/v2/s3/big/blobs/{digest}")
        assert r.status == 307, (method, r.status, r.body[:300])
        location = r.header("Location")
        assert location.startswith(moto_s3.endpoint + "/") and "X-Amz-Signature=" in location
        assert r.header("Docker-Content-Digest") == digest
    # curl follows it: the bytes come from S3 and hash to the digest.
    out = tmp_path / "blob"
    done = curl("-L", "-o", str(out), "-w", "%{http_code} %{num_redirects}", url)
    assert done.stdout.decode() == "200 1", done.stderr
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == digest
    head = curl("-L", "-I", "-o", "/dev/null", "-w", "%{http_code} %{num_redirects}", url)
    assert head.stdout.decode() == "200 1", head.stderr


def test_redirect_disabled_serves_from_the_registry(daemons, moto_s3, skopeo, e2e_images):
    reg = s3_daemon(daemons, moto_s3, redirect=False)
    img = e2e_images.small
    skopeo.copy(img.ref, reg.docker_ref("s3/small", "s1"))
    for digest, size in img.blobs().items():
        r = reg.request("GET", f"/v2/s3/small/blobs/{digest}")
        if r.status == 404:
            continue  # the manifest itself is not a blob of the repository
        assert r.status == 200 and len(r.body) == size
        assert "sha256:" + hashlib.sha256(r.body).hexdigest() == digest


def test_push_1gib_blob_in_64mib_patches_memory(daemons, moto_s3):
    size = 1024 * MiB
    seed = "s3-1g"
    digest = expected_digest(seed, size)
    reg = s3_daemon(daemons, moto_s3)
    elapsed = push_chunked(reg, "s3/huge", seed, digest, size)
    hwm = reg.vmhwm_kib()
    report(f"s3: 1 GiB in 64 MiB PATCHes: {elapsed:.1f}s ({size / MiB / elapsed:.0f} MiB/s), peak RSS {hwm / 1024:.0f} MiB")
    r = reg.request("HEAD", f"/v2/s3/huge/blobs/{digest}")
    assert r.status == 307
    r = subprocess.run(["curl", "-sS", "-I", "--max-time", "60", r.header("Location")], capture_output=True)
    assert b"content-length: %d" % size in r.stdout.lower()
    assert hwm < RSS_LIMIT_KIB, f"peak RSS {hwm} KiB"
