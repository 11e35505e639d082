"""Writing responses: every one carries an exact Content-Length and a Content-Type
(Klein otherwise sends chunked text/html, shared/reference/twisted.md 10.1), and errors
are rendered from RegistryError in this one place."""

import json

from twisted.logger import Logger, LogLevel

from distregistry.errcode import ErrorCode, RegistryError

log = Logger()

JSON = "application/json"


def respond(request, code, body=b"", content_type=None, headers=None, length=None):
    """Set status and headers; return the body for Klein to write (b"" for HEAD).

    *length* overrides Content-Length for HEAD responses describing a body not sent."""
    request.setResponseCode(code)
    if content_type:
        request.setHeader(b"content-type", content_type.encode())
    for name, value in (headers or {}).items():
        if isinstance(value, (list, tuple)):
            request.responseHeaders.setRawHeaders(name.encode(), [v.encode() for v in value])
        else:
            request.setHeader(name.encode(), str(value).encode())
    request.setHeader(b"content-length", b"%d" % (len(body) if length is None else length))
    if request.method == b"HEAD":
        return b""
    return body


def respond_json(request, code, obj, headers=None, content_type=JSON):
    return respond(request, code, json.dumps(obj).encode(), content_type, headers)


def respond_error(request, failure):
    """Render a Failure of RegistryError; anything else is logged and becomes 500 UNKNOWN
    without leaking a traceback to the client."""
    error = failure.value
    if not isinstance(error, RegistryError):
        log.failure("unhandled error for {method} {uri}", failure, LogLevel.error, method=request.method.decode(),
                    uri=request.uri.decode("latin-1"))
        error = RegistryError(ErrorCode.UNKNOWN)
    elif error.status >= 500:
        log.error("{code} for {method} {uri}: {error}", code=error.code.name, error=str(error),
                  method=request.method.decode(), uri=request.uri.decode("latin-1"))
    return respond(request, error.status, error.body(), JSON, error.headers)
