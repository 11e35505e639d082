"""HTTP plumbing shared by the cloud drivers (s3 here; gcs and azure can use it too):
a treq client on a persistent connection pool, a streaming response reader with
backpressure, and a retry loop for idempotent requests.

Nothing here knows any cloud's API: signing, URLs and error formats are the driver's.
"""

import random

import treq
from OpenSSL import SSL
from twisted.internet import defer, error as neterror, ssl, task
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol
from twisted.web import client
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from distregistry.storage.driver.base import IFileReader

# Unread response bytes a reader keeps before it pauses the connection.
READ_HIGH_WATER = 4 << 20


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedTLS:
    def __init__(self):
        self._context = ssl.CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class _NoVerify:
    """``skipverify``: TLS without certificate checks (self-signed endpoints)."""

    def creatorForNetloc(self, hostname, port):
        return _UnverifiedTLS()


class _QuietFactory(client._HTTP11ClientFactory):
    # Twisted logs "Starting factory" for every new connection at info level otherwise.
    noisy = False


def http_client(reactor, skipverify=False, per_host=16, connect_timeout=10):
    """(treq HTTPClient, pool) with persistent connections; close with ``pool.closeCachedConnections()``."""
    pool = client.HTTPConnectionPool(reactor, persistent=True)
    pool._factory = _QuietFactory
    pool.maxPersistentPerHost = per_host
    pool.cachedConnectionTimeout = 30
    policy = _NoVerify() if skipverify else client.BrowserLikePolicyForHTTPS()
    agent = client.Agent(reactor, contextFactory=policy, pool=pool, connectTimeout=connect_timeout)
    return treq.client.HTTPClient(agent), pool


class TransientHTTPError(Exception):
    """A response worth retrying (5xx, throttling); carries the status and body."""

    def __init__(self, status, body):
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}")


# Failures of the connection itself: the request may be re-sent on a fresh connection.
_TRANSIENT = (
    neterror.ConnectError,
    neterror.ConnectionLost,
    neterror.ConnectionDone,
    client.ResponseNeverReceived,
    client.RequestTransmissionFailed,
    TransientHTTPError,
)


async def with_retries(reactor, attempt, tries=4, base_delay=0.1):
    """Run ``await attempt()`` until it does not raise a transient error, *tries* times at
    most, with jittered exponential back-off. *attempt* must be safe to repeat."""
    for n in range(tries):
        try:
            return await attempt()
        except _TRANSIENT:
            if n == tries - 1:
                raise
        delay = base_delay * (4 ** n) * (0.5 + random.random())
        await task.deferLater(reactor, delay, lambda: None)


class _BodyStream(Protocol):
    """Receives a response body, pausing the connection while too much is unread."""

    def __init__(self, high_water):
        self.buffer = bytearray()
        self.ended = None  # the Failure the body ended with, once it has
        self._high_water = high_water
        self._paused = False
        self._waiter = None

    def dataReceived(self, data):
        self.buffer += data
        if len(self.buffer) >= self._high_water and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._wake()

    def connectionLost(self, reason):
        self.ended = reason
        self._wake()

    def _wake(self):
        d, self._waiter = self._waiter, None
        if d is not None:
            d.callback(None)

    def take(self, n):
        chunk = bytes(self.buffer[:n])
        del self.buffer[:n]
        if self._paused and len(self.buffer) < self._high_water // 2 and self.ended is None:
            self._paused = False
            self.transport.resumeProducing()
        return chunk

    def wait(self):
        self._waiter = defer.Deferred()
        return self._waiter

    def abort(self):
        if self.ended is None and self.transport is not None:
            self.transport.stopProducing()


@implementer(IFileReader)
class ResponseReader:
    """IFileReader over a streaming response body; reads run one after the other, in call
    order. *driver_error* turns a body that broke off into the driver's error."""

    def __init__(self, response, driver_error, high_water=READ_HIGH_WATER):
        self._stream = _BodyStream(high_water)
        self._error = driver_error
        self._lock = defer.DeferredLock()
        self._closed = False
        response.deliverBody(self._stream)

    def read(self, n):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        return self._lock.run(lambda: defer.ensureDeferred(self._read(n)))

    async def _read(self, n):
        s = self._stream
        while not s.buffer and s.ended is None:
            await s.wait()
        if s.buffer:
            return s.take(n)
        if not s.ended.check(client.ResponseDone, client.PotentialDataLoss):
            raise self._error(s.ended.value)
        return b""

    def close(self):
        if not self._closed:
            self._closed = True
            # Unread data would keep the connection busy: drop it instead.
            self._stream.abort()


@implementer(IFileReader)
class EmptyReader:
    """A reader positioned at the end of its file (no request needed)."""

    def __init__(self):
        self._closed = False

    def read(self, n):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        return defer.succeed(b"")

    def close(self):
        self._closed = True
