"""``http.debug``: the debug site (``/metrics``, ``/debug/health``) on its own address.

Parsed as a section of its own (``Config.debug``) so the ``http`` section's class stays the
API listener's alone."""

import attr

from .http import _tcp_addr

DEFAULT_METRICS_PATH = "/metrics"


@attr.s(frozen=True, slots=True)
class DebugConfig:
    addr = attr.ib()  # "" (no debug site) or "host:port"
    prometheus_enabled = attr.ib()  # bool: instrument requests and storage, serve prometheus_path
    prometheus_path = attr.ib()  # "/metrics"

    @classmethod
    def parse(cls, root):
        node = root["http"]["debug"]
        addr = node["addr"]
        prometheus = node["prometheus"]
        path = prometheus["path"].as_str("") or DEFAULT_METRICS_PATH
        if not path.startswith("/"):
            raise prometheus["path"].error(f"expected an absolute path such as {DEFAULT_METRICS_PATH!r}")
        return cls(
            addr=_tcp_addr(addr) if addr.as_str("") else "",
            prometheus_enabled=prometheus["enabled"].as_bool(False),
            prometheus_path=path,
        )
