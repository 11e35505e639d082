"""Graceful shutdown (``http.draintimeout``): on SIGTERM the port closes at once, requests in
flight (uploads whose body is still arriving included) get up to the drain timeout to
finish, then every connection is closed after its response is flushed
(shared/reference/twisted.md 6.3)."""

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web import http

log = Logger()

POLL = 0.05


TLS_HANDSHAKE = 0x16
TLS_ON_PLAIN_PORT = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


class RegistryChannel(http.HTTPChannel):
    """HTTP/1.1 channel that registers itself with the site's connection set, and answers a
    TLS ClientHello on a plain port at once as Go does: skopeo, podman and dockerd try
    HTTPS first on an insecure registry and would otherwise wait out their handshake
    timeout (10 s) before falling back to HTTP."""

    _first = True

    def connectionMade(self):
        super().connectionMade()
        self.site.connections.add(self)
        self._host = self.transport.getHost()

    def getHost(self):
        # Every Request asks (twisted.web's Request.__init__); one getsockname() per connection.
        return self._host

    def dataReceived(self, data):
        if self._first and data:
            self._first = False
            if data[0] == TLS_HANDSHAKE:
                self.transport.write(TLS_ON_PLAIN_PORT)
                self.transport.loseConnection()
                return
        super().dataReceived(data)

    def connectionLost(self, reason):
        self.site.connections.discard(self)
        super().connectionLost(reason)


class DrainService(service.Service):
    """Added first to the MultiService, so it is stopped last: after the listener closed."""

    def __init__(self, site, timeout, clock):
        self._site = site
        self._timeout = timeout
        self._clock = clock

    async def _drain(self):
        connections = self._site.connections
        busy = [c for c in connections if c.requests]
        if busy and self._timeout > 0:
            log.info("draining {count} in-flight requests (timeout {timeout}s)", count=len(busy),
                     timeout=self._timeout)
            deadline = self._clock.seconds() + self._timeout
            while any(c.requests for c in connections) and self._clock.seconds() < deadline:
                await task.deferLater(self._clock, POLL, lambda: None)
        # loseConnection flushes what is written first, so finished responses still arrive.
        for channel in list(connections):
            channel.transport.loseConnection()
        deadline = self._clock.seconds() + 1.0
        while connections and self._clock.seconds() < deadline:
            await task.deferLater(self._clock, POLL, lambda: None)

    def stopService(self):
        super().stopService()
        return defer.ensureDeferred(self._drain())
