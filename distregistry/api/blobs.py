"""Blob GET/HEAD/DELETE (registry:2's handlers/blob.go + blobserver.go): Range, ETag,
If-None-Match, redirects, and a push producer streaming from the driver in 1 MiB reads
(45 % less CPU than static.File, shared/reference/twisted.md 3.1)."""

import re

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from distregistry.api.respond import respond
from distregistry.reference import parse_digest

CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(Exception):
    pass


def parse_range(header, size):
    """(start, end) inclusive for a single ``bytes=`` range; None to serve the whole blob.

    Malformed or multi-range headers are ignored (RFC 9110 allows it); a well-formed range
    beyond the end raises Unsatisfiable (416)."""
    if header is None:
        return None
    m = _RANGE.match(header.decode("latin-1").strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if len(first) > 19 or len(last) > 19:
        return None
    if not first:                       # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            raise Unsatisfiable()
        return (max(size - n, 0), size - 1) if size else None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise Unsatisfiable()
    return start, min(end, size - 1)


@implementer(IPushProducer)
class ReaderProducer:
    """Writes *length* bytes from an IFileReader to the request, honouring pause/resume."""

    def __init__(self, request, reader, length):
        self._request = request
        self._reader = reader
        self._remaining = length
        self._resume = None
        self._stopped = False

    async def run(self):
        self._request.registerProducer(self, True)
        try:
            while self._remaining > 0 and not self._stopped:
                if self._resume is not None:
                    await self._resume
                    continue
                data = await self._reader.read(min(CHUNK, self._remaining))
                if not data:
                    raise IOError("blob data ended before its size")
                if self._stopped:
                    break
                self._remaining -= len(data)
                self._request.write(data)
        finally:
            self._reader.close()
            self._request.unregisterProducer()

    def pauseProducing(self):
        if self._resume is None:
            self._resume = defer.Deferred()

    def resumeProducing(self):
        d, self._resume = self._resume, None
        if d is not None:
            d.callback(None)

    def stopProducing(self):
        self._stopped = True
        self.resumeProducing()


async def handle(api, request, repo, digest):
    parse_digest(digest)
    if request.method == b"DELETE":
        await repo.blobs.delete(digest)
        return respond(request, 202)
    desc = await repo.blobs.stat(digest)
    etag = f'"{desc.digest}"'
    headers = {"Docker-Content-Digest": desc.digest, "ETag": etag, "Accept-Ranges": "bytes",
               "Cache-Control": "max-age=31536000"}
    if api.redirect:
        url = await repo.blobs.redirect_url(request.method.decode(), digest)
        if url:
            return respond(request, 307, headers={"Location": url, **headers})
    if_none_match = request.getHeader(b"if-none-match")
    if if_none_match is not None and if_none_match.decode("latin-1").strip() in (etag, desc.digest):
        return respond(request, 304, headers=headers, length=0)
    try:
        span = parse_range(request.getHeader(b"range"), desc.size)
    except Unsatisfiable:
        return respond(request, 416, b"", "text/plain; charset=utf-8",
                       {"Content-Range": f"bytes */{desc.size}", **headers})
    code, start, length = 200, 0, desc.size
    if span is not None:
        code, start, length = 206, span[0], span[1] - span[0] + 1
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{desc.size}"
    respond(request, code, content_type="application/octet-stream", headers=headers, length=length)
    if request.method == b"HEAD" or length == 0:
        return b""
    reader = await repo.blobs.open(digest, start)
    await ReaderProducer(request, reader, length).run()
    return b""
