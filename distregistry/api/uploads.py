"""Blob uploads: POST (session, monolithic ``?digest=``, cross-repo mount), PATCH, PUT,
GET/HEAD status and DELETE (registry:2's handlers/blobupload.go, 3.x semantics).

Bodies never reach the handler as bytes: ``body_sink`` (called before the body arrives)
opens the upload's writer and the body streams into it; the handler then only finishes."""

import re

from distregistry.api.respond import respond
from distregistry.api.state import UploadState
from distregistry.api.streaming import UploadSink
from distregistry.api.urls import query_arg as _arg
from distregistry.api.urls import query_args
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.reference import parse_digest, validate_name

# The spec's "<start>-<end>" only; a "bytes " prefix is not accepted (registry:2 3.x neither).
_CONTENT_RANGE = re.compile(r"^(\d{1,19})-(\d{1,19})$")


def _content_range(request, length):
    """Start offset from a PATCH ``Content-Range: <start>-<end>`` (None if absent); checks it
    against Content-Length as registry:2 3.x does."""
    header = request.getHeader(b"content-range")
    if header is None:
        return None
    m = _CONTENT_RANGE.match(header.decode("latin-1").strip())
    if not m:
        raise RegistryError(ErrorCode.RANGE_INVALID, detail="malformed Content-Range")
    start, end = int(m.group(1)), int(m.group(2))
    if start > end:
        raise RegistryError(ErrorCode.RANGE_INVALID, detail="Content-Range start after end")
    if length is not None and length != end - start + 1:
        raise RegistryError(ErrorCode.SIZE_INVALID, detail="Content-Length does not match Content-Range")
    return start


class _Target:
    """What body_sink learnt about the upload, for the handler."""
    uuid = None
    state = None


def body_sink(api, request, method, length, endpoint, args, query):
    """An UploadSink for PATCH/PUT on a session and for monolithic POST; None otherwise."""
    target = _Target()
    name = args["name"]
    if endpoint == "blob_upload":
        if method != b"POST" or _arg(query, "digest") is None or _arg(query, "mount") is not None:
            return None   # a plain session start or a mount: the body is ignored

        async def opener():
            repo = api.registry.repository(validate_name(name))
            parse_digest(_arg(query, "digest"))
            status = await repo.uploads.start()
            target.uuid = status.uuid
            return await repo.uploads.append(status.uuid)
    else:
        if method not in (b"PATCH", b"PUT"):
            return None
        uuid = args["uuid"]
        target.uuid = uuid

        async def opener():
            repo = api.registry.repository(validate_name(name))
            state = api.signer.unpack(_arg(query, "_state"), name, uuid)
            target.state = state
            if method == b"PUT":
                # Checked before any byte is stored, so a bad PUT leaves the session as it was.
                digest = _arg(query, "digest")
                if digest is None:
                    raise RegistryError(ErrorCode.DIGEST_INVALID, detail="digest missing")
                parse_digest(digest)
                start = None
            else:
                start = _content_range(request, length)
            if start is not None and start != state.offset:
                raise RegistryError(ErrorCode.RANGE_INVALID, detail="Content-Range does not start at the "
                                    "end of the upload")
            return await repo.uploads.append(uuid, offset=state.offset)

    sink = UploadSink(request, opener)
    sink.target = target
    return sink


def _range(size):
    return f"0-{max(size - 1, 0)}"


def _session_headers(api, request, repo, uuid, size, started_at):
    token = api.signer.pack(UploadState(repo.name, uuid, size, started_at))
    return {"Location": api.urls.upload(request, repo.name, uuid, token), "Range": _range(size),
            "Docker-Upload-UUID": uuid}


def _created(api, request, repo, desc):
    return respond(request, 201, headers={"Location": api.urls.blob(request, repo.name, desc.digest),
                                          "Docker-Content-Digest": desc.digest})


async def start(api, request, repo):
    query = query_args(request.uri)
    mount = _arg(query, "mount")
    source = _arg(query, "from")
    if mount is not None and source is not None:
        desc = await _try_mount(api, repo, mount, source)
        if desc is not None:
            return _created(api, request, repo, desc)
    sink = request.content
    if isinstance(sink, UploadSink):
        await sink.finish()
        desc = await repo.uploads.commit(sink.target.uuid, _arg(query, "digest"))
        return _created(api, request, repo, desc)
    status = await repo.uploads.start()
    return respond(request, 202, headers=_session_headers(api, request, repo, status.uuid, 0, status.started_at))


async def _try_mount(api, repo, digest, source):
    """registry:2 falls back to a normal session whenever the mount cannot be done."""
    try:
        parse_digest(digest)
        source_repo = api.registry.repository(validate_name(source))
        return await repo.blobs.mount(digest, source_repo.name)
    except RegistryError:
        return None


async def handle(api, request, repo, uuid):
    method = request.method
    if method in (b"GET", b"HEAD"):
        status = await repo.uploads.status(uuid)
        return respond(request, 204, headers=_session_headers(api, request, repo, uuid, status.size,
                                                              status.started_at))
    if method == b"DELETE":
        api.signer.unpack(_arg(query_args(request.uri), "_state"), repo.name, uuid)
        await repo.uploads.cancel(uuid)
        return respond(request, 204, headers={"Docker-Upload-UUID": uuid})
    sink = request.content
    if not isinstance(sink, UploadSink):   # the body sink was not ours (cannot happen on these routes)
        raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID)
    writer = await sink.finish()
    if method == b"PATCH":
        return respond(request, 202, headers=_session_headers(api, request, repo, uuid, writer.size,
                                                              sink.target.state.started_at))
    desc = await repo.uploads.commit(uuid, _arg(query_args(request.uri), "digest"))
    return _created(api, request, repo, desc)
