"""``GET /v2/<name>/referrers/<digest>`` (OCI distribution-spec 1.1): always an image index,
empty when nothing refers to the subject, ``artifactType`` filtering, and pages of at most
``PAGE`` descriptors linked with ``Link: <...>; rel="next"``."""

from distregistry import manifest
from distregistry.api.pagination import page_args, paginate
from distregistry.api.respond import respond_json
from distregistry.api.urls import query_arg, query_args
from distregistry.reference import parse_digest

PAGE = 1000


async def get_referrers(api, request, repo, digest):
    parse_digest(digest)
    artifact_type = query_arg(query_args(request.uri), "artifactType") or None
    n, last = page_args(request, PAGE, PAGE, clamp=True)
    found = await repo.referrers.list(digest, artifact_type)
    page, headers = paginate(api, api.urls.path(repo.name, "referrers", digest), found, n, last,
                             key=lambda d: d.digest,
                             extra={"artifactType": artifact_type} if artifact_type else None)
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": manifest.OCI_INDEX, "manifests": [d.to_json() for d in page]}
    return respond_json(request, 200, index, headers, content_type=manifest.OCI_INDEX)
