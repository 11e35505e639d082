"""A Daemon spoken to over TLS (trusting the test CA, optionally with a client certificate)
and ready once ``GET /v2/`` answers at all: behind auth that is a 401."""

import http.client
import ssl
from dataclasses import dataclass

from .daemon import Daemon


@dataclass
class SecureDaemon(Daemon):
    ca_file: str | None = None
    client_cert: tuple | None = None   # (cert path, key path)
    ready_statuses = (200, 401)

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if self.client_cert:
            ctx.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return ctx

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        if not self.ca_file:
            return super().connection(timeout)
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context())
