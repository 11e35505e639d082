"""Layers served from outside the registry: which carry checked ``urls``, which need no blob.

The rules are registry:2 3.x's ``verifyManifest`` switch (storage/schema2manifesthandler.go,
ocimanifesthandler.go), applied to every reference including the config:

* Docker schema2: only the foreign layer type has its URLs checked; it must have at least one
  and is never looked up as a blob. Other layers may carry ``urls`` (unchecked) but must exist.
* OCI manifest: the four tar / tar+gzip layer types (plain and non-distributable) have their
  URLs checked; a non-distributable one with URLs is not looked up as a blob. Other media types
  (zstd layers, artifact blobs) are plain blobs, their ``urls`` unchecked.

registry:2 reports a bad URL as a 500 (``UNKNOWN`` plus "invalid URL on layer") followed by a
``MANIFEST_BLOB_UNKNOWN`` for the digest. It is the client's fault, so we answer 400
``MANIFEST_INVALID`` instead, once per offending descriptor, with Go's reason in the detail.
"""

import urllib.parse

from distregistry.errcode import ErrorCode, RegistryError
from distregistry.manifest import mediatypes as mt

_OCI_URL_LAYERS = frozenset({mt.OCI_LAYER, mt.OCI_LAYER_GZIP,
                             mt.OCI_NONDISTRIBUTABLE_LAYER, mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP})
_OCI_NONDISTRIBUTABLE = frozenset({mt.OCI_NONDISTRIBUTABLE_LAYER, mt.OCI_NONDISTRIBUTABLE_LAYER_GZIP})


def urls_checked(manifest_type, desc):
    """True if *desc*'s ``urls`` go through validation.manifests.urls."""
    if manifest_type == mt.DOCKER_MANIFEST:
        return desc.media_type == mt.DOCKER_FOREIGN_LAYER
    if manifest_type == mt.OCI_MANIFEST:
        return desc.media_type in _OCI_URL_LAYERS
    return False


def must_exist(manifest_type, desc):
    """True if *desc* must be a blob linked in the repository for the manifest to be accepted."""
    if manifest_type == mt.DOCKER_MANIFEST:
        return desc.media_type != mt.DOCKER_FOREIGN_LAYER
    if manifest_type == mt.OCI_MANIFEST:
        return not (desc.media_type in _OCI_NONDISTRIBUTABLE and desc.urls)
    return False


def _url_ok(url, allow, deny):
    if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # raises on a malformed port, as Go's url.Parse does
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.fragment:
        return False
    if not allow and not deny:
        return False    # registry:2: neither list configured means allow nothing
    if allow and not any(p.search(url) for p in allow):
        return False
    return not any(p.search(url) for p in deny)


def check_urls(manifest, allow, deny):
    """Raise MANIFEST_INVALID (one error per bad descriptor) unless every checked URL is allowed.

    *allow* / *deny* are compiled patterns searched anywhere in the URL (Go's MatchString).
    Both empty rejects every URL, as registry:2 does by default; to mirror
    ``validation.disabled`` pass ``allow=[re.compile("")]``.
    """
    if manifest.is_index:
        return
    labelled = [("config", manifest.config)] if manifest.config is not None else []
    labelled += [(f"layers[{i}]", d) for i, d in enumerate(manifest.layers)]
    errors = []
    for label, desc in labelled:
        if not urls_checked(manifest.media_type, desc):
            continue
        where = f"{label} ({desc.digest})"
        if manifest.media_type == mt.DOCKER_MANIFEST and not desc.urls:
            errors.append(RegistryError(ErrorCode.MANIFEST_INVALID, detail=f"{where}: missing URL on layer"))
            continue
        bad = next((u for u in desc.urls or () if not _url_ok(u, allow, deny)), None)
        if bad is not None:
            errors.append(RegistryError(ErrorCode.MANIFEST_INVALID, detail=f"{where}: invalid URL on layer: {bad}"))
    if errors:
        raise RegistryError.combine(errors)
