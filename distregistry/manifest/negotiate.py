"""Which representation a GET/HEAD may return, given the client's Accept headers.

registry:2 3.x (handlers/manifests.go GetManifest): an OCI manifest or index is refused with
404 MANIFEST_UNKNOWN unless its type is accepted; a Docker manifest list fetched by tag by a
client that takes schema2 but not lists gets the linux/amd64 child; schema2 is always served.
Deliberate differences: no Accept at all, or ``*/*``, serves what is stored (registry:2 would
refuse OCI content to the many clients that send neither), and a list is swapped for its child
only if the client accepts schema2 (registry:2 swaps anyway, then answers 400 "Schema 2 manifest
not supported by client").
(Go 3.x's own index check is unreachable since the OCI index got its own type; we keep it.)
"""

import attr

from distregistry.errcode import ErrorCode, RegistryError
from distregistry.manifest import mediatypes as mt

SERVE = "serve"
CHILD = "child"     # the caller serves platform_child() (linux/amd64), or 404 if there is none
REJECT = "reject"

_REFUSALS = {
    mt.OCI_MANIFEST: "OCI manifest found, but accept header does not support OCI manifests",
    mt.OCI_INDEX: "OCI index found, but accept header does not support OCI indexes",
}


@attr.s(frozen=True, slots=True)
class Negotiation:
    kind = attr.ib()
    message = attr.ib(default=None)

    def error(self):
        """The 404 to answer for a REJECT."""
        return RegistryError(ErrorCode.MANIFEST_UNKNOWN, message=self.message)


def _media_types(accept):
    # Each header value may list several types; parameters (q included) are ignored, as in Go.
    types = set()
    for value in accept:
        for item in value.split(","):
            media_type = item.split(";", 1)[0].strip().lower()
            if "/" in media_type:
                types.add(media_type)
    return types


def negotiate(manifest, accept, by_tag):
    """*accept*: the Accept header values (or media types already split out) of the request."""
    types = _media_types(accept)
    if not types or "*/*" in types:
        return Negotiation(SERVE)
    if manifest.media_type in _REFUSALS and manifest.media_type not in types:
        return Negotiation(REJECT, _REFUSALS[manifest.media_type])
    if (manifest.media_type == mt.DOCKER_LIST and by_tag and mt.DOCKER_LIST not in types
            and mt.DOCKER_MANIFEST in types):
        return Negotiation(CHILD)
    return Negotiation(SERVE)
