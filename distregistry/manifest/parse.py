"""Manifest bytes to :class:`Manifest`: strict for a PUT, lenient for what is already stored.

``parse`` follows registry:2 3.x (distribution.UnmarshalManifest, manifest/schema2,
manifest/manifestlist, manifest/ocischema) and reuses Go's error texts where it has them, but
reports every failure as 400 MANIFEST_INVALID with a readable detail string. Go answers some
of these (bad schemaVersion, bad descriptor digest) with 500 UNKNOWN or DIGEST_INVALID.
"""

import base64
import hashlib
import json

from distregistry.descriptor import Descriptor
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.manifest import mediatypes as mt
from distregistry.manifest.model import Manifest
from distregistry.reference import parse_digest

_MAX_SIZE = 2 ** 63 - 1   # Go's int64
_PLATFORM_STRINGS = ("architecture", "os", "os.version", "variant")
_PLATFORM_LISTS = ("os.features", "features")


def _invalid(detail):
    return RegistryError(ErrorCode.MANIFEST_INVALID, detail=detail)


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _decode(text):
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _invalid("manifest is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None


def _check_schema_version(doc):
    version = doc.get("schemaVersion")
    if type(version) is int and version == 2:
        return
    if type(version) is int and version == 1:
        raise _invalid("schema1 manifests are not supported")
    raise _invalid(f"schemaVersion must be 2, not {json.dumps(version)}")


def _content_type(header):
    # mime.ParseMediaType in Go: parameters dropped, type lowercased.
    return (header or "").split(";", 1)[0].strip().lower()


def _is_str_map(value):
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_platform(platform, where):
    if not isinstance(platform, dict):
        raise _invalid(f"{where}: must be an object")
    for key in _PLATFORM_STRINGS:
        if platform.get(key) is not None and not isinstance(platform[key], str):
            raise _invalid(f"{where}.{key}: must be a string")
    for key in _PLATFORM_LISTS:
        if platform.get(key) is not None and not _is_str_list(platform[key]):
            raise _invalid(f"{where}.{key}: must be an array of strings")


def _check_descriptor(obj, where):
    """Raise MANIFEST_INVALID naming the first bad field of descriptor *obj* found at *where*."""
    if not isinstance(obj, dict):
        raise _invalid(f"{where}: must be a descriptor object")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType: must be a non-empty string")
    try:
        parse_digest(obj.get("digest"))
    except RegistryError as exc:
        raise _invalid(f"{where}.digest: {exc.detail}") from None
    size = obj.get("size")
    if type(size) is not int or not 0 <= size <= _MAX_SIZE:
        raise _invalid(f"{where}.size: must be a non-negative integer")
    # Optional fields: null means absent, as for Go's decoder.
    if obj.get("urls") is not None and not _is_str_list(obj["urls"]):
        raise _invalid(f"{where}.urls: must be an array of strings")
    if obj.get("annotations") is not None and not _is_str_map(obj["annotations"]):
        raise _invalid(f"{where}.annotations: must be an object of strings")
    if obj.get("artifactType") is not None and not isinstance(obj["artifactType"], str):
        raise _invalid(f"{where}.artifactType: must be a string")
    if obj.get("platform") is not None:
        _check_platform(obj["platform"], f"{where}.platform")
    if obj.get("data") is not None:
        try:
            base64.b64decode(obj["data"], validate=True)
        except (TypeError, ValueError):   # binascii.Error is a ValueError
            raise _invalid(f"{where}.data: must be base64") from None


def _check_descriptor_list(doc, key):
    items = doc.get(key)
    if items is None:
        return   # Go accepts an absent or null list
    if not isinstance(items, list):
        raise _invalid(f"{key}: must be an array")
    for i, item in enumerate(items):
        _check_descriptor(item, f"{key}[{i}]")


_MEDIA_TYPE_MISMATCH = {   # Go's texts
    mt.DOCKER_MANIFEST: "mediaType in manifest should be '{}' not '{}'",
    mt.DOCKER_LIST: "mediaType in manifest list should be '{}' not '{}'",
    mt.OCI_MANIFEST: "if present, mediaType in manifest should be '{}' not '{}'",
    mt.OCI_INDEX: "if present, mediaType in image index should be '{}' not '{}'",
}


def _check_media_type(doc, media_type):
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType: must be a string")
    if media_type in mt.OCI_TYPES and not declared:
        return   # optional for OCI types
    if declared != media_type:
        raise _invalid(_MEDIA_TYPE_MISMATCH[media_type].format(media_type, declared or ""))


def _validate(doc, media_type):
    # Same order as Go: shape, then mediaType, then schemaVersion, then descriptors.
    if media_type == mt.OCI_MANIFEST and doc.get("manifests") is not None:
        raise _invalid("ocimanifest: expected manifest but found index")
    if media_type == mt.OCI_INDEX and (doc.get("config") is not None or doc.get("layers") is not None):
        raise _invalid("index: expected index but found manifest")
    _check_media_type(doc, media_type)
    _check_schema_version(doc)
    if media_type in mt.INDEX_TYPES:
        _check_descriptor_list(doc, "manifests")
    else:
        if doc.get("config") is None:
            raise _invalid("config: required")
        _check_descriptor(doc["config"], "config")
        _check_descriptor_list(doc, "layers")
    if media_type in mt.OCI_TYPES:
        if doc.get("subject") is not None:
            _check_descriptor(doc["subject"], "subject")
        if doc.get("artifactType") is not None and not isinstance(doc["artifactType"], str):
            raise _invalid("artifactType: must be a string")
        if doc.get("annotations") is not None and not _is_str_map(doc["annotations"]):
            raise _invalid("annotations: must be an object of strings")


def _descriptor_or_none(obj):
    return Descriptor.from_json(obj) if isinstance(obj, dict) else None


def _descriptors(doc, key):
    items = doc.get(key)
    return [Descriptor.from_json(x) for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def _assemble(payload, media_type, doc):
    """Build the Manifest, skipping whatever does not fit (already validated on the strict path)."""
    is_index = media_type in mt.INDEX_TYPES
    config = None if is_index else _descriptor_or_none(doc.get("config"))
    subject, artifact_type, annotations = None, None, {}
    if media_type in mt.OCI_TYPES:
        subject = _descriptor_or_none(doc.get("subject"))
        if isinstance(doc.get("artifactType"), str) and doc["artifactType"]:
            artifact_type = doc["artifactType"]
        if isinstance(doc.get("annotations"), dict):
            annotations = dict(doc["annotations"])
    if artifact_type is None and config is not None:
        artifact_type = config.media_type
    return Manifest(
        payload=payload, media_type=media_type, digest="sha256:" + hashlib.sha256(payload).hexdigest(),
        config=config, layers=[] if is_index else _descriptors(doc, "layers"),
        manifests=_descriptors(doc, "manifests") if is_index else [],
        subject=subject, artifact_type=artifact_type, annotations=annotations)


def parse(payload, content_type):
    """Validate a pushed manifest; *content_type* is the request's Content-Type header."""
    payload = bytes(payload)
    if len(payload) > mt.MAX_MANIFEST_SIZE:
        raise _invalid("manifest too large")
    media_type = _content_type(content_type)
    if media_type in mt.SCHEMA1_TYPES:
        raise _invalid("schema1 manifests are not supported")
    if media_type not in mt.MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type and no default available: {media_type}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid("manifest is not valid UTF-8") from None
    doc = _decode(text)
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    _validate(doc, media_type)
    return _assemble(payload, media_type, doc)


def load(payload):
    """Read stored bytes (ours or Go registry:2's); the media type comes from the payload.

    Like registry:2's manifestStore.Get: no mediaType means OCI, an index if it has a
    non-null ``manifests``. Only undecodable JSON, a schemaVersion other than 2 or an unknown
    mediaType raise (MANIFEST_INVALID); odd descriptors are skipped, not refused.
    """
    payload = bytes(payload)
    doc = _decode(payload.decode("utf-8", "replace"))   # Go's decoder replaces bad UTF-8 too
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    _check_schema_version(doc)
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared in mt.MANIFEST_TYPES:
        media_type = declared
    elif declared is None or declared == "":
        media_type = mt.OCI_INDEX if doc.get("manifests") is not None else mt.OCI_MANIFEST
    else:
        raise _invalid(f"unrecognized manifest media type {json.dumps(declared)}")
    return _assemble(payload, media_type, doc)
