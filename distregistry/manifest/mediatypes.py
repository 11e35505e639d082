"""Media types the manifest layer recognises (registry:2's mappings plus OCI image-spec v1.1)."""

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX})
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
OCI_TYPES = frozenset({OCI_MANIFEST, OCI_INDEX})

# Removed in registry:2 3.x; named only so a push of one gets a clear refusal.
SCHEMA1_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})

# Layers whose bytes may live outside the registry (``urls``).
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_NONDISTRIBUTABLE_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

# The OCI 1.1 empty descriptor's media type (config of artifacts that have none).
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
