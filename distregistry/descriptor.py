"""OCI content descriptors, shared by the blob, manifest and referrers layers."""

import attr


@attr.s(frozen=True, slots=True)
class Descriptor:
    media_type = attr.ib()
    digest = attr.ib()
    size = attr.ib()
    urls = attr.ib(default=None)
    annotations = attr.ib(default=None)
    platform = attr.ib(default=None)
    artifact_type = attr.ib(default=None)

    def to_json(self):
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, obj):
        return cls(media_type=obj.get("mediaType"), digest=obj.get("digest"), size=obj.get("size"),
                   urls=obj.get("urls"), annotations=obj.get("annotations"),
                   platform=obj.get("platform"), artifact_type=obj.get("artifactType"))
