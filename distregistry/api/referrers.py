"""``GET /v2/<name>/referrers/<digest>`` (OCI distribution-spec 1.1): always an image index,
empty when nothing refers to the subject, ``artifactType`` filtering."""

from distregistry import manifest
from distregistry.api.respond import respond_json
from distregistry.api.urls import query_arg, query_args
from distregistry.reference import parse_digest


async def get_referrers(api, request, repo, digest):
    parse_digest(digest)
    artifact_type = query_arg(query_args(request.uri), "artifactType") or None
    found = await repo.referrers.list(digest, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    index = {"schemaVersion": 2, "mediaType": manifest.OCI_INDEX, "manifests": [d.to_json() for d in found]}
    return respond_json(request, 200, index, headers, content_type=manifest.OCI_INDEX)
