"""Manifests GET/HEAD/PUT/DELETE by tag or digest (registry:2's handlers/manifests.go, plus
OCI 1.1: ``OCI-Subject`` on PUT and multi-tag push with ``?tag=``)."""

from distregistry import manifest
from distregistry.api.respond import respond
from distregistry.api.streaming import BoundedBody
from distregistry.api.urls import query_args
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.reference import is_digest, is_tag, parse_digest, validate_tag


def _reference(reference):
    """('digest', d) or ('tag', t); a reference that is neither is invalid."""
    if is_digest(reference):
        return "digest", parse_digest(reference)
    if is_tag(reference):
        return "tag", reference
    raise RegistryError(ErrorCode.TAG_INVALID if ":" not in reference else ErrorCode.DIGEST_INVALID,
                        detail={"Tag": reference} if ":" not in reference else "digest parsing failed")


async def handle(api, request, repo, reference):
    kind, ref = _reference(reference)
    if request.method == b"PUT":
        return await _put(api, request, repo, kind, ref)
    if request.method == b"DELETE":
        return await _delete(request, repo, kind, ref)
    return await _get(request, repo, kind, ref)


def _not_modified(request, digest):
    """A 304 if If-None-Match names *digest* (quoted or not), else None."""
    etag = f'"{digest}"'
    if_none_match = request.getHeader(b"if-none-match")
    if if_none_match is not None and if_none_match.decode("latin-1").strip() in (etag, digest):
        return respond(request, 304, headers={"Docker-Content-Digest": digest, "ETag": etag}, length=0)
    return None


async def _get(request, repo, kind, ref):
    digest = await repo.tags.resolve(ref) if kind == "tag" else ref
    # registry:2 answers 304 before it reads the manifest, so a revalidation is not a pull
    # (no pull event); the existence check keeps a 304 from vouching for an unknown digest.
    if request.getHeader(b"if-none-match") is not None and await repo.manifests.exists(digest):
        not_modified = _not_modified(request, digest)
        if not_modified is not None:
            return not_modified
    m = await repo.manifests.get(digest, tag=ref if kind == "tag" else None)
    accept = [v.decode("latin-1") for v in request.requestHeaders.getRawHeaders(b"accept", [])]
    choice = manifest.negotiate(m, accept, by_tag=kind == "tag")
    if choice.kind == manifest.REJECT:
        raise choice.error()
    if choice.kind == manifest.CHILD:
        child = m.platform_child("linux", "amd64")
        if child is None:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, message="linux/amd64 manifest not found in manifest list")
        m = await repo.manifests.get(child.digest)
    not_modified = _not_modified(request, m.digest)   # the linux/amd64 child's own ETag
    if not_modified is not None:
        return not_modified
    return respond(request, 200, m.payload, m.media_type, {"Docker-Content-Digest": m.digest,
                                                           "ETag": f'"{m.digest}"'})


async def _put(api, request, repo, kind, ref):
    body = request.content
    if not isinstance(body, BoundedBody) or body.overflow:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, detail="manifest too large", status=413)
    extra_tags = [validate_tag(t) for t in query_args(request.uri).get("tag", [])]
    content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
    tags = ([ref] if kind == "tag" else []) + [t for t in extra_tags if t != ref]
    m = await repo.manifests.put(body.getvalue(), content_type, ref if kind == "digest" else None, tags=tags)
    for tag in tags:
        await repo.tags.tag(tag, m.digest)
    headers = {"Location": api.urls.manifest(request, repo.name, m.digest), "Docker-Content-Digest": m.digest}
    if m.subject is not None:
        headers["OCI-Subject"] = m.subject.digest
    if extra_tags:
        headers["OCI-Tag"] = tags
    return respond(request, 201, headers=headers)


async def _delete(request, repo, kind, ref):
    if kind == "tag":
        await repo.tags.untag(ref)
    else:
        await repo.manifests.delete(ref)
    return respond(request, 202)
