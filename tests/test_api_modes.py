"""storage.delete.enabled: false, and storage.maintenance.readonly (a second daemon on the
same root as a writable one)."""

import uuid

import pytest

from support.api import (
    OCI_MANIFEST,
    applies_fixture,
    assert_error,
    daemon_fixture,
    digest_of,
    registry_for,
    selected_kinds,
    start_daemon,
    unique,
)

_nodelete, nodelete = daemon_fixture("nodelete", {"storage": {"delete": {"enabled": False}}})


def _push_image(reg, repo):
    layer = b"a layer of " + repo.encode()
    return digest_of(layer), reg.push_oci_image(repo, "v1", layers=[layer])


def test_delete_disabled(nodelete):
    reg = nodelete
    repo = unique()
    blob, body = _push_image(reg, repo)
    dgst = digest_of(body)
    for path in (f"/v2/{repo}/blobs/{blob}", f"/v2/{repo}/manifests/{dgst}", f"/v2/{repo}/manifests/v1"):
        assert_error(reg.delete(path), 405, "UNSUPPORTED")
    accept = {"Accept": OCI_MANIFEST}
    assert reg.get(f"/v2/{repo}/blobs/{blob}").status == 200
    assert reg.get(f"/v2/{repo}/manifests/{dgst}", headers=accept).body == body
    assert reg.get(f"/v2/{repo}/manifests/v1", headers=accept).body == body


def test_delete_disabled_unknown_targets(nodelete):
    # The gate comes first: nothing is revealed about what exists.
    reg = nodelete
    repo = unique()
    _push_image(reg, repo)
    for path in (f"/v2/{repo}/blobs/{digest_of(b'none')}", f"/v2/{repo}/manifests/nosuchtag"):
        assert_error(reg.delete(path), 405, "UNSUPPORTED")


def test_delete_disabled_still_cancels_uploads(nodelete):
    # Deliberate (= registry:2): cancelling an upload session is not a content delete.
    reg = nodelete
    repo = unique()
    loc = reg.start_upload(repo).header("Location")
    assert reg.at(loc, "DELETE").status == 204


# --------------------------------------------------------------------------------------
# read-only: a writable daemon fills a root, a read-only one serves the same root


@pytest.fixture(scope="module", params=selected_kinds())
def _readonly_pair(request, tmp_path_factory):
    kind = request.param
    base = tmp_path_factory.mktemp(f"readonly-{kind}")
    root = base / "shared-root"
    secret = {"http": {"secret": "shared-between-writer-and-reader"}}   # so _state tokens carry over
    writer = start_daemon(kind, base / "writer", root=root, name=f"writer-{kind}", config=secret)
    try:
        w = registry_for(writer)
        repo = unique("ro")
        blob, body = _push_image(w, repo)
        pending = w.start_upload(repo).header("Location")
    finally:
        writer.stop()
    ro = start_daemon(kind, base / "ro", root=root, name=f"readonly-{kind}",
                      config={**secret, "storage": {"maintenance": {"readonly": {"enabled": True}}}})
    try:
        r = registry_for(ro)
        r.fixture = {"repo": repo, "blob": blob, "manifest": body, "pending": pending}
        yield r
    finally:
        ro.stop()


readonly = applies_fixture("readonly", "_readonly_pair")


def _assert_read_only_refusal(r):
    assert r.status == 405, r
    allow = {m.strip() for m in (r.header("Allow") or "").split(",") if m.strip()}
    assert allow == {"GET", "HEAD"}, r
    if (r.header("Content-Type") or "").startswith("application/json"):
        assert_error(r, 405, "UNSUPPORTED")


def test_readonly_refuses_writes(readonly):
    reg, f = readonly, readonly.fixture
    repo, blob, dgst = f["repo"], f["blob"], digest_of(f["manifest"])
    pending = reg.follow(f["pending"])
    pending_path = pending.split("?")[0]
    cases = [
        ("POST", f"/v2/{repo}/blobs/uploads/", b""),
        ("POST", f"/v2/{unique('new')}/blobs/uploads/", b""),
        ("POST", f"/v2/{repo}/blobs/uploads/?mount={blob}&from={repo}", b""),
        ("POST", f"/v2/{repo}/blobs/uploads/?digest={digest_of(b'mono')}", b"mono"),
        ("PATCH", pending, b"more"),
        ("PUT", pending + f"&digest={digest_of(b'')}", b""),
        ("DELETE", pending, b""),
        ("PUT", f"/v2/{repo}/manifests/v2", f["manifest"]),
        ("PUT", f"/v2/{repo}/manifests/{dgst}", f["manifest"]),
        ("DELETE", f"/v2/{repo}/manifests/{dgst}", b""),
        ("DELETE", f"/v2/{repo}/manifests/v1", b""),
        ("DELETE", f"/v2/{repo}/blobs/{blob}", b""),
    ]
    for method, path, body in cases:
        headers = {"Content-Type": OCI_MANIFEST if "/manifests/" in path else "application/octet-stream"}
        _assert_read_only_refusal(reg.request(method, path, body=body, headers=headers))
    if not reg.is_go:   # Go 2.8.2 checks the (absent) _state before the method: 404
        _assert_read_only_refusal(reg.patch(pending_path, b"more"))


def test_readonly_serves_reads(readonly):
    reg, f = readonly, readonly.fixture
    repo = f["repo"]
    accept = {"Accept": OCI_MANIFEST}
    assert reg.get("/v2/").status == 200
    assert reg.get(f"/v2/{repo}/manifests/v1", headers=accept).body == f["manifest"]
    assert reg.head(f"/v2/{repo}/manifests/{digest_of(f['manifest'])}", headers=accept).status == 200
    r = reg.get(f"/v2/{repo}/blobs/{f['blob']}")
    assert r.status == 200 and digest_of(r.body) == f["blob"], r
    assert reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    assert repo in reg.get("/v2/_catalog?n=1000").json()["repositories"]
    r = reg.at(f["pending"], "GET")
    assert r.status == 204, r
    r = reg.get(f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}")
    assert r.status == 404, r
