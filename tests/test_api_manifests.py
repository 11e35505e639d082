"""Manifest PUT/GET/HEAD/DELETE for the five kinds, validation errors, Accept negotiation,
OCI-Subject and multi-tag push."""

import json

import pytest

from support.api import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_4xx,
    assert_error,
    daemon_fixture,
    descriptor,
    digest_of,
    docker_list,
    docker_manifest,
    empty_config,
    fake_digest,
    kinds,
    oci_index,
    oci_manifest,
    platform_entry,
    unique,
)

_reg, reg = daemon_fixture("reg")

ARTIFACT_TYPE = "application/vnd.example.sbom.v1"
KINDS_OF_MANIFEST = ["docker", "docker-list", "oci", "oci-index", "oci-artifact"]


def build(reg, repo, kind, salt=""):
    """Upload what a manifest of *kind* needs into *repo*; return (body, media type)."""
    if kind == "docker":
        cfg = reg.descriptor_for(repo, DOCKER_CONFIG, b'{"os":"linux","salt":"%s"}' % salt.encode())
        layer = reg.descriptor_for(repo, DOCKER_LAYER, b"docker layer " + salt.encode())
        return docker_manifest(cfg, [layer]), DOCKER_MANIFEST
    if kind == "oci":
        cfg = reg.descriptor_for(repo, OCI_CONFIG, b'{"os":"linux","salt":"%s"}' % salt.encode())
        layer = reg.descriptor_for(repo, OCI_LAYER, b"oci layer " + salt.encode())
        return oci_manifest(cfg, [layer], annotations={"org.example.salt": salt or "-"}), OCI_MANIFEST
    if kind == "oci-artifact":
        reg.push_blob(repo, EMPTY_JSON)
        layer = reg.descriptor_for(repo, "application/vnd.example.data", b"artifact " + salt.encode())
        return oci_manifest(empty_config(), [layer], artifact_type=ARTIFACT_TYPE), OCI_MANIFEST
    if kind == "docker-list":
        amd, mt = build(reg, repo, "docker", salt + "amd64")
        arm, _ = build(reg, repo, "docker", salt + "arm64")
        reg.push_manifest(repo, digest_of(amd), amd, mt)
        reg.push_manifest(repo, digest_of(arm), arm, mt)
        return docker_list([platform_entry(mt, arm, "arm64"), platform_entry(mt, amd, "amd64")]), DOCKER_LIST
    if kind == "oci-index":
        child, mt = build(reg, repo, "oci", salt + "child")
        reg.push_manifest(repo, digest_of(child), child, mt)
        return oci_index([platform_entry(mt, child)]), OCI_INDEX
    raise AssertionError(kind)


def _check_manifest_headers(r, body, media_type):
    assert r.header("Content-Type") == media_type, r
    assert r.header("Docker-Content-Digest") == digest_of(body), r
    assert r.header("ETag") == f'"{digest_of(body)}"', r
    assert r.declared_length == len(body), r


@pytest.mark.parametrize("kind", KINDS_OF_MANIFEST)
def test_put_get_head(reg, kind):
    repo = unique()
    body, mt = build(reg, repo, kind)
    dgst = digest_of(body)
    r = reg.put_manifest(repo, "v1", body, mt)
    assert r.status == 201, r
    assert r.header("Docker-Content-Digest") == dgst, r
    assert reg.follow(r.header("Location")).endswith(f"/v2/{repo}/manifests/{dgst}"), r
    assert r.declared_length == 0
    assert r.header("OCI-Subject") is None, r
    for ref in ("v1", dgst):
        r = reg.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": mt})
        assert r.status == 200, r
        assert r.body == body                                 # the exact bytes, odd whitespace kept
        _check_manifest_headers(r, body, mt)
        r = reg.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": mt})
        assert r.status == 200, r
        _check_manifest_headers(r, body, mt)
        r = reg.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": mt, "If-None-Match": f'"{dgst}"'})
        assert r.status == 304, r
    # the Location of the PUT is fetchable
    r = reg.get(f"/v2/{repo}/manifests/{dgst}", headers={"Accept": mt})
    assert r.body == body


def test_put_by_digest(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    dgst = digest_of(body)
    r = reg.put_manifest(repo, dgst, body, mt)
    assert r.status == 201 and r.header("Docker-Content-Digest") == dgst, r
    assert reg.get(f"/v2/{repo}/manifests/{dgst}", headers={"Accept": mt}).body == body


def test_put_by_digest_mismatch(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    r = reg.put_manifest(repo, fake_digest("mismatch"), body, mt)
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.get(f"/v2/{repo}/manifests/{digest_of(body)}", headers={"Accept": mt}).status == 404


def test_oci_manifest_without_media_type_field(reg):
    repo = unique()
    cfg = reg.descriptor_for(repo, OCI_CONFIG, b'{"os":"linux"}')
    body = oci_manifest(cfg, [], media_type=False)
    reg.push_manifest(repo, "bare", body, OCI_MANIFEST)
    r = reg.get(f"/v2/{repo}/manifests/bare", headers={"Accept": OCI_MANIFEST})
    assert r.body == body
    _check_manifest_headers(r, body, OCI_MANIFEST)


def test_retag(reg):
    repo = unique()
    one, mt = build(reg, repo, "oci", "one")
    two, _ = build(reg, repo, "oci", "two")
    reg.push_manifest(repo, "t", one, mt)
    reg.push_manifest(repo, "t", two, mt)
    assert reg.get(f"/v2/{repo}/manifests/t", headers={"Accept": mt}).body == two
    assert reg.get(f"/v2/{repo}/manifests/{digest_of(one)}", headers={"Accept": mt}).body == one


# --------------------------------------------------------------------------------------
# references that do not exist


def _blob_unknown_details(r, expected):
    errors = assert_error(r, 400)
    assert [e["code"] for e in errors] == ["MANIFEST_BLOB_UNKNOWN"] * len(expected), r
    assert sorted(e.get("detail") for e in errors) == sorted(expected), r


def test_missing_layers_oci(reg):
    repo = unique()
    cfg = reg.descriptor_for(repo, OCI_CONFIG, b'{"os":"linux"}')
    present = reg.descriptor_for(repo, OCI_LAYER, b"present layer")
    m1, m2 = fake_digest("l1"), fake_digest("l2")
    body = oci_manifest(cfg, [descriptor(OCI_LAYER, digest=m1, size=10), present,
                              descriptor(OCI_LAYER, digest=m2, size=20)])
    _blob_unknown_details(reg.put_manifest(repo, "v1", body, OCI_MANIFEST), [m1, m2])
    assert reg.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST}).status == 404


def test_missing_config_and_layer_docker(reg):
    repo = unique()
    c, l1 = fake_digest("c"), fake_digest("l1")
    reg.push_blob(repo, b"something")
    body = docker_manifest(descriptor(DOCKER_CONFIG, digest=c, size=2), [descriptor(DOCKER_LAYER, digest=l1, size=3)])
    _blob_unknown_details(reg.put_manifest(repo, "v1", body, DOCKER_MANIFEST), [c, l1])


def test_blob_of_another_repo_is_missing(reg):
    repo, other = unique(), unique("other")
    cfg = reg.descriptor_for(other, OCI_CONFIG, b'{"os":"linux","other":1}')
    body = oci_manifest(cfg, [])
    reg.push_blob(repo, b"unrelated")
    _blob_unknown_details(reg.put_manifest(repo, "v1", body, OCI_MANIFEST), [cfg["digest"]])


@pytest.mark.parametrize("kind", ["oci-index", "docker-list"])
def test_index_with_missing_child(reg, kind):
    repo = unique()
    present, mt = build(reg, repo, "docker" if kind == "docker-list" else "oci")
    reg.push_manifest(repo, "child", present, mt)
    missing = fake_digest("child")
    entries = [platform_entry(mt, present), descriptor(mt, digest=missing, size=100,
                                                         platform={"architecture": "arm64", "os": "linux"})]
    body, imt = (docker_list(entries), DOCKER_LIST) if kind == "docker-list" else (oci_index(entries), OCI_INDEX)
    _blob_unknown_details(reg.put_manifest(repo, "v1", body, imt), [missing])


def test_index_child_must_be_a_manifest_in_this_repo(reg):
    repo, other = unique(), unique("other")
    child, mt = build(reg, other, "oci")
    reg.push_manifest(other, "v1", child, mt)
    reg.push_blob(repo, b"unrelated")
    body = oci_index([platform_entry(mt, child)])
    _blob_unknown_details(reg.put_manifest(repo, "v1", body, OCI_INDEX), [digest_of(child)])


# --------------------------------------------------------------------------------------
# invalid manifests


def _valid_docker(reg, repo):
    cfg = reg.descriptor_for(repo, DOCKER_CONFIG, b'{"os":"linux"}')
    return {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": cfg, "layers": []}


INVALID = [
    # (id, content type, body builder(doc) -> bytes, kinds)
    ("not-json", DOCKER_MANIFEST, lambda d: b"{this is not json", ("distregistry", "go")),
    ("truncated", OCI_MANIFEST, lambda d: json.dumps(d).encode()[:-3], ("distregistry", "go")),
    ("json-array", OCI_MANIFEST, lambda d: b"[1, 2]", ("distregistry", "go")),
    ("empty-body", OCI_MANIFEST, lambda d: b"", ("distregistry", "go")),
    ("wrong-mediatype", DOCKER_MANIFEST, lambda d: json.dumps({**d, "mediaType": OCI_MANIFEST}).encode(),
     ("distregistry", "go")),
    ("docker-without-mediatype", DOCKER_MANIFEST,
     lambda d: json.dumps({k: v for k, v in d.items() if k != "mediaType"}).encode(), ("distregistry", "go")),
    ("oci-with-docker-mediatype", OCI_MANIFEST, lambda d: json.dumps(d).encode(), ("distregistry", "go")),
    # Go 2.8.2 does not check the schemaVersion of an OCI manifest
    ("schema-version-1", OCI_MANIFEST,
     lambda d: json.dumps({**d, "schemaVersion": 1, "mediaType": OCI_MANIFEST}).encode(), ("distregistry",)),
    ("index-as-manifest", OCI_INDEX,
     lambda d: json.dumps({**d, "mediaType": OCI_INDEX, "manifests": []}).encode(), ("distregistry", "go")),
    ("unknown-content-type", "application/json", lambda d: json.dumps(d).encode(), ("distregistry", "go")),
    ("no-content-type", None, lambda d: json.dumps(d).encode(), ("distregistry", "go")),
    ("text-content-type", "text/plain", lambda d: json.dumps(d).encode(), ("distregistry", "go")),
]


@pytest.mark.parametrize("content_type,make,applies", [pytest.param(c, m, k, id=i) for i, c, m, k in INVALID])
def test_invalid_manifest(reg, content_type, make, applies):
    reg.only(*applies)
    repo = unique()
    body = make(_valid_docker(reg, repo))
    r = reg.put(f"/v2/{repo}/manifests/v1", body=body, headers={"Content-Type": content_type})
    assert_error(r, 400, "MANIFEST_INVALID")
    r = reg.get(f"/v2/{repo}/manifests/v1", headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status == 404, r


def test_manifest_over_4_mib(reg):
    repo = unique()
    cfg = reg.descriptor_for(repo, OCI_CONFIG, b'{"os":"linux"}')
    body = oci_manifest(cfg, [], annotations={"pad": "x" * (4 * 1024 * 1024 + 1024)})
    r = reg.put_manifest(repo, "big", body, OCI_MANIFEST)
    if r.status == 413:
        assert r.declared_length is not None
    else:
        assert_error(r, 400, "MANIFEST_INVALID")
    assert reg.get(f"/v2/{repo}/manifests/big", headers={"Accept": OCI_MANIFEST}).status == 404


def test_manifest_just_under_4_mib_is_accepted(reg):
    repo = unique()
    cfg = reg.descriptor_for(repo, OCI_CONFIG, b'{"os":"linux"}')
    pad = 4 * 1024 * 1024 - 2048
    body = oci_manifest(cfg, [], annotations={"pad": "x" * pad})
    assert len(body) < 4 * 1024 * 1024
    reg.push_manifest(repo, "big", body, OCI_MANIFEST)
    assert reg.get(f"/v2/{repo}/manifests/big", headers={"Accept": OCI_MANIFEST}).body == body


def test_unknown_manifests(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    reg.push_manifest(repo, "exists", body, mt)
    accept = {"Accept": OCI_MANIFEST}
    errors = assert_error(reg.get(f"/v2/{repo}/manifests/nope", headers=accept), 404, "MANIFEST_UNKNOWN")
    assert errors[0]["message"]
    assert_error(reg.get(f"/v2/{repo}/manifests/{fake_digest('m')}", headers=accept), 404, "MANIFEST_UNKNOWN")
    assert reg.head(f"/v2/{repo}/manifests/nope", headers=accept).status == 404
    r = reg.get(f"/v2/{unique('norepo')}/manifests/latest", headers=accept)
    errors = assert_error(r, 404)
    assert errors[0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"), r


@kinds("distregistry")   # Go 2.8.2: 500 UNKNOWN (reads it as a tag path)
@pytest.mark.parametrize("ref", ["sha256:abc", "sha256:" + "A" * 64, "sha256:" + "a" * 65])
def test_bad_digest_reference(reg, ref):
    for method in ("GET", "DELETE"):
        r = reg.request(method, f"/v2/{unique()}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert_error(r, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("tag", ["-x", "a" * 129])
def test_put_invalid_tag(reg, tag):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    # Go answers its plain no-route 404 without registry headers: no wire check there
    r = reg.put(f"/v2/{repo}/manifests/{tag}", body=body, headers={"Content-Type": mt}, check=not reg.is_go)
    assert_4xx(r)


# --------------------------------------------------------------------------------------
# Accept negotiation


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("kind,wrong_accept", [
    ("oci", DOCKER_MANIFEST),
    ("oci", f"{DOCKER_MANIFEST}, {DOCKER_LIST}"),
    ("oci-index", f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"),
], ids=["oci-docker", "oci-docker-list", "index-manifests"])
def test_oci_not_served_without_its_accept(reg, kind, wrong_accept, method):
    repo = unique()
    body, mt = build(reg, repo, kind)
    dgst = reg.push_manifest(repo, "v1", body, mt)
    for ref in ("v1", dgst):
        r = reg.request(method, f"/v2/{repo}/manifests/{ref}", headers={"Accept": wrong_accept})
        assert r.status == 404, r
        if method == "GET":
            assert_error(r, 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("kind", KINDS_OF_MANIFEST)
def test_accept_list_with_params(reg, kind):
    repo = unique()
    body, mt = build(reg, repo, kind)
    reg.push_manifest(repo, "v1", body, mt)
    accept = f"application/vnd.example.other+json;q=0.9, {mt};q=0.5, {DOCKER_MANIFEST}"
    r = reg.get(f"/v2/{repo}/manifests/v1", headers={"Accept": accept})
    if kind == "docker-list":
        assert r.status == 200, r
        assert r.header("Content-Type") in (DOCKER_LIST, DOCKER_MANIFEST), r
    else:
        assert r.status == 200 and r.body == body, r
        _check_manifest_headers(r, body, mt)
    # the same types given in several Accept headers
    r = reg.request("GET", f"/v2/{repo}/manifests/v1",
                    headers={"Accept": "application/vnd.example.other+json", "accept": mt})
    assert r.status == 200, r


@kinds("distregistry")   # deliberate: no Accept / */* -> the stored form (Go 2.8: 404 / schema1)
@pytest.mark.parametrize("accept", [None, "*/*"], ids=["none", "star"])
@pytest.mark.parametrize("kind", KINDS_OF_MANIFEST)
def test_served_as_stored_without_specific_accept(reg, kind, accept):
    repo = unique()
    body, mt = build(reg, repo, kind)
    dgst = reg.push_manifest(repo, "v1", body, mt)
    for ref in ("v1", dgst):
        r = reg.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
        assert r.status == 200 and r.body == body, r
        _check_manifest_headers(r, body, mt)


def test_docker_list_by_tag_with_schema2_accept_serves_amd64_child(reg):
    repo = unique()
    body, mt = build(reg, repo, "docker-list")
    reg.push_manifest(repo, "multi", body, mt)
    amd64 = [m for m in json.loads(body)["manifests"] if m["platform"]["architecture"] == "amd64"][0]
    for method in ("GET", "HEAD"):
        r = reg.request(method, f"/v2/{repo}/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
        assert r.status == 200, r
        assert r.header("Docker-Content-Digest") == amd64["digest"], r
        assert r.header("Content-Type") == DOCKER_MANIFEST, r
        assert r.declared_length == amd64["size"], r
        if method == "GET":
            assert digest_of(r.body) == amd64["digest"]
    # with the list type accepted, the list itself
    r = reg.get(f"/v2/{repo}/manifests/multi", headers={"Accept": f"{DOCKER_MANIFEST}, {DOCKER_LIST}"})
    assert r.body == body


# --------------------------------------------------------------------------------------
# OCI 1.1 additions


@kinds("distregistry")   # Go 2.8 / 3.x have no referrers support, so no OCI-Subject
@pytest.mark.parametrize("kind", ["oci", "oci-artifact", "oci-index"])
def test_oci_subject_header(reg, kind):
    repo = unique()
    subject_body, smt = build(reg, repo, "oci", "subject")
    subject = reg.push_manifest(repo, "subject", subject_body, smt)
    subj = descriptor(smt, subject_body)
    if kind == "oci-index":
        child, cmt = build(reg, repo, "oci", "ichild")
        reg.push_manifest(repo, digest_of(child), child, cmt)
        body, mt = oci_index([platform_entry(cmt, child)], subject=subj, artifact_type=ARTIFACT_TYPE), OCI_INDEX
    else:
        reg.push_blob(repo, EMPTY_JSON)
        layer = reg.descriptor_for(repo, "application/vnd.example.sig", b"sig")
        body, mt = oci_manifest(empty_config(), [layer], subject=subj, artifact_type=ARTIFACT_TYPE), OCI_MANIFEST
    r = reg.put_manifest(repo, digest_of(body), body, mt)
    assert r.status == 201, r
    assert r.header("OCI-Subject") == subject, r


@kinds("distregistry")
def test_oci_subject_may_be_absent(reg):
    repo = unique()
    reg.push_blob(repo, EMPTY_JSON)
    missing = fake_digest("subject")
    body = oci_manifest(empty_config(), [], subject=descriptor(OCI_MANIFEST, digest=missing, size=123),
                        artifact_type=ARTIFACT_TYPE)
    r = reg.put_manifest(repo, digest_of(body), body, OCI_MANIFEST)
    assert r.status == 201, r
    assert r.header("OCI-Subject") == missing, r


@kinds("distregistry")   # multi-tag push (distribution-spec main), not in registry:2
def test_multi_tag_push(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    dgst = digest_of(body)
    r = reg.put_manifest(repo, dgst, body, mt, query="?tag=alpha&tag=beta&tag=v1.0")
    assert r.status == 201, r
    tags = [t.strip() for v in r.header_all("OCI-Tag") for t in v.split(",")]
    assert sorted(tags) == ["alpha", "beta", "v1.0"], r
    for tag in ("alpha", "beta", "v1.0"):
        g = reg.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": mt})
        assert g.status == 200 and g.body == body, g
    listed = reg.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert sorted(listed) == ["alpha", "beta", "v1.0"]


@kinds("distregistry")
def test_multi_tag_push_with_an_invalid_tag_stores_nothing(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    r = reg.put_manifest(repo, digest_of(body), body, mt, query="?tag=good&tag=-bad")
    assert_4xx(r)
    assert reg.get(f"/v2/{repo}/manifests/good", headers={"Accept": mt}).status == 404


# --------------------------------------------------------------------------------------
# delete


def test_delete_by_digest_removes_its_tags(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    keep, _ = build(reg, repo, "oci", "keep")
    dgst = reg.push_manifest(repo, "a", body, mt)
    reg.push_manifest(repo, "b", body, mt)
    reg.push_manifest(repo, "keep", keep, mt)
    r = reg.delete(f"/v2/{repo}/manifests/{dgst}")
    assert r.status == 202, r
    assert r.declared_length == 0
    accept = {"Accept": mt}
    for ref in ("a", "b", dgst):
        assert_error(reg.get(f"/v2/{repo}/manifests/{ref}", headers=accept), 404, "MANIFEST_UNKNOWN")
    assert reg.get(f"/v2/{repo}/manifests/keep", headers=accept).body == keep
    tags = reg.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert tags == ["keep"]
    assert_error(reg.delete(f"/v2/{repo}/manifests/{dgst}"), 404, "MANIFEST_UNKNOWN")


@kinds("distregistry")   # Go 2.8: DELETE by tag -> 400 DIGEST_INVALID (3.x untags)
def test_delete_by_tag_untags_only(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    dgst = reg.push_manifest(repo, "a", body, mt)
    reg.push_manifest(repo, "b", body, mt)
    r = reg.delete(f"/v2/{repo}/manifests/a")
    assert r.status == 202, r
    accept = {"Accept": mt}
    assert_error(reg.get(f"/v2/{repo}/manifests/a", headers=accept), 404, "MANIFEST_UNKNOWN")
    assert reg.get(f"/v2/{repo}/manifests/b", headers=accept).body == body
    assert reg.get(f"/v2/{repo}/manifests/{dgst}", headers=accept).body == body
    assert_error(reg.delete(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")


def test_delete_unknown_manifest(reg):
    repo = unique()
    body, mt = build(reg, repo, "oci")
    reg.push_manifest(repo, "a", body, mt)
    assert_error(reg.delete(f"/v2/{repo}/manifests/{fake_digest('d')}"), 404, "MANIFEST_UNKNOWN")
