"""Helpers for the HTTP API conformance tests (tests/test_api_*.py).

The client here is a deliberately small raw-socket HTTP/1.1 client: every request is
sent byte for byte as given (no path normalisation, no percent-decoding, no header
canonicalisation) with ``Connection: close``, and the response is parsed strictly, so
that a test can check what the daemon really put on the wire:

* ``Content-Length`` present and equal to the number of body bytes received;
* HEAD, 204 and 304 responses carry no body bytes at all;
* ``Docker-Distribution-API-Version: registry/2.0`` on every response.

:meth:`Registry.request` runs those wire checks on every response (``check=False``
turns them off for the few cases that look at a broken answer on purpose).

Also here: digests, blob upload in one call, manifest builders that emit
deliberately non-canonical JSON (odd whitespace, so a registry that re-serialises
gets a different digest), Link-header parsing, daemon fixtures (one daemon per kind
and module), and the ``@kinds`` decorator that says which daemon kinds
("distregistry", "go") a test's expectation applies to.

Knobs: ``API_TEST_KINDS=distregistry`` (or ``go``) runs one kind only;
``API_TEST_ALL_CASES=1`` runs distregistry-only expectations on Go too (they should
fail there — a check that they can fail at all).
"""

import hashlib
import inspect
import json
import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from .daemon import Daemon
from .goregistry import go_available

KINDS = ("distregistry", "go")

# --------------------------------------------------------------------------------------
# media types

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique(prefix="r"):
    """A fresh, valid repository-name component (tests share one daemon per module)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def fake_digest(seed):
    """A well-formed digest of content nobody uploaded."""
    return digest_of(f"absent-{seed}-{uuid.uuid4()}".encode())


# --------------------------------------------------------------------------------------
# which kinds a test applies to; daemon fixtures


def kinds(*applies_to):
    """Decorate a test as applying to the given daemon kinds only.

    ``@kinds("distregistry")`` is for a distregistry contract where Go 2.8.2 behaves
    differently (the reason goes in a comment next to the decorator).  For a single
    parametrised case, call ``reg.only("distregistry")`` in the test body instead.
    (A plain attribute rather than a custom pytest mark, so nothing needs registering.)
    """
    unknown = set(applies_to) - set(KINDS)
    assert not unknown and applies_to, applies_to

    def mark(test):
        test.api_kinds = applies_to
        return test
    return mark


def _ignore_kinds():
    """``API_TEST_ALL_CASES=1``: run every expectation on every kind (to see that a
    distregistry-only test really fails on Go, i.e. that it can fail at all)."""
    return os.environ.get("API_TEST_ALL_CASES") == "1"


def skip_unless_applies(request, kind):
    applies = getattr(request.function, "api_kinds", None)
    if applies is not None and kind not in applies and not _ignore_kinds():
        pytest.skip(f"expectation does not apply to {kind} (applies to {', '.join(applies)})")


def selected_kinds(wanted=KINDS):
    """The kinds to run: *wanted*, narrowed by ``API_TEST_KINDS=distregistry,go`` if set.

    Go is skipped (not failed) where ``docker-registry`` is not installed.
    """
    env = os.environ.get("API_TEST_KINDS")
    chosen = [k for k in wanted if not env or k in env.split(",")]
    return [pytest.param(k, marks=pytest.mark.skipif(k == "go" and not go_available(),
                                                     reason="docker-registry not installed"))
            for k in chosen]


class _PrefixedDaemon(Daemon):
    """A Daemon whose own request() paths (its readiness probe) go below ``http.prefix``."""

    prefix = ""

    def request(self, method, path, *args, **kwargs):
        if path.startswith("/v2"):
            path = self.prefix + path
        return super().request(method, path, *args, **kwargs)


def _prefix_of(config):
    return ((config or {}).get("http") or {}).get("prefix", "").rstrip("/")


def start_daemon(kind, base, config=None, root=None, name=None):
    """Start a *kind* daemon under *base*; returns a started Daemon (caller stops it)."""
    d = _PrefixedDaemon(kind=kind, root=root or base / "storage" / "data", workdir=base / "run",
                        extra_config=config, name=name or kind)
    d.prefix = _prefix_of(config)
    d.start()
    return d


def registry_for(daemon):
    """A :class:`Registry` client for *daemon*, rooted at its ``http.prefix``."""
    return Registry(daemon.url + _prefix_of(daemon.extra_config), daemon.kind, daemon)


def applies_fixture(name, module_fixture):
    """A function-scoped fixture *name* returning *module_fixture*'s value, skipping the
    test where its ``@kinds`` excludes that value's ``.kind``."""

    def _function(request, **module_value):
        value = module_value[module_fixture]
        skip_unless_applies(request, value.kind)
        return value

    # pytest reads a fixture's dependencies from its signature: depend on the module one.
    _function.__signature__ = inspect.Signature([
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter(module_fixture, inspect.Parameter.KEYWORD_ONLY)])
    return pytest.fixture(name=name)(_function)


def daemon_fixture(name, config=None, wanted=KINDS):
    """A module-scoped daemon per kind, exposed as the function-scoped fixture *name*.

    The function-scoped fixture returns a :class:`Registry` (rooted at ``http.prefix`` if
    the config has one) and skips the test where its ``@kinds`` excludes the daemon's
    kind.  In a test module::

        _reg, reg = daemon_fixture("reg", {"storage": {"delete": {"enabled": False}}})
    """
    mod_name = f"_{name}_daemon"

    @pytest.fixture(scope="module", params=selected_kinds(wanted), name=mod_name)
    def _module(request, tmp_path_factory):
        kind = request.param
        d = start_daemon(kind, tmp_path_factory.mktemp(f"{name}-{kind}"), config, name=f"{name}-{kind}")
        try:
            yield registry_for(d)
        finally:
            d.stop()

    return _module, applies_fixture(name, mod_name)


# --------------------------------------------------------------------------------------
# raw HTTP


class Response:
    def __init__(self, method, status, reason, headers, body, declared_length):
        self.method = method
        self.status = status
        self.reason = reason
        self.headers = headers            # [(name, value)] in wire order
        self.body = body                  # every byte received after the header block
        self.declared_length = declared_length   # the Content-Length header as an int, or None

    def header(self, name):
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body)

    @property
    def errors(self):
        return self.json()["errors"]

    @property
    def codes(self):
        return [e["code"] for e in self.errors]

    def __repr__(self):
        return (f"<{self.method} -> {self.status} {self.reason} {self.headers!r} "
                f"body={self.body[:300]!r}>")


def _read_until_close(sock, limit=64 * 1024 * 1024):
    """Everything until EOF (or until the socket's timeout: a server keeping the
    connection open despite ``Connection: close``)."""
    chunks = []
    total = 0
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        total += len(data)
        if total > limit:
            raise AssertionError("response larger than the test client accepts")


def _dechunk(data):
    out = bytearray()
    rest = data
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        assert sep, f"truncated chunked body: {data[:200]!r}"
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        assert rest[size:size + 2] == b"\r\n", "bad chunk terminator"
        rest = rest[size + 2:]


def exchange(host, port, raw_request, method="GET", timeout=15.0):
    """Send *raw_request* (bytes) on a fresh connection and parse the one response."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(raw_request)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server answered early (e.g. a body over its limit): read that answer
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"connection closed before a full response head: {head!r}")
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        proto, _, tail = status_line.partition(" ")
        assert proto in ("HTTP/1.1", "HTTP/1.0"), status_line
        code, _, reason = tail.partition(" ")
        status = int(code)
        headers = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            assert sep and name and name == name.strip(), f"malformed header line {line!r}"
            headers.append((name, value.strip()))
        lengths = [v for k, v in headers if k.lower() == "content-length"]
        declared = int(lengths[0]) if lengths else None
        chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)
        # Read what follows: up to EOF, but do not wait long for a server that keeps the
        # connection open after a complete response.
        if method == "HEAD" or status in (204, 304) or (declared is not None and not chunked):
            want = 0 if (method == "HEAD" or status in (204, 304)) else declared
            while len(rest) < want:
                data = sock.recv(65536)
                if not data:
                    break
                rest += data
            sock.settimeout(0.5)     # then catch any bytes beyond the declared length
            body = rest + _read_until_close(sock)
        else:
            rest += _read_until_close(sock)
            body = _dechunk(rest) if chunked else rest
        return Response(method, status, reason, headers, body, declared)


class Registry:
    """A client for one running daemon, rooted at its URL (which may carry a prefix)."""

    def __init__(self, url, kind, daemon=None):
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")   # "" or "/reg"
        self.kind = kind
        self.daemon = daemon

    @property
    def is_go(self):
        return self.kind == "go"

    def only(self, *applies_to):
        """Skip the running (parametrised) case unless it applies to this kind."""
        if self.kind not in applies_to and not _ignore_kinds():
            pytest.skip(f"expectation does not apply to {self.kind} (applies to {', '.join(applies_to)})")

    # -- raw requests ------------------------------------------------------------------

    def request(self, method, path, headers=None, body=b"", check=True, prefix=True):
        """*path* is sent as is after the prefix (bytes or str, query included)."""
        if isinstance(path, str):
            path = path.encode("utf-8")
        if prefix and not path.startswith(b"http"):
            path = self.prefix.encode() + path
        if isinstance(body, str):
            body = body.encode()
        hdrs = {"Host": f"{self.host}:{self.port}", "Connection": "close"}
        hdrs.update(headers or {})
        lines = [method.encode() + b" " + path + b" HTTP/1.1"]
        for name, value in hdrs.items():
            if value is None:
                continue
            lines.append(f"{name}: {value}".encode("latin-1"))
        if body or method in ("POST", "PUT", "PATCH"):
            if not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
                lines.append(f"Content-Length: {len(body)}".encode())
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        resp = exchange(self.host, self.port, raw, method=method)
        if check:
            check_wire(resp)
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def post(self, path, body=b"", **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=b"", **kw):
        return self.request("PUT", path, body=body, **kw)

    def patch(self, path, body=b"", **kw):
        return self.request("PATCH", path, body=body, **kw)

    def follow(self, location):
        """The request target for a Location header value (absolute or relative).

        The returned target already carries the prefix; pass it with ``prefix=False``.
        """
        parts = urlsplit(location)
        if parts.scheme:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            target = location
        assert target.startswith("/"), location
        return target

    def at(self, location, method="GET", **kw):
        return self.request(method, self.follow(location), prefix=False, **kw)

    # -- uploads -----------------------------------------------------------------------

    def start_upload(self, repo):
        r = self.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202, r
        return r

    def push_blob(self, repo, data):
        """POST + PUT ?digest= (the two-step monolithic upload every registry supports)."""
        r = self.start_upload(repo)
        dgst = digest_of(data)
        r = self.at(r.header("Location") + _sep(r.header("Location")) + f"digest={dgst}",
                    "PUT", body=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, r
        assert r.header("Docker-Content-Digest") == dgst, r
        return dgst

    # -- manifests ---------------------------------------------------------------------

    def put_manifest(self, repo, ref, body, media_type, query=""):
        return self.put(f"/v2/{repo}/manifests/{ref}{query}", body=body,
                        headers={"Content-Type": media_type})

    def push_manifest(self, repo, ref, body, media_type):
        """PUT a manifest that must be accepted; returns its digest."""
        r = self.put_manifest(repo, ref, body, media_type)
        assert r.status == 201, r
        assert r.header("Docker-Content-Digest") == digest_of(body), r
        return digest_of(body)

    def oci_image(self, repo, layers=()):
        """Upload a fresh config and *layers* (bytes) to *repo*; return manifest bytes (not pushed)."""
        cfg = self.descriptor_for(repo, OCI_CONFIG, b'{"architecture":"amd64","os":"linux","salt":"%s"}'
                                  % uuid.uuid4().hex.encode())
        return oci_manifest(cfg, [self.descriptor_for(repo, OCI_LAYER, d) for d in layers])

    def push_oci_image(self, repo, *tags, layers=()):
        """:meth:`oci_image` pushed under each of *tags* (by digest if none); returns its bytes."""
        body = self.oci_image(repo, layers)
        for ref in tags or (digest_of(body),):
            self.push_manifest(repo, ref, body, OCI_MANIFEST)
        return body

    def descriptor_for(self, repo, media_type, data):
        return descriptor(media_type, data, digest=self.push_blob(repo, data))


def _sep(url):
    return "&" if "?" in url else "?"


def check_wire(resp):
    """The wire rules of every response (see the module docstring)."""
    assert resp.header(API_VERSION[0]) == API_VERSION[1], f"no API version header: {resp!r}"
    if resp.method == "HEAD" or resp.status in (204, 304):
        assert resp.body == b"", f"body on a bodiless response: {resp!r}"
        if resp.status != 304 and resp.method != "HEAD":
            # 204: a Content-Length, if any, must say 0.
            assert resp.declared_length in (None, 0), resp
        return
    assert resp.declared_length is not None, f"no Content-Length: {resp!r}"
    assert resp.declared_length == len(resp.body), (
        f"Content-Length {resp.declared_length} but {len(resp.body)} body bytes: {resp!r}")


def assert_error(resp, status, *codes, content_type=True):
    """Status + the JSON error body; *codes* are the expected codes in order."""
    assert resp.status == status, resp
    if content_type:
        ct = resp.header("Content-Type") or ""
        assert ct.split(";")[0].strip() == "application/json", resp
    body = resp.json()
    assert isinstance(body.get("errors"), list) and body["errors"], resp
    for err in body["errors"]:
        assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str), err
    if codes:
        assert resp.codes == list(codes), resp
    return body["errors"]


def assert_4xx(resp):
    assert 400 <= resp.status < 500, resp


# --------------------------------------------------------------------------------------
# manifests


def odd_json(obj):
    """JSON with unusual-but-valid whitespace and key order as given: a registry that
    re-serialises before hashing or storing will not reproduce these bytes."""
    text = json.dumps(obj, indent="\t", separators=(" ,", " :  "))
    return ("\n  " + text + "\r\n\n").encode()


def descriptor(media_type, data=None, digest=None, size=None, **extra):
    d = {"mediaType": media_type,
         "digest": digest or digest_of(data),
         "size": size if size is not None else len(data)}
    d.update(extra)
    return d


def docker_manifest(config, layers):
    return odd_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": list(layers)})


def oci_manifest(config, layers, subject=None, artifact_type=None, annotations=None, media_type=True):
    m = {"schemaVersion": 2}
    if media_type:
        m["mediaType"] = OCI_MANIFEST
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config
    m["layers"] = list(layers)
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return odd_json(m)


def platform_entry(media_type, body, arch="amd64", os_="linux"):
    return descriptor(media_type, body, platform={"architecture": arch, "os": os_})


def docker_list(entries):
    return odd_json({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": list(entries)})


def oci_index(entries, subject=None, artifact_type=None, annotations=None):
    m = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["manifests"] = list(entries)
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return odd_json(m)


def empty_config():
    return descriptor(OCI_EMPTY, EMPTY_JSON)


# --------------------------------------------------------------------------------------
# Link headers


def parse_link(value):
    """``</v2/x/tags/list?last=b&n=2>; rel="next"`` -> ("/v2/x/tags/list?last=b&n=2", "next")."""
    assert value is not None, "no Link header"
    target, _, params = value.partition(";")
    target = target.strip()
    assert target.startswith("<") and target.endswith(">"), value
    rel = None
    for p in params.split(";"):
        k, _, v = p.strip().partition("=")
        if k.strip().lower() == "rel":
            rel = v.strip().strip('"')
    return target[1:-1], rel


# --------------------------------------------------------------------------------------
# filesystem snapshots (nothing may be written outside the storage root)


def tree(path):
    """Every path below *path* (relative), for before/after comparisons."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(path):
        rel = os.path.relpath(dirpath, path)
        for n in dirnames + filenames:
            out.add(os.path.normpath(os.path.join(rel, n)))
    return out
