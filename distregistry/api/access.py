"""Where the API asks the access controller (the handlers never do).

Requests with a body are asked in ``gotLength``, before any of the body is read
(twisted.md 2.4): the transport is paused while the controller decides (bcrypt runs in a
thread), the body sink is only created once the request is allowed, and a refused request
gets its 401 written straight to the transport and the connection closed, so a stranger's
1 GiB upload costs one packet. Everything else is asked in the dispatch."""

from http import HTTPStatus

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from distregistry.api.streaming import HIGH_WATER, BoundedBody
from distregistry.auth.interfaces import ControllerError
from distregistry.auth.records import records_for
from distregistry.errcode import ErrorCode, RegistryError

log = Logger()


def _controller_error(failure):
    """A controller's own failure (unreadable htpasswd file, ...): registry:2 answers 400
    (with an empty body; here the JSON of UNKNOWN, as every other error has a spec body)."""
    if isinstance(failure.value, RegistryError):
        return failure.value
    if isinstance(failure.value, ControllerError):
        log.error("access control: {error}", error=str(failure.value))
    else:
        log.failure("access controller failed", failure, LogLevel.error)
    return RegistryError(ErrorCode.UNKNOWN, status=400)


class AccessGate:
    def __init__(self, controller, common_headers):
        self.controller = controller
        self._common_headers = common_headers  # [(name bytes, [value bytes])]

    # -- in the dispatch ---------------------------------------------------------------
    async def check(self, request, endpoint, name):
        """Raise the controller's error unless *request* may proceed; records the user
        as ``request.registry_user`` (None when not authenticated by any controller)."""
        if request.registry_authorized:   # decided before the body
            return
        records = records_for(endpoint, request.method, name, _query(request.args))
        try:
            request.registry_user = await self.controller.authorized(request, records)
        except defer.CancelledError:
            raise
        except Exception:
            raise _controller_error(Failure()) from None
        request.registry_authorized = True

    # -- before the body -----------------------------------------------------------------
    def before_body(self, request, method, matched, make_sink):
        """The content object for a *method* request with a body on route *matched*
        ``(endpoint, args, query)``, called from gotLength (request.method, .args and
        .clientproto are not set yet); *make_sink* builds the real one once allowed.

        ``request.registry_pending`` fires once decided: a body that arrived whole with the
        headers must not be processed before that (RegistryRequest.process waits)."""
        endpoint, args, query = matched
        records = records_for(endpoint, method, args.get("name"), query)
        # Holds the few bytes that arrived with the headers (the transport is paused).
        held = request.content = BoundedBody(HIGH_WATER)
        channel = request.channel
        # Twisted would send "100 Continue" right after gotLength (twisted.md 2.4 trap); it
        # is sent once the request is allowed.
        expect = [v.lower() for v in request.requestHeaders.getRawHeaders(b"expect", [])]
        request.requestHeaders.removeHeader(b"expect")
        channel.transport.pauseProducing()

        def allowed(user):
            if held.overflow:
                # Only possible if something resumed the paused transport (a pipelined
                # request finishing): the held bytes are incomplete, so the body is refused.
                return self.reject(request, method, RegistryError(
                    ErrorCode.UNKNOWN, status=400, detail="request body arrived before the access decision"))
            request.registry_user = user
            request.registry_authorized = True
            request.content = sink = make_sink()
            sink.write(held.getvalue())
            if b"100-continue" in expect and getattr(channel, "_version", b"") == b"HTTP/1.1":
                channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            channel.transport.resumeProducing()

        def refused(failure):
            self.reject(request, method, _controller_error(failure))

        d = self.controller.authorized(request, records)
        d.addCallbacks(allowed, refused)
        d.addErrback(lambda f: log.failure("access gate", f, LogLevel.error))
        request.registry_pending = d
        return request.content

    def reject(self, request, method, error):
        """Answer *error* on the raw transport and close: the body is never read."""
        request.registry_rejected = True
        request.content = BoundedBody(0)   # drops whatever is still in flight
        body = error.body()
        lines = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}".encode()]
        headers = [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(body)),
                   (b"Docker-Distribution-Api-Version", b"registry/2.0"), (b"Connection", b"close")]
        headers += [(k.encode(), v.encode()) for k, v in error.headers.items()]
        headers += [(k, v) for k, vs in self._common_headers for v in vs]
        lines += [k + b": " + v for k, v in headers]
        transport = request.channel.transport
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        log.info("refused {method} {uri} before its body: {status}", method=method.decode(),
                 uri=getattr(request.channel, "_path", b"").decode("latin-1"), status=error.status)
        transport.loseConnection()
        if isinstance(transport, TLSMemoryBIOProtocol):
            # TLS's loseConnection sends close_notify, then waits for the client's, which a
            # paused transport never reads (and reading would mean reading the body): close
            # the TCP connection underneath once the response and close_notify are out.
            transport.transport.loseConnection()


def _query(args):
    return {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs] for k, vs in args.items()}
