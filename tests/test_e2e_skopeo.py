"""End-to-end: skopeo against a running registry (issue 2, part 1).

Every test runs first against the Go reference (``[go]``, proves the harness) and then against
distregistry (``[distregistry]``).  One registry per kind is shared by the module; every test
uses its own repositories.
"""

from __future__ import annotations

import time

import pytest

try:
    from support import KIND_PARAMS, report
    from support.daemon import tls_probe_seconds
    from support.images import MT_OCI_INDEX, MT_OCI_MANIFEST, summarize_layout
except ImportError:  # tests is a package
    from tests.support import KIND_PARAMS, report
    from tests.support.daemon import tls_probe_seconds
    from tests.support.images import MT_OCI_INDEX, MT_OCI_MANIFEST, summarize_layout

pytestmark = pytest.mark.e2e

ACCEPT_ALL = ", ".join(
    [
        MT_OCI_MANIFEST,
        MT_OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@pytest.fixture(scope="module", params=KIND_PARAMS)
def reg(request, module_daemons):
    return module_daemons.start(request.param, name=f"{request.param}-skopeo")


def assert_blobs_served(reg, repo: str, blobs: dict[str, int]) -> None:
    """HEAD every blob: 200, exact Content-Length and Docker-Content-Digest."""
    for digest, size in blobs.items():
        r = reg.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        assert r.status == 200, f"HEAD blob {digest} in {repo}: {r.status}"
        assert int(r.header("Content-Length")) == size, f"{digest}: Content-Length"
        assert r.header("Docker-Content-Digest") == digest


def test_roundtrip_big_image_is_byte_identical(reg, skopeo, e2e_images, tmp_path):
    img = e2e_images.big
    total = sum(img.blobs().values())
    assert total >= 50 << 20 and max(d.size for d in img.layers) >= 32 << 20
    dest = reg.docker_ref("e2e/big", "v1")

    t0 = time.monotonic()
    skopeo.copy(img.ref, dest)
    t_push = time.monotonic() - t0
    t0 = time.monotonic()
    skopeo.copy(dest, f"oci:{tmp_path / 'pulled'}:v1")
    t_pull = time.monotonic() - t0
    report(
        f"skopeo[{reg.kind}] big image {total / 2**20:.1f} MiB: push {t_push:.2f}s "
        f"({total / 2**20 / t_push:.0f} MiB/s), pull {t_pull:.2f}s ({total / 2**20 / t_pull:.0f} MiB/s)"
    )

    pulled = summarize_layout(tmp_path / "pulled", "v1")
    assert pulled == img.summary()
    assert pulled["top"] == (MT_OCI_MANIFEST, img.digest, len(img.manifest_bytes))
    assert pulled["blobs"] == img.blobs()
    # The pulled manifest is the very same byte string.
    assert (tmp_path / "pulled" / "blobs" / "sha256" / img.digest[7:]).read_bytes() == img.manifest_bytes

    assert_blobs_served(reg, "e2e/big", img.blobs())
    r = reg.request("HEAD", "/v2/e2e/big/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert r.status == 200
    assert r.header("Docker-Content-Digest") == img.digest
    assert int(r.header("Content-Length")) == len(img.manifest_bytes)
    assert r.header("Content-Type") == MT_OCI_MANIFEST


def test_inspect_and_raw(reg, skopeo, e2e_images):
    img = e2e_images.small
    skopeo.copy(img.ref, reg.docker_ref("e2e/inspect", "s1"))

    info = skopeo.inspect(reg.docker_ref("e2e/inspect", "s1"))
    assert info["Name"] == f"{reg.host}/e2e/inspect"
    assert info["Digest"] == img.digest
    assert info["RepoTags"] == ["s1"]
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Layers"] == [d.digest for d in img.layers]
    assert info["Labels"] == {"org.example.seed": "small"}
    assert info["Created"].startswith("2024-01-01T00:00:00")

    assert skopeo.inspect(reg.docker_ref("e2e/inspect", "s1"), raw=True) == img.manifest_bytes
    assert skopeo.inspect(reg.docker_ref("e2e/inspect", "s1"), raw=True, config=True) == img.config_bytes
    # By digest too.
    by_digest = skopeo.inspect(reg.docker_ref("e2e/inspect", img.digest))
    assert by_digest["Digest"] == img.digest
    assert skopeo.inspect(reg.docker_ref("e2e/inspect", img.digest), raw=True) == img.manifest_bytes

    # Unknown tag / repository: skopeo fails.
    for ref in (reg.docker_ref("e2e/inspect", "nope"), reg.docker_ref("e2e/no-such-repo", "s1")):
        p = skopeo.inspect(ref, check=False)
        assert p.returncode != 0, f"inspect {ref} unexpectedly succeeded: {p.stdout}"
        assert "manifest unknown" in p.stderr.lower() or "not found" in p.stderr.lower(), p.stderr


def test_second_tag_via_copy_and_list_tags(reg, skopeo, e2e_images):
    small, small2 = e2e_images.small, e2e_images.small2
    skopeo.copy(small.ref, reg.docker_ref("e2e/tags", "s1"))
    # Registry-to-registry copy adds a second tag for the same manifest.
    skopeo.copy(reg.docker_ref("e2e/tags", "s1"), reg.docker_ref("e2e/tags", "s2"))
    skopeo.copy(small2.ref, reg.docker_ref("e2e/tags", "other"))

    assert sorted(skopeo.list_tags(reg.docker_ref("e2e/tags"))) == ["other", "s1", "s2"]
    assert skopeo.inspect(reg.docker_ref("e2e/tags", "s2"))["Digest"] == small.digest
    assert skopeo.inspect(reg.docker_ref("e2e/tags", "s2"), raw=True) == small.manifest_bytes
    assert skopeo.inspect(reg.docker_ref("e2e/tags", "other"))["Digest"] == small2.digest
    info = skopeo.inspect(reg.docker_ref("e2e/tags", "s1"))
    assert sorted(info["RepoTags"]) == ["other", "s1", "s2"]

    p = skopeo.run("list-tags", "--tls-verify=false", reg.docker_ref("e2e/never-pushed"), check=False)
    assert p.returncode != 0


def test_delete_then_inspect_fails(reg, skopeo, e2e_images):
    small, small2 = e2e_images.small, e2e_images.small2
    skopeo.copy(small.ref, reg.docker_ref("e2e/del", "s1"))
    skopeo.copy(small.ref, reg.docker_ref("e2e/del", "alias"))
    skopeo.copy(small2.ref, reg.docker_ref("e2e/del", "keep"))
    assert sorted(skopeo.list_tags(reg.docker_ref("e2e/del"))) == ["alias", "keep", "s1"]

    # skopeo delete resolves the tag and DELETEs the manifest by digest.
    skopeo.delete(reg.docker_ref("e2e/del", "s1"))

    for ref in (
        reg.docker_ref("e2e/del", "s1"),
        reg.docker_ref("e2e/del", "alias"),  # deleting the manifest untags every tag on it
        reg.docker_ref("e2e/del", small.digest),
    ):
        p = skopeo.inspect(ref, check=False)
        assert p.returncode != 0, f"inspect {ref} still works after delete: {p.stdout}"
    r = reg.request("GET", f"/v2/e2e/del/manifests/{small.digest}", headers={"Accept": ACCEPT_ALL})
    assert r.status == 404, (r.status, r.body)
    assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"

    assert skopeo.list_tags(reg.docker_ref("e2e/del")) == ["keep"]
    assert skopeo.inspect(reg.docker_ref("e2e/del", "keep"))["Digest"] == small2.digest
    # Deleting again fails.
    assert skopeo.delete(reg.docker_ref("e2e/del", small.digest), check=False).returncode != 0
    # Pushing it again works (blobs are still linked; the manifest comes back).
    skopeo.copy(small.ref, reg.docker_ref("e2e/del", "s1"))
    assert skopeo.inspect(reg.docker_ref("e2e/del", "s1"), raw=True) == small.manifest_bytes


def test_multiarch_index_roundtrip(reg, skopeo, e2e_images, tmp_path):
    multi = e2e_images.multi
    dest = reg.docker_ref("e2e/multi", "m1")
    skopeo.copy(multi.ref, dest, all_images=True)

    assert skopeo.inspect(dest, raw=True) == multi.index_bytes
    r = reg.request("HEAD", "/v2/e2e/multi/manifests/m1", headers={"Accept": ACCEPT_ALL})
    assert r.status == 200
    assert r.header("Content-Type") == MT_OCI_INDEX
    assert r.header("Docker-Content-Digest") == multi.digest
    for child in multi.images:
        assert skopeo.inspect(reg.docker_ref("e2e/multi", child.digest), raw=True) == child.manifest_bytes

    # Platform resolution through the index.
    amd = skopeo.inspect(dest, "--override-arch", "amd64", "--override-os", "linux")
    arm = skopeo.inspect(dest, "--override-arch", "arm64", "--override-variant", "v8", "--override-os", "linux")
    assert (amd["Architecture"], amd["Layers"]) == ("amd64", [d.digest for d in multi.images[0].layers])
    assert (arm["Architecture"], arm["Layers"]) == ("arm64", [d.digest for d in multi.images[1].layers])

    # Pull everything back: identical index, children and blobs.
    skopeo.copy(dest, f"oci:{tmp_path / 'all'}:m1", all_images=True)
    pulled = summarize_layout(tmp_path / "all", "m1")
    assert pulled == multi.summary()
    assert pulled["top"] == (MT_OCI_INDEX, multi.digest, len(multi.index_bytes))
    assert len(pulled["manifests"]) == 3

    # A single-platform pull picks the arm64 child.
    skopeo.copy(dest, f"oci:{tmp_path / 'arm'}:m1", "--override-arch", "arm64", "--override-variant", "v8")
    arm_pulled = summarize_layout(tmp_path / "arm", "m1")
    assert arm_pulled["top"][1] == multi.images[1].digest
    assert arm_pulled["blobs"] == multi.images[1].blobs()


def test_copy_between_repositories(reg, skopeo, e2e_images, tmp_path):
    img = e2e_images.big
    src = reg.docker_ref("e2e/xrepo/src", "v1")
    dst = reg.docker_ref("e2e/xrepo/dst", "copied")
    skopeo.copy(img.ref, src)

    t0 = time.monotonic()
    skopeo.copy(src, dst)
    report(f"skopeo[{reg.kind}] repo-to-repo copy of the big image: {time.monotonic() - t0:.2f}s")

    assert skopeo.inspect(dst, raw=True) == img.manifest_bytes
    assert_blobs_served(reg, "e2e/xrepo/dst", img.blobs())
    skopeo.copy(dst, f"oci:{tmp_path / 'pulled'}:copied")
    assert summarize_layout(tmp_path / "pulled", "copied") == img.summary()

    # Cross-repository mount directly (what skopeo does when its blob cache knows the source):
    big = max(img.layers, key=lambda d: d.size)
    r = reg.request("POST", f"/v2/e2e/xrepo/mounted/blobs/uploads/?mount={big.digest}&from=e2e/xrepo/src")
    assert r.status == 201, (r.status, r.body)
    assert r.header("Docker-Content-Digest") == big.digest
    assert r.header("Location", "").endswith(f"/v2/e2e/xrepo/mounted/blobs/{big.digest}")
    assert_blobs_served(reg, "e2e/xrepo/mounted", {big.digest: big.size})
    # A blob that exists only in another repository is not visible without the mount.
    r = reg.request("HEAD", f"/v2/e2e/xrepo/other/blobs/{big.digest}")
    assert r.status == 404
    # A mount from a repository that lacks the blob falls back to a normal upload session.
    r = reg.request("POST", f"/v2/e2e/xrepo/other/blobs/uploads/?mount={big.digest}&from=e2e/inspect-nothing")
    assert r.status == 202, (r.status, r.body)
    assert r.header("Location")
    reg.request("DELETE", r.header("Location"))


def test_plain_http_port_rejects_tls_probe_quickly(reg):
    """skopeo/podman/dockerd with an insecure registry try HTTPS first and fall back to HTTP only
    when the handshake fails.  Go answers a ClientHello at once with a plain-HTTP 400; a server
    that waits for a request line stalls every client call for 10 s (Go's TLS handshake timeout).
    The other tests here talk to the daemon's own port, so such a stall would also make them slow."""
    seconds, how = tls_probe_seconds(reg.port, timeout=3.0)
    assert how != "timeout" and seconds < 1.0, (
        f"TLS ClientHello on the plain-HTTP port not rejected ({how} after {seconds:.1f}s)"
    )
    # And the server is still fine afterwards.
    assert reg.request("GET", "/v2/").status == 200
