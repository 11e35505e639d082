"""The request side shared by the gcs and azure drivers, on httpio's pool, retries and
streaming reader (shared with s3): bounded concurrency, small answers read whole, big ones
left to stream.
"""

from twisted.internet import defer, task

import treq

from distregistry.storage.driver.base import StorageDriverError
from distregistry.storage.driver.httpio import http_client, with_retries

# Idle connections kept per host: enough for a few concurrent uploads and listings.
MAX_PERSISTENT_PER_HOST = 16
CONNECT_TIMEOUT = 10
# A stalled object store must not hang a request forever; uploads of one chunk fit easily.
REQUEST_TIMEOUT = 300


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
        self.client, self._pool = http_client(reactor, per_host=MAX_PERSISTENT_PER_HOST,
                                              connect_timeout=CONNECT_TIMEOUT)
        self._pool.persistent = persistent
        self._reactor = reactor

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
        # Connection failures before any answer are sent again (httpio's transient errors),
        # e.g. a kept-alive connection that the server closed meanwhile (Node's servers, such
        # as Azurite, after 5 idle seconds). Every request the drivers make is idempotent
        # (block ids, resumable offsets, whole-object writes) and bodies are bytes.
        # Redirects are never followed: GCS answers 308 to every resumable-upload chunk.
        return await with_retries(self._reactor, lambda: self.client.request(
            method, url, headers=headers, data=data, timeout=REQUEST_TIMEOUT, unbuffered=unbuffered,
            allow_redirects=False))

    def close(self):
        # A body that just ended hands its connection back to the pool only after the reader
        # saw the end, in the same call stack; one reactor turn later it is in the pool.
        d = task.deferLater(self._reactor, 0, lambda: None)
        d.addCallback(lambda _: self._pool.closeCachedConnections())
        return d


def header(response, name, default=None):
    """The first value of a response header, as str (Twisted answers in the name's type)."""
    return (response.headers.getRawHeaders(name) or [default])[0]


async def drain(response):
    """Read and drop a body, so the connection goes back to the pool."""
    await treq.content(response)
