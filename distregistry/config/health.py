"""The ``health`` section: registry:2's health checks (app.go RegisterHealthChecks).

Every check is polled every ``interval`` (default 10s) and turns unhealthy after
``threshold`` consecutive failures (0: the first one)."""

import attr

from .http import _headers

DEFAULT_INTERVAL = 10.0


def _interval(node):
    return node.as_duration(0.0) or DEFAULT_INTERVAL


def _required(node, what):
    value = node.as_str("")
    if not value:
        raise node.error(f"required: {what}")
    return value


@attr.s(frozen=True, slots=True)
class StorageDriverCheck:
    interval = attr.ib()  # seconds
    threshold = attr.ib()  # consecutive failures before unhealthy; 0 reads as 1


@attr.s(frozen=True, slots=True)
class FileCheck:
    file = attr.ib()  # unhealthy while this path exists
    interval = attr.ib()
    threshold = attr.ib()


@attr.s(frozen=True, slots=True)
class HTTPCheck:
    uri = attr.ib()  # HEAD this URL
    headers = attr.ib()  # dict name -> list of values
    statuscode = attr.ib()  # the status that means healthy (default 200)
    timeout = attr.ib()  # seconds; registry:2's 0 (no timeout) reads as the interval here
    interval = attr.ib()
    threshold = attr.ib()


@attr.s(frozen=True, slots=True)
class TCPCheck:
    addr = attr.ib()  # host:port to connect to
    timeout = attr.ib()  # seconds; 0 reads as the interval
    interval = attr.ib()
    threshold = attr.ib()


@attr.s(frozen=True, slots=True)
class HealthConfig:
    storagedriver = attr.ib()  # StorageDriverCheck or None
    file = attr.ib()  # tuple of FileCheck
    http = attr.ib()  # tuple of HTTPCheck
    tcp = attr.ib()  # tuple of TCPCheck

    @property
    def checks(self):
        return ((self.storagedriver,) if self.storagedriver else ()) + self.file + self.http + self.tcp

    @classmethod
    def parse(cls, root):
        node = root["health"]
        sd = node["storagedriver"]
        storagedriver = None
        if sd["enabled"].as_bool(False):
            storagedriver = StorageDriverCheck(_interval(sd["interval"]), sd["threshold"].as_int(0, minimum=0))
        files = tuple(
            FileCheck(_required(f["file"], "the path to check"), _interval(f["interval"]),
                      f["threshold"].as_int(0, minimum=0))
            for f in node["file"].as_list()
        )
        https = []
        for h in node["http"].as_list():
            interval = _interval(h["interval"])
            https.append(HTTPCheck(
                uri=_required(h["uri"], "the URL to check"),
                headers=_headers(h["headers"]),
                statuscode=h["statuscode"].as_int(0, minimum=0) or 200,
                timeout=h["timeout"].as_duration(0.0) or interval,
                interval=interval,
                threshold=h["threshold"].as_int(0, minimum=0),
            ))
        tcps = []
        for t in node["tcp"].as_list():
            interval = _interval(t["interval"])
            tcps.append(TCPCheck(
                addr=_required(t["addr"], "host:port to connect to"),
                timeout=t["timeout"].as_duration(0.0) or interval,
                interval=interval,
                threshold=t["threshold"].as_int(0, minimum=0),
            ))
        return cls(storagedriver=storagedriver, file=files, http=tuple(https), tcp=tuple(tcps))
