"""Building the URLs the API hands out (Location, Link), as registry:2's v2/urls.go does:
``http.host`` wins; else ``Forwarded``/``X-Forwarded-Proto``/``X-Forwarded-Host``; else the
request's own scheme and Host; ``relativeurls`` gives paths only. The prefix is kept."""

from urllib.parse import parse_qs, quote, urlencode, urlsplit


def _forwarded(value):
    out = {}
    for part in value.split(",")[0].split(";"):
        key, _, val = part.strip().partition("=")
        out[key.lower()] = val.strip('"')
    return out


class URLBuilder:
    def __init__(self, prefix="/", host="", relative=False):
        self.prefix = prefix
        self._host = host.rstrip("/")
        self._relative = relative

    def base(self, request):
        if self._relative:
            return ""
        if self._host:
            return self._host
        header = request.getHeader(b"forwarded")
        fwd = _forwarded(header.decode("latin-1")) if header else {}
        proto = fwd.get("proto") or _first(request.getHeader(b"x-forwarded-proto"))
        host = fwd.get("host") or _first(request.getHeader(b"x-forwarded-host"))
        if not proto:
            proto = "https" if request.isSecure() else "http"
        if not host:
            host = (request.getHeader(b"host") or b"").decode("latin-1")
            if not host:
                addr = request.getHost()
                host = f"{addr.host}:{addr.port}"
        return f"{proto}://{host}"

    def path(self, *parts):
        return self.prefix + "v2/" + "/".join(parts)

    def blob(self, request, name, digest):
        return self.base(request) + self.path(name, "blobs", digest)

    def manifest(self, request, name, reference):
        return self.base(request) + self.path(name, "manifests", reference)

    def upload(self, request, name, uuid, state_token):
        return self.base(request) + self.path(name, "blobs", "uploads", uuid) + "?" + urlencode(
            {"_state": state_token})

    def link_next(self, path, last, n, extra=None):
        """Relative ``Link`` header value, query ordered ``last`` then ``n`` (registry:2)."""
        tail = "".join(f"&{k}={quote(v, safe='')}" for k, v in (extra or {}).items())
        return f'<{path}?last={quote(last, safe="")}&n={n}{tail}>; rel="next"'


def _first(value):
    if not value:
        return ""
    return value.decode("latin-1").split(",")[0].strip()


def query_args(uri):
    """Query parameters of a raw request URI (bytes) as {str: [str]}."""
    return parse_qs(urlsplit(uri.decode("latin-1")).query, keep_blank_values=True)


def query_arg(query, key):
    values = query.get(key)
    return values[0] if values else None
