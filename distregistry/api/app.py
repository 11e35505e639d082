"""The Klein application: every route of the API in one table, and the one dispatch path
(common headers, read-only gate, name validation, error rendering) they all go through."""

from urllib.parse import urlsplit

from klein import Klein
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from distregistry import __version__, manifest
from distregistry.api import blobs, catalog, manifests, referrers, tags, uploads
from distregistry.api.access import AccessGate
from distregistry.api.drain import RegistryChannel
from distregistry.api.respond import respond, respond_error
from distregistry.api.state import StateSigner
from distregistry.api.streaming import BoundedBody, RegistryRequest
from distregistry.api.urls import URLBuilder, query_args
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.notifications.broadcast import Broadcaster

SERVER = f"distregistry/{__version__}".encode()
MUTATING = frozenset([b"POST", b"PUT", b"PATCH", b"DELETE"])
# Bodies of requests that are not blob uploads: manifests (4 MiB at most) and nothing else.
SMALL_BODY_LIMIT = manifest.MAX_MANIFEST_SIZE

# (endpoint = registry:2's route name, rule below the prefix, methods, handler)
ROUTES = [
    ("base", "v2/", ["GET"], None),
    ("catalog", "v2/_catalog", ["GET"], catalog.get_catalog),
    ("tags", "v2/<path:name>/tags/list", ["GET"], tags.get_tags),
    ("manifest", "v2/<path:name>/manifests/<reference>", ["GET", "PUT", "DELETE"], manifests.handle),
    ("blob_upload", "v2/<path:name>/blobs/uploads/", ["POST"], uploads.start),
    ("blob_upload_chunk", "v2/<path:name>/blobs/uploads/<uuid>", ["GET", "PATCH", "PUT", "DELETE"],
     uploads.handle),
    ("blob", "v2/<path:name>/blobs/<digest>", ["GET", "DELETE"], blobs.handle),
    ("referrers", "v2/<path:name>/referrers/<digest>", ["GET"], referrers.get_referrers),
]


def _verbatim(name, raw_path):
    """Valid names need no escaping: a name not found verbatim in the raw path was
    percent-encoded (e.g. ``a%2Fb``), which no real client sends."""
    return name.encode("utf-8", "replace") in raw_path


class RegistryAPI:
    """Holds what handlers need: the registry layer, URL builder, state signer and settings."""

    def __init__(self, registry, config, access=None, events=None):
        """*access*: an IAccessController, or None for no access control; *events*: the
        notifications Broadcaster, or None for none."""
        http = config.http
        self.registry = registry
        self.config = config
        self.urls = URLBuilder(http.prefix, http.host, http.relativeurls)
        self.signer = StateSigner(http.secret)
        # Handlers get repositories whose stores emit registry:2's events (none configured:
        # a Broadcaster without endpoints, which builds nothing).
        self.events = events if events is not None else Broadcaster()
        self.readonly = config.storage.readonly
        self.redirect = not config.storage.redirect_disabled
        self._headers = [(k.encode(), [v.encode() for v in vs]) for k, vs in http.headers.items()]
        self.gate = None if access is None else AccessGate(access, self._headers)
        self.app = Klein()
        for endpoint, rule, methods, handler in ROUTES:
            self._add_route(endpoint, http.prefix + rule, methods, handler)
        self.app.route("/", methods=["GET"], endpoint="alive")(self._alive)
        self.app.handle_errors(NotFound)(self._not_found)
        self.app.handle_errors(MethodNotAllowed)(self._not_allowed)
        self.app.handle_errors(RequestRedirect)(self._redirect)

    # -- routing -------------------------------------------------------------------------
    def _add_route(self, endpoint, rule, methods, handler):
        def view(request, **kwargs):
            return defer.ensureDeferred(self._dispatch(request, endpoint, handler, kwargs))
        self.app.route(rule, methods=methods, endpoint=endpoint)(view)

    async def _dispatch(self, request, endpoint, handler, kwargs):
        self._common_headers(request)
        try:
            name = kwargs.pop("name", None)
            if name is not None and not _verbatim(name, request.path):
                raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name})
            if self.gate is not None:
                await self.gate.check(request, endpoint, name)
            if self.readonly and request.method in MUTATING:
                raise RegistryError(ErrorCode.UNSUPPORTED, detail="registry is in read-only mode",
                                    headers={"Allow": "GET, HEAD"})
            if handler is None:
                return respond(request, 200, b"{}", "application/json")
            if name is not None:
                kwargs["repo"] = self.events.listen(self.registry.repository(name), request, self.urls)
            return await handler(self, request, **kwargs)
        except defer.CancelledError:
            raise
        except Exception:
            return respond_error(request, Failure())

    def _common_headers(self, request):
        request.setHeader(b"server", SERVER)
        request.setHeader(b"docker-distribution-api-version", b"registry/2.0")
        for name, values in self._headers:
            request.responseHeaders.setRawHeaders(name, values)

    def _alive(self, request):
        # registry:2's load-balancer "yes man" on "/".
        request.setHeader(b"cache-control", b"no-cache")
        return respond(request, 200, b"", "text/plain; charset=utf-8")

    def _not_found(self, request, failure):
        self._common_headers(request)
        return respond(request, 404, b"404 page not found\n", "text/plain; charset=utf-8")

    def _not_allowed(self, request, failure):
        self._common_headers(request)
        allowed = ", ".join(sorted(failure.value.valid_methods or []))
        return respond(request, 405, b"Method not allowed\n", "text/plain; charset=utf-8",
                       {"Allow": allowed})

    def _redirect(self, request, failure):
        # "/v2" -> "/v2/" and the like (registry:2's StrictSlash); 308 keeps the method.
        self._common_headers(request)
        return respond(request, failure.value.code, b"", "text/plain; charset=utf-8",
                       {"Location": failure.value.new_url})

    def match(self, method, path):
        """(endpoint, args, query) for a raw request line, or None."""
        parts = urlsplit(path.decode("latin-1"))
        adapter = self.app.url_map.bind("", path_info=parts.path, default_method=method.decode("latin-1"))
        try:
            rule, args = adapter.match(return_rule=True)
        except Exception:   # no route / method: the normal dispatch answers that
            return None
        return rule.endpoint, args, query_args(path)

    # -- bodies --------------------------------------------------------------------------
    def body_sink(self, request, method, path, length):
        """Called from RegistryRequest.gotLength: where this request's body goes. With
        access control, a request with a body is decided before any of it is read."""
        if self.gate is not None and method in MUTATING:
            matched = self.match(method, path)
            if matched is not None and _verbatim(matched[1].get("name", ""), path):
                return self.gate.before_body(request, method, matched,
                                             lambda: self._body_sink(request, method, path, length))
        return self._body_sink(request, method, path, length)

    def _body_sink(self, request, method, path, length):
        if method in (b"PATCH", b"PUT", b"POST") and not self.readonly:
            matched = self.match(method, path)
            if (matched is not None and matched[0] in ("blob_upload", "blob_upload_chunk")
                    and _verbatim(matched[1]["name"], path)):
                sink = uploads.body_sink(self, request, method, length, *matched)
                if sink is not None:
                    return sink
        return BoundedBody(SMALL_BODY_LIMIT)

    def resource(self):
        return self.app.resource()


def make_site(api, access_log=None):
    site = server.Site(api.resource())
    # HTTP/1.1 only (no h2 switch): Twisted's h2 costs ~4x the CPU per byte (twisted.md 5.4).
    site.protocol = RegistryChannel
    site.connections = set()
    site.requestFactory = RegistryRequest
    site.api = api
    # twisted.web's own access log is slow; ours is cheap and optional.
    site.log = access_log or (lambda request: None)
    site.displayTracebacks = False
    site.noisy = False
    return site
