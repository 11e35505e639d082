"""Manifest kinds: media types, parsing and validation, references, Accept negotiation. No I/O."""

from distregistry.manifest.foreign import check_urls
from distregistry.manifest.mediatypes import (
    DOCKER_FOREIGN_LAYER, DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, MANIFEST_TYPES, MAX_MANIFEST_SIZE,
    OCI_EMPTY, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_MANIFEST, OCI_NONDISTRIBUTABLE_LAYER,
    OCI_NONDISTRIBUTABLE_LAYER_GZIP, OCI_TYPES, SCHEMA1_TYPES)
from distregistry.manifest.model import Manifest
from distregistry.manifest.negotiate import CHILD, REJECT, SERVE, Negotiation, negotiate
from distregistry.manifest.parse import load, parse

__all__ = [
    "CHILD", "DOCKER_FOREIGN_LAYER", "DOCKER_LIST", "DOCKER_MANIFEST", "INDEX_TYPES", "MANIFEST_TYPES",
    "MAX_MANIFEST_SIZE", "Manifest", "Negotiation", "OCI_EMPTY", "OCI_INDEX", "OCI_LAYER", "OCI_LAYER_GZIP",
    "OCI_MANIFEST", "OCI_NONDISTRIBUTABLE_LAYER", "OCI_NONDISTRIBUTABLE_LAYER_GZIP", "OCI_TYPES", "REJECT",
    "SCHEMA1_TYPES", "SERVE", "check_urls", "load", "negotiate", "parse",
]
