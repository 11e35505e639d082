"""registry:2's event records (notifications/event.go, bridge.go) built from one request.

Events are plain dicts whose key order is the Go structs' field order, so the JSON a
receiver sees reads like registry:2's byte for byte (empty ``omitempty`` fields left out,
the v1.Descriptor's ``mediaType``/``digest``/``size`` always there)."""

import ipaddress
import json
import socket
import time
import uuid
from datetime import datetime, timezone

from twisted.internet import defer

PUSH, PULL, MOUNT, DELETE = "push", "pull", "mount", "delete"


def go_timestamp(ns=None):
    """Go's time.Now() as encoding/json writes it: RFC 3339 in local time with nanoseconds,
    trailing zeros dropped, ``Z`` for UTC."""
    ns = time.time_ns() if ns is None else ns
    seconds, nanos = divmod(ns, 1_000_000_000)
    local = datetime.fromtimestamp(seconds, timezone.utc).astimezone()
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = local.utcoffset().total_seconds()
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    minutes = int(abs(offset)) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def encode_envelope(event):
    """The POST body: ``{"events": [event]}`` as Go's json.MarshalIndent(envelope, "", "   ")
    writes it, including its HTML-safe escapes of <, > and &."""
    text = json.dumps({"events": [event]}, indent=3, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text.encode("utf-8")


def _valid_ip(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def remote_addr(request):
    """registry:2's requestutil.RemoteAddr: the first X-Forwarded-For entry if it is an IP,
    else X-Real-Ip if it is one, else the socket's peer as ``ip:port``."""
    forwarded = request.getHeader(b"x-forwarded-for")
    if forwarded:
        first = forwarded.decode("latin-1").split(",")[0].strip()
        if _valid_ip(first):
            return first
    real = request.getHeader(b"x-real-ip")
    if real and _valid_ip(real.decode("latin-1").strip()):
        return real.decode("latin-1").strip()
    peer = request.getClientAddress()
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:
        return ""   # a unix socket: Go's RemoteAddr is empty there too ("@" at most)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request_record(request):
    def header(name):
        return (request.getHeader(name) or b"").decode("latin-1")
    record = {"id": str(uuid.uuid4()), "addr": remote_addr(request), "host": header(b"host"),
              "method": request.method.decode("latin-1"), "useragent": header(b"user-agent")}
    return {k: v for k, v in record.items() if v or k in ("id", "method", "useragent")}


def actor_record(request):
    # Set by the auth layer for an authenticated request; anonymous is {} as in registry:2.
    name = getattr(request, "registry_user", None)
    return {"name": name} if name else {}


def source_record(http_addr, instance_id):
    """registry:2's app.go: the host name with the port of http.addr (the host name alone if
    it has none, e.g. a unix socket)."""
    _, colon, port = http_addr.rpartition(":")
    hostname = socket.gethostname()
    addr = f"{hostname}:{port}" if colon and port.isdigit() else hostname
    return {"addr": addr, "instanceID": instance_id}


def _target(descriptor=None, **fields):
    """mediaType/digest/size always (Go's v1.Descriptor has no omitempty there), then the
    descriptor's optional fields, then the event's own, empty ones left out."""
    target = {"mediaType": "", "digest": "", "size": 0}
    if descriptor is not None:
        target.update(descriptor)
    order = ("length", "repository", "fromRepository", "url", "tag", "references")
    target.update((k, fields[k]) for k in order if fields.get(k))
    return target


class Bridge:
    """Builds the events of one request (registry:2's bridge) and hands them to *sink*
    (``endpoints``; ``write(event) -> Deferred`` firing once the event is durable)."""

    def __init__(self, sink, request, urls, source, include_references):
        self._sink = sink
        self._http_request = request
        self._urls = urls
        self._source = source
        self._include_references = include_references
        self._record = None

    def _event(self, action, target):
        """*target*: a function building the event's target, called only if some endpoint
        will get the event (building it costs a tenth of a manifest GET's CPU)."""
        if not self._sink.endpoints:
            return defer.succeed(None)
        target = target()
        if self._record is None:    # one request id for every event of the request
            self._record = request_record(self._http_request)
        event = {"id": str(uuid.uuid4()), "timestamp": go_timestamp(), "action": action, "target": target,
                 "request": self._record, "actor": actor_record(self._http_request), "source": self._source}
        return self._sink.write(event)

    def _manifest(self, action, repository, m, tag):
        def target():
            size = len(m.payload)
            references = [d.to_json() for d in m.references()] if self._include_references else None
            return _target({"mediaType": m.media_type, "digest": m.digest, "size": size}, length=size,
                           repository=repository, url=self._urls.manifest(self._http_request, repository, m.digest),
                           tag=tag, references=references)
        return self._event(action, target)

    def _blob(self, action, repository, descriptor, **extra):
        return self._event(action, lambda: _target(
            descriptor.to_json(), length=descriptor.size, repository=repository,
            url=self._urls.blob(self._http_request, repository, descriptor.digest), **extra))

    def manifest_pushed(self, repository, m, tag=None):
        return self._manifest(PUSH, repository, m, tag)

    def manifest_pulled(self, repository, m, tag=None):
        return self._manifest(PULL, repository, m, tag)

    def manifest_deleted(self, repository, digest):
        return self._event(DELETE, lambda: _target({"digest": digest}, repository=repository))

    def blob_pushed(self, repository, descriptor):
        return self._blob(PUSH, repository, descriptor)

    def blob_pulled(self, repository, descriptor):
        return self._blob(PULL, repository, descriptor)

    def blob_mounted(self, repository, descriptor, source):
        return self._blob(MOUNT, repository, descriptor, fromRepository=source)

    def blob_deleted(self, repository, digest):
        return self._event(DELETE, lambda: _target({"digest": digest}, repository=repository))

    def tag_deleted(self, repository, tag):
        return self._event(DELETE, lambda: _target(repository=repository, tag=tag))
