import hashlib
import json
import re

import pytest

from distregistry import manifest
from distregistry.descriptor import Descriptor
from distregistry.errcode import ErrorCode, RegistryError

D1, D2, D3, D4 = ("sha256:" + c * 64 for c in "1234")
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def desc(media_type, digest, size=10, **extra):
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def docker_manifest(**over):
    doc = {"schemaVersion": 2, "mediaType": manifest.DOCKER_MANIFEST,
           "config": desc(DOCKER_CONFIG, D1), "layers": [desc(DOCKER_LAYER, D2), desc(DOCKER_LAYER, D3)]}
    doc.update(over)
    return doc


def oci_manifest(**over):
    doc = {"schemaVersion": 2, "mediaType": manifest.OCI_MANIFEST,
           "config": desc(OCI_CONFIG, D1), "layers": [desc(manifest.OCI_LAYER_GZIP, D2)]}
    doc.update(over)
    return doc


def index(media_type=manifest.OCI_INDEX, **over):
    child = manifest.OCI_MANIFEST if media_type == manifest.OCI_INDEX else manifest.DOCKER_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [
        desc(child, D1, platform={"architecture": "arm64", "os": "linux", "variant": "v8"}),
        desc(child, D2, platform={"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1"}),
        desc(child, D3, platform={"architecture": "amd64", "os": "linux"}),
    ]}
    doc.update(over)
    return doc


def raw(doc):
    return json.dumps(doc, indent=3).encode()


def invalid(payload, content_type):
    with pytest.raises(RegistryError) as info:
        manifest.parse(payload, content_type)
    err = info.value
    assert (err.status, err.code, len(err.errors)) == (400, ErrorCode.MANIFEST_INVALID, 1)
    return err.detail


# --- the four types and an artifact -----------------------------------------------------------

def test_docker_manifest():
    payload = raw(docker_manifest())
    m = manifest.parse(payload, manifest.DOCKER_MANIFEST)
    assert m.payload == payload
    assert m.digest == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert (m.media_type, m.is_index, m.subject, m.annotations) == (manifest.DOCKER_MANIFEST, False, None, {})
    assert m.config == Descriptor(DOCKER_CONFIG, D1, 10)
    assert [d.digest for d in m.layers] == [D2, D3]
    assert m.manifests == []
    assert m.artifact_type == DOCKER_CONFIG
    assert [d.digest for d in m.references()] == [D1, D2, D3]
    assert m.blob_references() == m.references()


def test_docker_manifest_ignores_oci_only_fields():
    subject = desc(manifest.OCI_MANIFEST, D4)
    m = manifest.parse(raw(docker_manifest(subject=subject, artifactType="x/y", annotations={"a": "b"})),
                       manifest.DOCKER_MANIFEST)
    assert (m.subject, m.artifact_type, m.annotations) == (None, DOCKER_CONFIG, {})


def test_docker_list():
    m = manifest.parse(raw(index(manifest.DOCKER_LIST)), manifest.DOCKER_LIST)
    assert (m.media_type, m.is_index, m.config, m.layers, m.artifact_type) == (
        manifest.DOCKER_LIST, True, None, [], None)
    assert [d.digest for d in m.references()] == [D1, D2, D3]
    assert m.manifests[0].platform == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert m.blob_references() == []


def test_oci_manifest_keeps_every_descriptor_field():
    layer = desc(manifest.OCI_LAYER_GZIP, D2, 7, annotations={"org.opencontainers.image.title": "a.tgz"},
                 urls=["https://example.com/a"], artifactType="application/x.thing",
                 data="e30=", platform={"architecture": "amd64", "os": "linux"})
    m = manifest.parse(raw(oci_manifest(layers=[layer], annotations={"k": "v"})), manifest.OCI_MANIFEST)
    assert m.layers == [Descriptor(manifest.OCI_LAYER_GZIP, D2, 7, urls=["https://example.com/a"],
                                   annotations={"org.opencontainers.image.title": "a.tgz"},
                                   platform={"architecture": "amd64", "os": "linux"},
                                   artifact_type="application/x.thing")]
    assert m.annotations == {"k": "v"}
    assert m.artifact_type == OCI_CONFIG


def test_oci_manifest_media_type_is_optional():
    doc = oci_manifest()
    del doc["mediaType"]
    assert manifest.parse(raw(doc), manifest.OCI_MANIFEST).media_type == manifest.OCI_MANIFEST


def test_oci_index():
    doc = index(annotations={"a": "b"}, artifactType="application/x.bundle")
    m = manifest.parse(raw(doc), manifest.OCI_INDEX)
    assert (m.media_type, m.is_index, m.artifact_type, m.annotations) == (
        manifest.OCI_INDEX, True, "application/x.bundle", {"a": "b"})
    assert [d.digest for d in m.references()] == [D1, D2, D3]
    del doc["mediaType"], doc["artifactType"]
    m = manifest.parse(raw(doc), manifest.OCI_INDEX)
    assert (m.media_type, m.artifact_type) == (manifest.OCI_INDEX, None)


def test_oci_artifact_with_empty_config_and_subject():
    doc = oci_manifest(
        artifactType="application/vnd.example.sbom.v1+json",
        config=desc(manifest.OCI_EMPTY, EMPTY_DIGEST, 2, data="e30="),
        layers=[desc("application/vnd.example.sbom.v1+json", D2, 123)],
        subject=desc(manifest.OCI_MANIFEST, D4, 555, annotations={"x": "y"}),
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    m = manifest.parse(raw(doc), manifest.OCI_MANIFEST + "; charset=utf-8")
    assert m.config == Descriptor(manifest.OCI_EMPTY, EMPTY_DIGEST, 2)
    assert m.subject == Descriptor(manifest.OCI_MANIFEST, D4, 555, annotations={"x": "y"})
    assert m.artifact_type == "application/vnd.example.sbom.v1+json"
    assert m.descriptor() == Descriptor(
        manifest.OCI_MANIFEST, m.digest, len(m.payload), artifact_type="application/vnd.example.sbom.v1+json",
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})


def test_artifact_type_falls_back_to_config_media_type():
    doc = oci_manifest(config=desc("application/vnd.cncf.helm.config.v1+json", D1), layers=[])
    m = manifest.parse(raw(doc), manifest.OCI_MANIFEST)
    assert (m.layers, m.artifact_type) == ([], "application/vnd.cncf.helm.config.v1+json")
    assert m.descriptor().artifact_type == "application/vnd.cncf.helm.config.v1+json"


def test_absent_or_null_lists_are_empty():
    doc = oci_manifest()
    del doc["layers"]
    assert manifest.parse(raw(doc), manifest.OCI_MANIFEST).layers == []
    assert manifest.parse(raw(index(manifests=None)), manifest.OCI_INDEX).manifests == []


def test_digest_is_of_exact_bytes():
    compact = json.dumps(docker_manifest(), separators=(",", ":")).encode()
    pretty = raw(docker_manifest())
    a, b = manifest.parse(compact, manifest.DOCKER_MANIFEST), manifest.parse(pretty, manifest.DOCKER_MANIFEST)
    assert a.digest != b.digest
    assert b.digest == "sha256:" + hashlib.sha256(pretty).hexdigest()


def test_content_type_parameters_and_case():
    m = manifest.parse(raw(docker_manifest()), " Application/VND.docker.distribution.manifest.v2+json ;q=1")
    assert m.media_type == manifest.DOCKER_MANIFEST


def test_max_size_is_accepted():
    doc = oci_manifest(annotations={"pad": ""})
    base = len(raw(doc))
    doc["annotations"]["pad"] = "x" * (manifest.MAX_MANIFEST_SIZE - base)
    payload = raw(doc)
    assert len(payload) == manifest.MAX_MANIFEST_SIZE
    assert manifest.parse(payload, manifest.OCI_MANIFEST).digest.startswith("sha256:")
    assert invalid(payload + b" ", manifest.OCI_MANIFEST) == "manifest too large"


# --- validation errors -------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "", "application/json", "text/plain; charset=utf-8"])
def test_unsupported_content_type(content_type):
    detail = invalid(raw(docker_manifest()), content_type)
    assert detail.startswith("unsupported manifest media type and no default available: ")
    assert detail.endswith((content_type or "").split(";")[0])


@pytest.mark.parametrize("content_type", sorted(manifest.SCHEMA1_TYPES))
def test_schema1_content_type(content_type):
    assert invalid(b'{"schemaVersion": 1}', content_type) == "schema1 manifests are not supported"


@pytest.mark.parametrize("payload, detail", [
    (b"", "manifest is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
    (b"{", "manifest is not valid JSON: Expecting property name enclosed in double quotes: "
           "line 1 column 2 (char 1)"),
    (b'{"schemaVersion": NaN}', "manifest is not valid JSON: NaN is not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "manifest is not valid JSON: nested too deeply"),
    (b"\xef\xbb\xbf{}", "manifest is not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): "
                        "line 1 column 1 (char 0)"),
    (b'{"a": "\xff"}', "manifest is not valid UTF-8"),
    (b"[]", "manifest must be a JSON object"),
    (b"null", "manifest must be a JSON object"),
    (b'"x"', "manifest must be a JSON object"),
])
def test_not_a_json_object(payload, detail):
    assert invalid(payload, manifest.OCI_MANIFEST) == detail


@pytest.mark.parametrize("version, detail", [
    (1, "schema1 manifests are not supported"),
    (3, "schemaVersion must be 2, not 3"),
    (2.0, "schemaVersion must be 2, not 2.0"),
    ("2", 'schemaVersion must be 2, not "2"'),
    (True, "schemaVersion must be 2, not true"),
    (None, "schemaVersion must be 2, not null"),
])
def test_schema_version(version, detail):
    assert invalid(raw(oci_manifest(schemaVersion=version)), manifest.OCI_MANIFEST) == detail


def test_schema_version_required():
    doc = oci_manifest()
    del doc["schemaVersion"]
    assert invalid(raw(doc), manifest.OCI_MANIFEST) == "schemaVersion must be 2, not null"


@pytest.mark.parametrize("content_type, doc, detail", [
    (manifest.DOCKER_MANIFEST, docker_manifest(mediaType=manifest.OCI_MANIFEST),
     f"mediaType in manifest should be '{manifest.DOCKER_MANIFEST}' not '{manifest.OCI_MANIFEST}'"),
    (manifest.DOCKER_MANIFEST, docker_manifest(mediaType=None),
     f"mediaType in manifest should be '{manifest.DOCKER_MANIFEST}' not ''"),
    (manifest.DOCKER_LIST, index(manifest.DOCKER_LIST, mediaType=manifest.OCI_INDEX),
     f"mediaType in manifest list should be '{manifest.DOCKER_LIST}' not '{manifest.OCI_INDEX}'"),
    (manifest.OCI_MANIFEST, oci_manifest(mediaType=manifest.DOCKER_MANIFEST),
     f"if present, mediaType in manifest should be '{manifest.OCI_MANIFEST}' not '{manifest.DOCKER_MANIFEST}'"),
    (manifest.OCI_INDEX, index(mediaType=manifest.DOCKER_LIST),
     f"if present, mediaType in image index should be '{manifest.OCI_INDEX}' not '{manifest.DOCKER_LIST}'"),
    (manifest.OCI_MANIFEST, oci_manifest(mediaType=7), "mediaType: must be a string"),
])
def test_media_type_must_match(content_type, doc, detail):
    assert invalid(raw(doc), content_type) == detail


def test_oci_manifest_with_manifests_is_refused():
    detail = invalid(raw(oci_manifest(manifests=[])), manifest.OCI_MANIFEST)
    assert detail == "ocimanifest: expected manifest but found index"
    assert manifest.parse(raw(oci_manifest(manifests=None)), manifest.OCI_MANIFEST).layers


@pytest.mark.parametrize("extra", [{"config": desc(OCI_CONFIG, D4)}, {"layers": []}])
def test_oci_index_with_config_or_layers_is_refused(extra):
    assert invalid(raw(index(**extra)), manifest.OCI_INDEX) == "index: expected index but found manifest"


@pytest.mark.parametrize("content_type, factory", [
    (manifest.DOCKER_MANIFEST, docker_manifest), (manifest.OCI_MANIFEST, oci_manifest)])
def test_config_required(content_type, factory):
    doc = factory()
    del doc["config"]
    assert invalid(raw(doc), content_type) == "config: required"
    assert invalid(raw(factory(config=None)), content_type) == "config: required"


def test_lists_must_be_arrays():
    assert invalid(raw(oci_manifest(layers={})), manifest.OCI_MANIFEST) == "layers: must be an array"
    assert invalid(raw(index(manifests="x")), manifest.OCI_INDEX) == "manifests: must be an array"


BAD_DESCRIPTORS = [
    ("x", ": must be a descriptor object"),
    ({"digest": D4, "size": 1}, ".mediaType: must be a non-empty string"),
    (desc("", D4), ".mediaType: must be a non-empty string"),
    (desc(5, D4), ".mediaType: must be a non-empty string"),
    ({"mediaType": OCI_CONFIG, "size": 1}, ".digest: digest parsing failed"),
    (desc(OCI_CONFIG, "sha256:abc"), ".digest: invalid checksum digest format"),
    (desc(OCI_CONFIG, "sha256:" + "A" * 64), ".digest: invalid checksum digest format"),
    (desc(OCI_CONFIG, "md5:" + "a" * 32), ".digest: unsupported digest algorithm: md5"),
    (desc(OCI_CONFIG, "not a digest"), ".digest: digest parsing failed"),
    (desc(OCI_CONFIG, 12), ".digest: digest parsing failed"),
    ({"mediaType": OCI_CONFIG, "digest": D4}, ".size: must be a non-negative integer"),
    (desc(OCI_CONFIG, D4, -1), ".size: must be a non-negative integer"),
    (desc(OCI_CONFIG, D4, 1.5), ".size: must be a non-negative integer"),
    (desc(OCI_CONFIG, D4, "1"), ".size: must be a non-negative integer"),
    (desc(OCI_CONFIG, D4, True), ".size: must be a non-negative integer"),
    (desc(OCI_CONFIG, D4, 2 ** 63), ".size: must be a non-negative integer"),
    (desc(OCI_CONFIG, D4, urls="http://x"), ".urls: must be an array of strings"),
    (desc(OCI_CONFIG, D4, urls=[1]), ".urls: must be an array of strings"),
    (desc(OCI_CONFIG, D4, annotations={"a": 1}), ".annotations: must be an object of strings"),
    (desc(OCI_CONFIG, D4, annotations=["a"]), ".annotations: must be an object of strings"),
    (desc(OCI_CONFIG, D4, artifactType=1), ".artifactType: must be a string"),
    (desc(OCI_CONFIG, D4, platform="linux"), ".platform: must be an object"),
    (desc(OCI_CONFIG, D4, platform={"os": 1}), ".platform.os: must be a string"),
    (desc(OCI_CONFIG, D4, platform={"architecture": ["amd64"]}), ".platform.architecture: must be a string"),
    (desc(OCI_CONFIG, D4, platform={"os.features": "win32k"}), ".platform.os.features: must be an array of strings"),
    (desc(OCI_CONFIG, D4, data="not base64!"), ".data: must be base64"),
    (desc(OCI_CONFIG, D4, data=5), ".data: must be base64"),
]


@pytest.mark.parametrize("bad, suffix", BAD_DESCRIPTORS)
def test_bad_descriptor_is_named(bad, suffix):
    cases = [
        (manifest.OCI_MANIFEST, oci_manifest(config=bad), "config"),
        (manifest.OCI_MANIFEST, oci_manifest(layers=[desc(manifest.OCI_LAYER, D2), bad]), "layers[1]"),
        (manifest.DOCKER_MANIFEST, docker_manifest(layers=[bad]), "layers[0]"),
        (manifest.OCI_MANIFEST, oci_manifest(subject=bad), "subject"),
        (manifest.OCI_INDEX, index(manifests=[desc(manifest.OCI_MANIFEST, D1), bad]), "manifests[1]"),
        (manifest.DOCKER_LIST, index(manifest.DOCKER_LIST, manifests=[bad]), "manifests[0]"),
    ]
    for content_type, doc, where in cases:
        assert invalid(raw(doc), content_type) == where + suffix


def test_null_optional_descriptor_fields_are_absent():
    layer = desc(manifest.OCI_LAYER, D2, urls=None, annotations=None, platform=None, artifactType=None, data=None)
    m = manifest.parse(raw(oci_manifest(layers=[layer], subject=None, annotations=None)), manifest.OCI_MANIFEST)
    assert (m.layers, m.subject, m.annotations) == ([Descriptor(manifest.OCI_LAYER, D2, 10)], None, {})


def test_sha512_descriptor_digest():
    digest = "sha512:" + "b" * 128
    m = manifest.parse(raw(oci_manifest(layers=[desc(manifest.OCI_LAYER, digest)])), manifest.OCI_MANIFEST)
    assert m.layers[0].digest == digest


@pytest.mark.parametrize("field, value, detail", [
    ("artifactType", 3, "artifactType: must be a string"),
    ("annotations", {"a": None}, "annotations: must be an object of strings"),
    ("annotations", "a=b", "annotations: must be an object of strings"),
])
def test_bad_oci_top_level_fields(field, value, detail):
    assert invalid(raw(oci_manifest(**{field: value})), manifest.OCI_MANIFEST) == detail
    assert invalid(raw(index(**{field: value})), manifest.OCI_INDEX) == detail


# --- load: stored bytes ------------------------------------------------------------------------

def test_load_round_trips_parse():
    for content_type, doc in [(manifest.DOCKER_MANIFEST, docker_manifest()),
                              (manifest.DOCKER_LIST, index(manifest.DOCKER_LIST)),
                              (manifest.OCI_MANIFEST, oci_manifest(subject=desc(manifest.OCI_MANIFEST, D4))),
                              (manifest.OCI_INDEX, index(artifactType="a/b"))]:
        payload = raw(doc)
        assert manifest.load(payload) == manifest.parse(payload, content_type)


def test_load_infers_oci_types_without_media_type():
    # Go registry:2 stores OCI manifests as pushed, often without mediaType (e.g. older buildkit).
    doc = oci_manifest()
    del doc["mediaType"]
    m = manifest.load(raw(doc))
    assert (m.media_type, m.is_index, m.config.digest) == (manifest.OCI_MANIFEST, False, D1)
    doc = index()
    del doc["mediaType"]
    m = manifest.load(raw(doc))
    assert (m.media_type, [d.digest for d in m.manifests]) == (manifest.OCI_INDEX, [D1, D2, D3])
    assert manifest.load(raw(index(mediaType="", manifests=[]))).media_type == manifest.OCI_INDEX
    assert manifest.load(raw(oci_manifest(mediaType=None, manifests=None))).media_type == manifest.OCI_MANIFEST


def test_load_is_lenient_about_descriptors():
    doc = oci_manifest(layers=[{"digest": D2}, "junk", desc(manifest.OCI_LAYER, "bogus", -4)],
                       annotations=["not", "a", "map"], artifactType=5)
    m = manifest.load(raw(doc) + b"\n")
    assert m.layers == [Descriptor(None, D2, None), Descriptor(manifest.OCI_LAYER, "bogus", -4)]
    assert (m.annotations, m.artifact_type) == ({}, OCI_CONFIG)
    stored = manifest.load(b'{"schemaVersion":2,"mediaType":"%s","layers":"x"}' % manifest.OCI_MANIFEST.encode())
    assert (stored.config, stored.references(), stored.blob_references()) == (None, [], [])


def test_load_keeps_invalid_utf8_bytes():
    payload = raw(oci_manifest(annotations={"a": "PLACEHOLDER"})).replace(b"PLACEHOLDER", b"\xff")
    m = manifest.load(payload)
    assert (m.payload, m.annotations) == (payload, {"a": "\ufffd"})


@pytest.mark.parametrize("payload, detail", [
    (b"{nope", "manifest is not valid JSON: Expecting property name enclosed in double quotes: "
               "line 1 column 2 (char 1)"),
    (b"[1]", "manifest must be a JSON object"),
    (b'{"schemaVersion": 1, "fsLayers": []}', "schema1 manifests are not supported"),
    (b'{"schemaVersion": 2, "mediaType": "application/json"}',
     'unrecognized manifest media type "application/json"'),
    (b'{"schemaVersion": 2, "mediaType": ["x"]}', 'unrecognized manifest media type ["x"]'),
])
def test_load_refuses_unreadable(payload, detail):
    with pytest.raises(RegistryError) as info:
        manifest.load(payload)
    assert (info.value.code, info.value.detail) == (ErrorCode.MANIFEST_INVALID, detail)


# --- platform_child ------------------------------------------------------------------------------

def test_platform_child():
    m = manifest.parse(raw(index(manifest.DOCKER_LIST)), manifest.DOCKER_LIST)
    assert m.platform_child().digest == D3
    assert m.platform_child("windows", "amd64").digest == D2
    assert m.platform_child("linux", "arm64").digest == D1
    assert m.platform_child("linux", "s390x") is None
    no_platform = index(manifest.DOCKER_LIST, manifests=[desc(manifest.DOCKER_MANIFEST, D1)])
    assert manifest.parse(raw(no_platform), manifest.DOCKER_LIST).platform_child() is None


def test_platform_child_takes_the_first_match():
    doc = index(manifests=[desc(manifest.OCI_MANIFEST, d, platform={"os": "linux", "architecture": "amd64"})
                           for d in (D4, D1)])
    assert manifest.parse(raw(doc), manifest.OCI_INDEX).platform_child().digest == D4


# --- foreign layers: blob_references and check_urls ---------------------------------------------

ALLOW = [re.compile("^https?://foo"), re.compile(r"^https://mcr\.microsoft\.com/")]
DENY = [re.compile("^https?://foo/nope")]


def docker_with(*layers):
    return manifest.parse(raw(docker_manifest(layers=list(layers))), manifest.DOCKER_MANIFEST)


def oci_with(*layers):
    return manifest.parse(raw(oci_manifest(layers=list(layers))), manifest.OCI_MANIFEST)


def url_errors(m, allow=ALLOW, deny=DENY):
    with pytest.raises(RegistryError) as info:
        manifest.check_urls(m, allow, deny)
    assert info.value.status == 400
    assert {code for code, _, _ in info.value.errors} == {ErrorCode.MANIFEST_INVALID}
    return [detail for _, _, detail in info.value.errors]


def test_blob_references_docker():
    foreign = desc(manifest.DOCKER_FOREIGN_LAYER, D3, urls=["https://foo/x"])
    regular_with_urls = desc(DOCKER_LAYER, D2, urls=["https://elsewhere/x"])
    m = docker_with(regular_with_urls, foreign)
    assert [d.digest for d in m.references()] == [D1, D2, D3]
    assert [d.digest for d in m.blob_references()] == [D1, D2]


def test_blob_references_oci():
    m = oci_with(desc(manifest.OCI_NONDISTRIBUTABLE_LAYER_GZIP, D2, urls=["https://foo/a"]),
                 desc(manifest.OCI_NONDISTRIBUTABLE_LAYER, D3),
                 desc(manifest.OCI_LAYER_GZIP, D4, urls=["https://foo/b"]),
                 desc("application/vnd.oci.image.layer.v1.tar+zstd", D1, urls=["https://foo/c"]))
    assert [d.digest for d in m.blob_references()] == [D1, D3, D4, D1]


@pytest.mark.parametrize("urls, bad", [
    (["http://foo/bar"], None),
    (["https://foo/bar"], None),
    (["https://foo/bar#"], None),
    (["https://mcr.microsoft.com/l"], None),
    (["HTTPS://foo/bar"], "HTTPS://foo/bar"),     # regexes are case-sensitive, as in Go
    (["file:///local/file"], "file:///local/file"),
    (["http://foo/bar#baz"], "http://foo/bar#baz"),
    ([""], ""),
    (["https://foo/bar", ""], ""),
    (["", "https://foo/bar"], ""),
    (["http://nope/bar"], "http://nope/bar"),
    (["http://foo/nope"], "http://foo/nope"),
    (["ftp://foo/bar"], "ftp://foo/bar"),
    (["http://foo/a b"], "http://foo/a b"),
    (["http://foo:99999999999/x"], "http://foo:99999999999/x"),
    (["http://foo/\x07"], "http://foo/\x07"),
    (["http://[foo/x"], "http://[foo/x"),
])
def test_check_urls_docker_foreign_layer(urls, bad):
    m = docker_with(desc(DOCKER_LAYER, D2), desc(manifest.DOCKER_FOREIGN_LAYER, D3, urls=urls))
    if bad is None:
        assert manifest.check_urls(m, ALLOW, DENY) is None
    else:
        assert url_errors(m) == [f"layers[1] ({D3}): invalid URL on layer: {bad}"]


def test_check_urls_docker_foreign_layer_needs_urls():
    m = docker_with(desc(manifest.DOCKER_FOREIGN_LAYER, D2), desc(manifest.DOCKER_FOREIGN_LAYER, D3, urls=[]),
                    desc(manifest.DOCKER_FOREIGN_LAYER, D4, urls=["ftp://x"]))
    assert url_errors(m) == [f"layers[0] ({D2}): missing URL on layer", f"layers[1] ({D3}): missing URL on layer",
                             f"layers[2] ({D4}): invalid URL on layer: ftp://x"]


def test_check_urls_ignores_docker_regular_layers():
    assert manifest.check_urls(docker_with(desc(DOCKER_LAYER, D2, urls=["ftp://anything"])), [], []) is None


def test_check_urls_oci():
    checked = [manifest.OCI_LAYER, manifest.OCI_LAYER_GZIP, manifest.OCI_NONDISTRIBUTABLE_LAYER,
               manifest.OCI_NONDISTRIBUTABLE_LAYER_GZIP]
    m = oci_with(*[desc(t, D2, urls=["http://nope/x"]) for t in checked],
                 desc("application/vnd.oci.image.layer.v1.tar+zstd", D3, urls=["http://nope/x"]),
                 desc(manifest.OCI_NONDISTRIBUTABLE_LAYER, D4))
    assert url_errors(m) == [f"layers[{i}] ({D2}): invalid URL on layer: http://nope/x" for i in range(4)]
    assert manifest.check_urls(oci_with(desc(manifest.OCI_LAYER, D2, urls=["https://foo/ok"])),
                               ALLOW, DENY) is None


def test_check_urls_default_rejects_everything():
    m = oci_with(desc(manifest.OCI_NONDISTRIBUTABLE_LAYER, D2, urls=["https://foo/bar"]))
    assert url_errors(m, [], []) == [f"layers[0] ({D2}): invalid URL on layer: https://foo/bar"]
    assert manifest.check_urls(oci_with(desc(manifest.OCI_LAYER, D2)), [], []) is None


def test_check_urls_deny_only_allows_the_rest():
    m = oci_with(desc(manifest.OCI_NONDISTRIBUTABLE_LAYER, D2, urls=["https://elsewhere/bar"]))
    assert manifest.check_urls(m, [], DENY) is None
    assert url_errors(oci_with(desc(manifest.OCI_LAYER, D2, urls=["https://foo/nope/1"])), [], DENY)


def test_check_urls_validation_disabled_equivalent():
    m = oci_with(desc(manifest.OCI_LAYER, D2, urls=["https://anywhere/x"]))
    assert manifest.check_urls(m, [re.compile("")], []) is None
    assert url_errors(oci_with(desc(manifest.OCI_LAYER, D2, urls=["file:///x"])), [re.compile("")], [])


def test_check_urls_applies_to_the_config_too():
    m = manifest.parse(raw(oci_manifest(config=desc(manifest.OCI_LAYER, D1, urls=["gopher://x"]))),
                       manifest.OCI_MANIFEST)
    assert url_errors(m) == [f"config ({D1}): invalid URL on layer: gopher://x"]


def test_check_urls_skips_indexes():
    doc = index(manifests=[desc(manifest.OCI_LAYER, D1, urls=["file:///x"])])
    assert manifest.check_urls(manifest.parse(raw(doc), manifest.OCI_INDEX), [], []) is None


# --- negotiate ------------------------------------------------------------------------------------

KINDS = {
    "docker": manifest.parse(raw(docker_manifest()), manifest.DOCKER_MANIFEST),
    "list": manifest.parse(raw(index(manifest.DOCKER_LIST)), manifest.DOCKER_LIST),
    "oci": manifest.parse(raw(oci_manifest()), manifest.OCI_MANIFEST),
    "index": manifest.parse(raw(index()), manifest.OCI_INDEX),
}
OCI_REFUSAL = "OCI manifest found, but accept header does not support OCI manifests"
INDEX_REFUSAL = "OCI index found, but accept header does not support OCI indexes"
DOCKER_ONLY = [f"{manifest.DOCKER_MANIFEST}, {manifest.DOCKER_LIST}"]
ALL_FOUR = [f"{manifest.DOCKER_MANIFEST};q=0.9", f"{manifest.DOCKER_LIST}, {manifest.OCI_MANIFEST}",
            manifest.OCI_INDEX]


@pytest.mark.parametrize("kind, accept, by_tag, expected", [
    # no Accept, or */*: as stored (deliberate; Go refuses OCI here)
    ("oci", [], True, "serve"),
    ("index", [], False, "serve"),
    ("list", [], True, "serve"),
    ("oci", ["*/*"], True, "serve"),
    ("index", ["application/json, */*;q=0.1"], True, "serve"),
    ("list", [f"{manifest.DOCKER_MANIFEST}, */*"], True, "serve"),
    ("oci", [" ; , "], True, "serve"),
    # every type accepted
    ("docker", ALL_FOUR, True, "serve"),
    ("list", ALL_FOUR, True, "serve"),
    ("oci", ALL_FOUR, False, "serve"),
    ("index", ALL_FOUR, True, "serve"),
    # Docker-only clients
    ("docker", DOCKER_ONLY, True, "serve"),
    ("list", DOCKER_ONLY, True, "serve"),
    ("oci", DOCKER_ONLY, True, OCI_REFUSAL),
    ("oci", DOCKER_ONLY, False, OCI_REFUSAL),
    ("index", DOCKER_ONLY, True, INDEX_REFUSAL),
    ("index", DOCKER_ONLY, False, INDEX_REFUSAL),
    # the OCI types each need their own
    ("oci", [manifest.OCI_INDEX], True, OCI_REFUSAL),
    ("index", [manifest.OCI_MANIFEST], True, INDEX_REFUSAL),
    ("index", [manifest.OCI_INDEX.upper()], True, "serve"),
    # schema2 only: a list by tag becomes its linux/amd64 child, by digest it is served
    ("list", [manifest.DOCKER_MANIFEST], True, "child"),
    ("list", [manifest.DOCKER_MANIFEST], False, "serve"),
    ("list", ["application/json", f"{manifest.DOCKER_MANIFEST}; q=0.5"], True, "child"),
    ("list", [manifest.OCI_MANIFEST], True, "serve"),
    ("docker", ["application/json"], True, "serve"),
    ("docker", [manifest.OCI_MANIFEST], False, "serve"),
])
def test_negotiate(kind, accept, by_tag, expected):
    result = manifest.negotiate(KINDS[kind], accept, by_tag)
    if expected in (manifest.SERVE, manifest.CHILD):
        assert (result.kind, result.message) == (expected, None)
    else:
        assert (result.kind, result.message) == (manifest.REJECT, expected)
        err = result.error()
        assert (err.status, err.code, err.errors[0][1]) == (404, ErrorCode.MANIFEST_UNKNOWN, expected)
