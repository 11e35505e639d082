"""HTTP plumbing shared by the drivers that talk to an object store over HTTP (gcs, azure).

One persistent treq pool per driver, responses checked and turned into driver errors, and a
reader that streams a response body with backpressure: the body is never collected whole,
at most ``high_water`` bytes wait in memory for ``read()``.
"""

from twisted.internet import defer, protocol, task
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from zope.interface import implementer

import treq
from treq.client import HTTPClient

from distregistry.storage.driver.base import IFileReader, StorageDriverError

_log = Logger()

# Idle connections kept per host: enough for a few concurrent uploads and listings.
MAX_PERSISTENT_PER_HOST = 16
CONNECT_TIMEOUT = 10
# A stalled object store must not hang a request forever; uploads of one chunk fit easily.
REQUEST_TIMEOUT = 300
# Tries of a request whose connection broke before any answer came back.
SEND_ATTEMPTS = 3


class HTTPStatusError(StorageDriverError):
    """The object store answered with an unexpected status."""

    def __init__(self, path, driver, status, body):
        self.status = status
        snippet = body[:300].decode("utf-8", "replace")
        super().__init__(path, driver, f"StorageDriverError: {driver}: {path}: HTTP {status}: {snippet}")


class HTTPPool:
    """A treq client over a persistent connection pool; ``close()`` drops the idle connections."""

    def __init__(self, reactor, persistent=True, max_concurrency=None):
        # At most this many requests wait for their answers at once (registry:2's gcs
        # ``maxconcurrency``); a streamed body no longer counts once its headers are in.
        self._slots = defer.DeferredSemaphore(max_concurrency) if max_concurrency else None
        self._pool = HTTPConnectionPool(reactor, persistent=persistent)
        self._pool.maxPersistentPerHost = MAX_PERSISTENT_PER_HOST
        self._pool.cachedConnectionTimeout = 30
        self._reactor = reactor
        self.client = HTTPClient(Agent(reactor, pool=self._pool, connectTimeout=CONNECT_TIMEOUT))

    async def request(self, method, url, headers=None, data=None):
        """(response, body bytes). The body is read in full: only for answers known to be small
        (JSON, XML, errors, empty)."""
        if self._slots is not None:
            await self._slots.acquire()
        try:
            response = await self._send(method, url, headers, data, unbuffered=False)
            body = await response.content()
        finally:
            if self._slots is not None:
                self._slots.release()
        return response, body

    async def open(self, method, url, headers=None):
        """The response with its body unread (the caller streams or drains it)."""
        if self._slots is not None:
            await self._slots.acquire()
        try:
            return await self._send(method, url, headers, None, unbuffered=True)
        finally:
            if self._slots is not None:
                self._slots.release()

    async def _send(self, method, url, headers, data, unbuffered):
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                # Redirects are never followed: GCS answers 308 to every resumable-upload chunk.
                return await self.client.request(method, url, headers=headers, data=data, timeout=REQUEST_TIMEOUT,
                                                 unbuffered=unbuffered, allow_redirects=False)
            except (ResponseNeverReceived, RequestTransmissionFailed):
                # A kept-alive connection the server had closed meanwhile (Node's servers, such
                # as Azurite, after 5 idle seconds): nothing was answered, so nothing was done
                # that resending could repeat wrongly. Every request the drivers make is
                # idempotent (block ids, resumable offsets, whole-object writes) and bodies are bytes.
                if attempt == SEND_ATTEMPTS:
                    raise
                _log.debug("{method} {url}: connection lost before an answer; sending again", method=method, url=url)

    def close(self):
        # A body that just ended hands its connection back to the pool only after the reader
        # saw the end, in the same call stack; one reactor turn later it is in the pool.
        d = task.deferLater(self._reactor, 0, lambda: None)
        d.addCallback(lambda _: self._pool.closeCachedConnections())
        return d


def header(response, name, default=None):
    """The first value of a response header, as str (Twisted answers in the name's type)."""
    return (response.headers.getRawHeaders(name) or [default])[0]


class _BodyBuffer(protocol.Protocol):
    """Receives a response body; pauses the connection while more than *high_water* bytes wait."""

    def __init__(self, high_water):
        self._high_water = high_water
        self._chunks = []
        self._buffered = 0
        self._paused = False
        self._done = None  # a Failure, or True once the body ended cleanly
        self._waiter = None

    def connectionMade(self):
        pass

    def dataReceived(self, data):
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._high_water and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        self._wake()

    def connectionLost(self, reason):
        if reason.check(ResponseDone, PotentialDataLoss, ConnectionDone):
            self._done = True
        else:
            self._done = reason
        self._wake()

    def _wake(self):
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    async def take(self, n):
        while not self._chunks and self._done is None:
            self._waiter = defer.Deferred()
            await self._waiter
        if not self._chunks:
            if self._done is True:
                return b""
            self._done.raiseException()
        out = []
        size = 0
        while self._chunks and size < n:
            chunk = self._chunks[0]
            want = n - size
            if len(chunk) > want:
                out.append(chunk[:want])
                self._chunks[0] = chunk[want:]
                size += want
            else:
                out.append(self._chunks.pop(0))
                size += len(chunk)
        self._buffered -= size
        if self._paused and self._buffered <= self._high_water // 2 and self._done is None:
            self._paused = False
            self.transport.resumeProducing()
        return b"".join(out)

    def abort(self):
        if self._done is None and self.transport is not None:
            self.transport.stopProducing()


@implementer(IFileReader)
class StreamReader:
    """IFileReader over a streamed response body (a GET from an offset)."""

    def __init__(self, response, high_water=4 << 20):
        self._body = _BodyBuffer(high_water)
        self._lock = defer.DeferredLock()  # queued reads are served in call order
        self._closed = False
        response.deliverBody(self._body)

    def read(self, n):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        return self._lock.run(lambda: defer.ensureDeferred(self._body.take(n)))

    def close(self):
        if not self._closed:
            self._closed = True
            self._body.abort()


@implementer(IFileReader)
class EmptyReader:
    """A reader positioned at the end of a file (no request needed)."""

    def __init__(self):
        self._closed = False

    def read(self, n):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        return defer.succeed(b"")

    def close(self):
        self._closed = True


async def drain(response):
    """Read and drop a body, so the connection goes back to the pool."""
    await treq.content(response)
