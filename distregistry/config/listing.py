"""The ``catalog`` and ``tags`` sections: page-size limits of the listing endpoints."""

import attr

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_TAGS = 1000


@attr.s(frozen=True, slots=True)
class CatalogConfig:
    maxentries = attr.ib()  # most repositories one /v2/_catalog page returns

    @classmethod
    def parse(cls, root):
        n = root["catalog"]["maxentries"].as_int(0)
        return cls(maxentries=n if n > 0 else DEFAULT_MAX_ENTRIES)


@attr.s(frozen=True, slots=True)
class TagsConfig:
    maxtags = attr.ib()  # most tags one /v2/<name>/tags/list page returns

    @classmethod
    def parse(cls, root):
        node = root["tags"]["maxtags"]
        n = node.as_int(0)
        if n < 0:
            raise node.error("maxtags limit must be a non-negative integer value")
        return cls(maxtags=n or DEFAULT_MAX_TAGS)
