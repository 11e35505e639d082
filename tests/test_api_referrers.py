"""OCI 1.1 referrers API (distregistry only: registry:2 has none)."""

import pytest

from support.api import (
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    daemon_fixture,
    descriptor,
    digest_of,
    empty_config,
    fake_digest,
    oci_index,
    oci_manifest,
    platform_entry,
    unique,
)

_reg, reg = daemon_fixture("reg", wanted=("distregistry",))

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"


def _empty_index(r):
    assert r.status == 200, r
    assert r.header("Content-Type").split(";")[0] == OCI_INDEX, r
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body.get("mediaType", OCI_INDEX) == OCI_INDEX
    return body


def _subject(reg, repo):
    return descriptor(OCI_MANIFEST, reg.push_oci_image(repo, "subject"))


def _artifact(reg, repo, subject, artifact_type, payload, annotations=None, config=None):
    if config is None:
        reg.push_blob(repo, EMPTY_JSON)
        config = empty_config()
    layer = reg.descriptor_for(repo, "application/vnd.example.payload", payload)
    body = oci_manifest(config, [layer], subject=subject, artifact_type=artifact_type, annotations=annotations)
    r = reg.put_manifest(repo, digest_of(body), body, OCI_MANIFEST)
    assert r.status == 201, r
    assert r.header("OCI-Subject") == subject["digest"], r
    return body


def _listed(r):
    return {m["digest"]: m for m in _empty_index(r)["manifests"]}


def test_unknown_subject_is_an_empty_index(reg):
    repo = unique()
    for url in (f"/v2/{repo}/referrers/{fake_digest('s')}",            # repo unknown too
                f"/v2/{repo}/referrers/{fake_digest('s')}?artifactType={SBOM}"):
        body = _empty_index(reg.get(url))
        assert body["manifests"] == []


def test_subject_without_referrers(reg):
    repo = unique()
    subject = _subject(reg, repo)
    assert _empty_index(reg.get(f"/v2/{repo}/referrers/{subject['digest']}"))["manifests"] == []


def test_referrers_listed(reg):
    repo = unique()
    subject = _subject(reg, repo)
    sbom = _artifact(reg, repo, subject, SBOM, b"sbom", annotations={"org.example.kind": "sbom",
                                                                     "org.opencontainers.image.created": "2026"})
    sig = _artifact(reg, repo, subject, SIG, b"sig")
    # no artifactType: the config media type stands in
    cfg = reg.descriptor_for(repo, "application/vnd.example.config.v1+json", b'{"c":1}')
    by_config = _artifact(reg, repo, subject, None, b"cfg", config=cfg)
    # an index can refer to a subject too
    child = reg.push_oci_image(repo)
    index = oci_index([platform_entry(OCI_MANIFEST, child)], subject=subject, artifact_type=SBOM,
                      annotations={"org.example.index": "yes"})
    r = reg.put_manifest(repo, digest_of(index), index, OCI_INDEX)
    assert r.status == 201 and r.header("OCI-Subject") == subject["digest"], r
    # a manifest with another subject is not listed
    other = _subject(reg, unique("othersubject"))
    _artifact(reg, repo, descriptor(OCI_MANIFEST, digest=other["digest"], size=other["size"]), SBOM, b"other")

    r = reg.get(f"/v2/{repo}/referrers/{subject['digest']}")
    listed = _listed(r)
    assert set(listed) == {digest_of(sbom), digest_of(sig), digest_of(by_config), digest_of(index)}, r
    assert r.header("OCI-Filters-Applied") is None, r
    d = listed[digest_of(sbom)]
    assert d["mediaType"] == OCI_MANIFEST
    assert d["size"] == len(sbom)
    assert d["artifactType"] == SBOM
    assert d["annotations"] == {"org.example.kind": "sbom", "org.opencontainers.image.created": "2026"}
    assert listed[digest_of(sig)]["artifactType"] == SIG
    assert not listed[digest_of(sig)].get("annotations")
    assert listed[digest_of(by_config)]["artifactType"] == "application/vnd.example.config.v1+json"
    d = listed[digest_of(index)]
    assert d["mediaType"] == OCI_INDEX and d["size"] == len(index) and d["artifactType"] == SBOM
    assert d["annotations"] == {"org.example.index": "yes"}


def test_artifact_type_filter(reg):
    repo = unique()
    subject = _subject(reg, repo)
    sbom = _artifact(reg, repo, subject, SBOM, b"sbom1")
    sbom2 = _artifact(reg, repo, subject, SBOM, b"sbom2")
    _artifact(reg, repo, subject, SIG, b"sig")
    r = reg.get(f"/v2/{repo}/referrers/{subject['digest']}?artifactType={SBOM}")
    assert set(_listed(r)) == {digest_of(sbom), digest_of(sbom2)}
    assert r.header("OCI-Filters-Applied") == "artifactType", r
    r = reg.get(f"/v2/{repo}/referrers/{subject['digest']}?artifactType=application/vnd.example.none")
    assert _listed(r) == {}
    assert r.header("OCI-Filters-Applied") == "artifactType", r


def test_referrers_of_a_subject_that_does_not_exist(reg):
    repo = unique()
    missing = fake_digest("absent-subject")
    art = _artifact(reg, repo, descriptor(OCI_MANIFEST, digest=missing, size=42), SBOM, b"dangling")
    assert set(_listed(reg.get(f"/v2/{repo}/referrers/{missing}"))) == {digest_of(art)}


def test_referrers_are_per_repository(reg):
    repo, other = unique(), unique("other")
    subject = _subject(reg, repo)
    _artifact(reg, repo, subject, SBOM, b"mine")
    assert _listed(reg.get(f"/v2/{other}/referrers/{subject['digest']}")) == {}


@pytest.mark.parametrize("bad", ["sha256:abc", "sha256:" + "A" * 64, "notadigest", "latest"])
def test_bad_digest(reg, bad):
    r = reg.get(f"/v2/{unique()}/referrers/{bad}")
    assert r.status in (400, 404), r
    if r.status == 400:
        assert_error(r, 400, "DIGEST_INVALID")
    if ":" in bad:
        assert r.status == 400, r


def test_deleted_referrer_is_not_listed(reg):
    repo = unique()
    subject = _subject(reg, repo)
    keep = _artifact(reg, repo, subject, SBOM, b"keep")
    gone = _artifact(reg, repo, subject, SBOM, b"gone")
    assert set(_listed(reg.get(f"/v2/{repo}/referrers/{subject['digest']}"))) == {digest_of(keep), digest_of(gone)}
    assert reg.delete(f"/v2/{repo}/manifests/{digest_of(gone)}").status == 202
    assert set(_listed(reg.get(f"/v2/{repo}/referrers/{subject['digest']}"))) == {digest_of(keep)}


def test_pushing_the_same_referrer_twice_lists_it_once(reg):
    repo = unique()
    subject = _subject(reg, repo)
    art = _artifact(reg, repo, subject, SBOM, b"twice")
    r = reg.put_manifest(repo, "tagged-too", art, OCI_MANIFEST)
    assert r.status == 201, r
    manifests = _empty_index(reg.get(f"/v2/{repo}/referrers/{subject['digest']}"))["manifests"]
    assert [m["digest"] for m in manifests] == [digest_of(art)]
