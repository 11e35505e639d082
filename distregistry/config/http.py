"""The ``http`` section: where to listen and how to build URLs and responses."""

import re
from urllib.parse import urlsplit

import attr

from .node import show
from .tls import TLSConfig

DEFAULT_ADDR = ":5000"
NETS = ("tcp", "unix")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PORT = re.compile(r"\d{1,5}")


def canonical_header(name):
    """Go's textproto.CanonicalMIMEHeaderKey for a valid token: ``x-test`` -> ``X-Test``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _tcp_addr(node):
    """Check a Go listen address ``host:port`` (host may be empty, a name, IPv4 or [IPv6])."""
    addr = node.as_str(DEFAULT_ADDR) or DEFAULT_ADDR
    host, colon, port = addr.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if (
        not colon
        or not _PORT.fullmatch(port)
        or int(port) > 65535
        or (":" in host and not bracketed)
        or (not bracketed and ("[" in host or "]" in host))
    ):
        raise node.error(f'expected host:port such as ":5000", got {show(node.value)}')
    return addr


def _host(node):
    host = node.as_str("")
    if host:
        url = urlsplit(host)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise node.error(f'expected an absolute URL such as "https://registry.example.com", got {host!r}')
    return host


def _prefix(node):
    """The path before /v2, normalised to "/" or "/path/" (registry:2 wants both slashes)."""
    path = node.as_str("").strip("/")
    return f"/{path}/" if path else "/"


def _headers(node):
    headers = {}
    for name in node.as_mapping():
        item = node[name]
        if not _TOKEN.fullmatch(name):
            raise item.error("not a valid header name")
        # registry:2 wants a list; a single value is accepted as a one-element list.
        entries = item.as_list() if isinstance(item.value, list) else [item]
        texts = []
        for entry in entries:
            if entry.value is None:
                raise entry.error("expected a header value, got null")
            text = entry.as_str("")
            if any(c in text for c in "\r\n\0"):
                raise entry.error("header values must not contain CR, LF or NUL")
            texts.append(text)
        headers.setdefault(canonical_header(name), []).extend(texts)
    return headers


def _workers(node, net):
    """``http.workers`` (not in registry:2): N processes accept on one TCP port, so a
    registry uses N cores (shared/reference/twisted.md 4.4)."""
    workers = node.as_int(1, minimum=1)
    if workers > 1 and net != "tcp":
        raise node.error("more than one worker needs net: tcp")
    return workers


@attr.s(frozen=True, slots=True)
class HTTPConfig:
    addr = attr.ib()  # "host:port" for tcp, a socket path for unix
    net = attr.ib()  # one of NETS
    host = attr.ib()  # "" or the absolute external URL (scheme://host[:port]) for Location headers
    prefix = attr.ib()  # "/" or "/path/": the path before /v2/
    secret = attr.ib()  # HMAC key of upload state; "" if unset
    relativeurls = attr.ib()  # bool: relative Location headers
    draintimeout = attr.ib()  # seconds to drain connections on shutdown; 0: no drain
    headers = attr.ib()  # dict canonical name -> list of values, added to API responses
    http2_disabled = attr.ib()  # bool
    tls = attr.ib()  # TLSConfig, or None for plain HTTP
    workers = attr.ib(default=1)  # distregistry extension: processes sharing the port (SO_REUSEPORT)

    @classmethod
    def parse(cls, root):
        node = root["http"]
        net = node["net"].as_choice(NETS, "tcp")
        addr = node["addr"]
        if net == "unix":
            if not addr.as_str(""):
                raise addr.error("a socket path is required with net: unix")
            address = addr.as_str("")
        else:
            address = _tcp_addr(addr)
        return cls(
            addr=address,
            net=net,
            host=_host(node["host"]),
            prefix=_prefix(node["prefix"]),
            secret=node["secret"].as_str(""),
            relativeurls=node["relativeurls"].as_bool(False),
            draintimeout=node["draintimeout"].as_duration(0.0),
            headers=_headers(node["headers"]),
            http2_disabled=node["http2"]["disabled"].as_bool(False),
            tls=TLSConfig.parse(node["tls"]),
            workers=_workers(node["workers"], net),
        )
