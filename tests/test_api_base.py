"""Base endpoint, global headers, repository-name and tag grammar, hostile paths.

Every response goes through ``check_wire`` (API version header, exact Content-Length,
no body on HEAD/204/304).
"""

import os
import uuid

import pytest

from support.api import (
    KINDS,
    DOCKER_MANIFEST,
    assert_4xx,
    assert_error,
    daemon_fixture,
    digest_of,
    exchange,
    fake_digest,
    kinds,
    tree,
    unique,
)

HEADERS = {"X-Content-Type-Options": ["nosniff"], "X-Api-Test": ["one"]}

_reg, reg = daemon_fixture("reg", {"http": {"headers": HEADERS}})


def test_base_get(reg):
    r = reg.get("/v2/")
    assert r.status == 200, r
    assert r.json() == {}
    assert r.declared_length == 2
    assert r.header("Content-Type").split(";")[0] == "application/json"


def test_base_head(reg):
    r = reg.head("/v2/")
    assert r.status == 200, r
    assert r.body == b""


def test_v2_without_slash_redirects(reg):
    r = reg.get("/v2")
    assert r.status in (301, 308), r
    assert reg.follow(r.header("Location")) == reg.prefix + "/v2/"


def test_configured_headers_on_success_and_error(reg):
    repo = unique()
    for r in (reg.get("/v2/"),
              reg.get(f"/v2/{repo}/blobs/{fake_digest(1)}"),
              reg.post(f"/v2/{repo}/blobs/uploads/")):
        assert r.header("X-Content-Type-Options") == "nosniff", r
        assert r.header("X-Api-Test") == "one", r


def test_unknown_route_is_404(reg):
    r = reg.get(f"/v2/{unique()}/nothing-here")
    assert r.status == 404, r


def test_uppercase_domain_like_first_component_is_a_valid_name(reg):
    # distribution/reference: a first component that looks like a host may carry uppercase.
    r = reg.get("/v2/Reg.Example.com/some/repo/tags/list")
    assert_error(r, 404, "NAME_UNKNOWN")


def test_name_of_255_chars_is_valid(reg):
    name = "/".join(["a" * 50] * 4) + "/" + "b" * 51
    assert len(name) == 255
    r = reg.get(f"/v2/{name}/tags/list")
    assert_error(r, 404, "NAME_UNKNOWN")
    r = reg.post(f"/v2/{name}/blobs/uploads/")
    assert r.status == 202, r


# --------------------------------------------------------------------------------------
# invalid names: distregistry answers 400 NAME_INVALID; Go 2.8.2 gives 404 text/plain (no
# route), 301 (path cleaning), 400 plain text (Go's own request-line check) or 500 (too
# long) — so for Go only the 4xx cases it really gives are asserted.

MARK = f"escape{uuid.uuid4().hex[:8]}"
LONG = "a" * 300

# (id, name as sent in the path, statuses Go gives that we assert for Go or None)
BAD_NAMES = [
    ("uppercase-component", "foo/Bar", "4xx"),
    ("uppercase-single", "fooBar", "4xx"),
    ("double-slash", "a//b", None),                       # Go: 301 to the cleaned path
    ("300-chars", LONG, None),                            # Go: 500 UNKNOWN
    ("256-chars", "/".join(["a" * 50] * 4) + "/" + "b" * 52, None),
    ("dotdot-component", f"a/../{MARK}", None),            # Go: 301 to the cleaned path
    ("dotdot-escape", "/".join([".."] * 12) + f"/tmp/{MARK}", None),
    ("dot-component", f"a/./{MARK}", None),
    ("trailing-separator", "a-", "4xx"),
    ("leading-separator", "_a", "4xx"),
    ("pct-slash", "a%2Fb", None),                         # Go decodes to a/b: a valid name
    ("pct-dotdot", f"..%2F..%2F..%2F..%2F..%2F{MARK}", None),
    ("pct-encoded-dot", f"%2E%2E/%2E%2E/{MARK}", None),
    ("pct-nul", "a%00b", "4xx"),
    ("backslash", f"a\\..\\{MARK}", "4xx"),
]

ENDPOINTS = [
    ("GET", "/tags/list", "tags"),
    ("GET", "/manifests/latest", "manifest"),
    ("HEAD", "/manifests/latest", "manifest-head"),
    ("GET", f"/blobs/{digest_of(b'x')}", "blob"),
    ("POST", "/blobs/uploads/", "upload"),
    ("PUT", "/manifests/latest", "manifest-put"),
    ("DELETE", f"/manifests/{digest_of(b'x')}", "manifest-delete"),
    ("PATCH", f"/blobs/uploads/{uuid.uuid4()}?_state=x", "upload-patch"),
]


def _hostile(reg, method, path):
    body = b'{"schemaVersion":2}' if method == "PUT" else b""
    headers = {"Content-Type": DOCKER_MANIFEST} if method == "PUT" else None
    # curl-like --path-as-is: the raw client sends the path byte for byte.
    return reg.request(method, path, headers=headers, body=body, check=not reg.is_go)


@pytest.mark.parametrize("method,suffix", [pytest.param(m, s, id=i) for m, s, i in ENDPOINTS])
@pytest.mark.parametrize("name,go_expect", [pytest.param(n, g, id=i) for i, n, g in BAD_NAMES])
def test_invalid_names(reg, name, go_expect, method, suffix):
    root = reg.daemon.root
    outside = os.path.dirname(os.path.dirname(root))
    before = tree(outside)
    r = _hostile(reg, method, f"/v2/{name}{suffix}")
    if reg.is_go:
        if go_expect == "4xx":
            assert_4xx(r)
    else:
        assert r.status == 400, r
        if method != "HEAD":
            assert_error(r, 400, "NAME_INVALID")
    assert r.status < 500 or reg.is_go, r
    after = tree(outside)
    rel_root = os.path.relpath(root, outside)
    new_outside = {p for p in after - before if not (p == rel_root or p.startswith(rel_root + os.sep))}
    assert not new_outside, f"files created outside the storage root: {sorted(new_outside)}"
    for p in after:
        assert MARK not in p, f"hostile name reached the filesystem: {p}"
    for candidate in (f"/{MARK}", f"/tmp/{MARK}", os.path.join(outside, MARK)):
        assert not os.path.exists(candidate), candidate


@pytest.mark.parametrize("raw_name,applies", [
    pytest.param(b"a\x00b", KINDS, id="nul"),
    pytest.param(b"a\x00/../../" + MARK.encode(), KINDS, id="nul-dotdot"),
    pytest.param(b"a\x01b", KINDS, id="ctl"),
    pytest.param(b"a\xffb", ("distregistry",), id="non-utf8"),     # Go: routed, 404
])
def test_invalid_raw_bytes_in_name(reg, raw_name, applies):
    """Raw control / non-UTF-8 bytes in the request target.

    Deliberate choice: either the app's 400 NAME_INVALID, or a 400 from the HTTP layer
    (which rejects the request line before the app sees it, so without the registry
    headers) is acceptable.  Never a 5xx, a 2xx, or anything on disk.
    """
    reg.only(*applies)
    for method, suffix in (("GET", b"/tags/list"), ("POST", b"/blobs/uploads/")):
        r = reg.request(method, b"/v2/" + raw_name + suffix, check=False)
        assert r.status == 400, r
        if r.header("Docker-Distribution-API-Version"):
            assert_error(r, 400, "NAME_INVALID")
    for p in tree(reg.daemon.root):
        assert MARK not in p and "\x00" not in p


@kinds("distregistry")
def test_malformed_request_lines_never_5xx(reg):
    for raw in (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
                b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n",
                b"GET /v2/%zz/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"GET /v2/" + b"a" * 20000 + b"/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        try:
            r = exchange(reg.host, reg.port, raw)
        except ConnectionError:
            continue   # dropping a malformed request is fine
        assert 400 <= r.status < 500, r
    assert reg.get("/v2/").status == 200


# --------------------------------------------------------------------------------------
# tags


@pytest.mark.parametrize("tag,applies", [
    pytest.param("-x", KINDS, id="leading-dash"),
    pytest.param(".x", KINDS, id="leading-dot"),
    pytest.param("a" * 129, KINDS, id="129-chars"),
    pytest.param("a:b", ("distregistry",), id="colon"),      # Go: parsed as a digest, 500
    pytest.param("a%2Fb", KINDS, id="pct-slash"),
    pytest.param("a/b", KINDS, id="slash"),
    pytest.param("..", ("distregistry",), id="dotdot"),      # Go: 301 to the cleaned path
])
def test_invalid_tag(reg, tag, applies):
    reg.only(*applies)
    repo = unique()
    r = reg.get(f"/v2/{repo}/manifests/{tag}", check=not reg.is_go)
    assert_4xx(r)
    body = b'{"schemaVersion":2,"mediaType":"%s","config":{},"layers":[]}' % DOCKER_MANIFEST.encode()
    r = reg.put(f"/v2/{repo}/manifests/{tag}", body=body, headers={"Content-Type": DOCKER_MANIFEST},
                check=not reg.is_go)
    assert_4xx(r)


def test_tag_of_128_chars_is_valid(reg):
    r = reg.get(f"/v2/{unique()}/manifests/{'a' * 128}")
    assert_error(r, 404, "MANIFEST_UNKNOWN")
