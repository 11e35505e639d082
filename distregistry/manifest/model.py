"""The parsed form of a stored or pushed manifest; the payload bytes stay the source of truth."""

import attr

from distregistry.descriptor import Descriptor
from distregistry.manifest import foreign
from distregistry.manifest.mediatypes import INDEX_TYPES


@attr.s(frozen=True, slots=True)
class Manifest:
    payload = attr.ib(repr=False)   # exact bytes: served as is, never re-serialised
    media_type = attr.ib()
    digest = attr.ib()              # sha256 of payload
    config = attr.ib(default=None)
    layers = attr.ib(factory=list)
    manifests = attr.ib(factory=list)
    subject = attr.ib(default=None)
    # The referrers API value: artifactType, else (image manifest) config.mediaType.
    artifact_type = attr.ib(default=None)
    annotations = attr.ib(factory=dict)

    @property
    def is_index(self):
        return self.media_type in INDEX_TYPES

    def references(self):
        """registry:2's References(): config then layers in order, or an index's children."""
        if self.is_index:
            return list(self.manifests)
        # Only a stored manifest can lack a config; parse() refuses that.
        return ([self.config] if self.config is not None else []) + list(self.layers)

    def blob_references(self):
        """References that must be blobs linked in the repository (foreign layers excepted)."""
        return [d for d in self.references() if foreign.must_exist(self.media_type, d)]

    def descriptor(self):
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.payload),
                          annotations=self.annotations or None, artifact_type=self.artifact_type)

    def platform_child(self, os="linux", architecture="amd64"):
        """First child for that platform (registry:2's fallback for clients without list support)."""
        for child in self.manifests:
            platform = child.platform or {}
            if platform.get("os") == os and platform.get("architecture") == architecture:
                return child
        return None
