"""Request bodies without buffering (shared/reference/twisted.md §2).

twisted.web spools every body over 100 kB into an unlinked temp file before the handler
runs, with no size limit. ``RegistryRequest.gotLength`` replaces that: upload bodies go
through :class:`UploadSink` straight into the storage writer while being hashed, with the
transport paused while storage is behind; every other body goes into a small
:class:`BoundedBody` (manifests are at most 4 MiB) and nothing ever reaches $TMPDIR.
"""

import ctypes
import time

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.web import server

log = Logger()

# recv() size and the pieces handed to storage. 512 KiB costs ~5% more CPU per GiB than
# 1 MiB (64 KiB, Twisted's default, twice as much: twisted.md 2.2) and holds half as much.
CHUNK = 1 << 19
# Pause the client above HIGH_WATER bytes not yet stored, resume below LOW_WATER. These
# bytes are most of an upload's resident memory; two pieces in flight keep the disk busy
# (8/2 MiB pushed no faster), and the kernel's socket buffer goes on receiving meanwhile.
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 19


def _find_malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim   # glibc only
    except (OSError, AttributeError):
        return None


# The pieces of an upload come from the heap (glibc raises its mmap threshold to
# their size after the first one is freed) and the small objects allocated between them
# keep most of the freed space from being returned, so each large upload used to leave a
# few MiB more resident. malloc_trim(0) hands every free page back; once per large upload
# it costs far less than mmapping each piece (M_MMAP_THRESHOLD), which page-faults every
# piece in anew (+0.5 s CPU per GiB pushed).
_malloc_trim = _find_malloc_trim()


def release_free_memory():
    """Return the heap's free pages to the system (glibc); nothing elsewhere."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class _Sink:
    """The file-like surface twisted.web's requestReceived uses on ``request.content``
    (it seeks to 0 and may read form bodies); our sinks hand nothing back that way."""

    def tell(self):
        return 0

    def seek(self, offset, whence=0):
        return 0

    def read(self, n=-1):
        return b""

    def close(self):
        pass


class BoundedBody(_Sink):
    """In-memory body of at most *limit* bytes; more is counted and dropped (``overflow``)."""

    def __init__(self, limit):
        self._limit = limit
        self._parts = []
        self._size = 0
        self.overflow = False

    def write(self, data):
        if self._size + len(data) > self._limit:
            self.overflow = True
        else:
            self._parts.append(data)
        self._size += len(data)

    def getvalue(self):
        return b"".join(self._parts)

    def close(self):
        self._parts = []


class UploadSink(_Sink):
    """Streams a request body into an IUploadWriter opened asynchronously by *opener*.

    Bytes arriving before the writer is open are held (bounded by the same watermarks).
    If opening fails the error is kept for the handler and further bytes are discarded,
    so the client gets the spec error once its body is sent, and storage is untouched.
    """

    def __init__(self, request, opener):
        self._transport = request.channel.transport
        self._transport.bufferSize = CHUNK
        self._pending = 0          # bytes received and not yet stored
        # Received pieces not yet handed to the writer. Most recv()s return a whole CHUNK,
        # which then goes to storage as is; only smaller pieces are joined (one copy).
        self._parts = []
        self._buffered = 0
        self._paused = False
        self._writer = None
        self._error = None
        self._aborted = False
        self._inflight = []
        self.received = 0
        self._opened = defer.ensureDeferred(opener())
        self._opened.addCallbacks(self._on_open, self._on_open_failed)

    # -- twisted.web side --------------------------------------------------------------
    def write(self, data):
        if self._error is not None or self._aborted:
            return
        self.received += len(data)
        self._pending += len(data)
        self._parts.append(data)
        self._buffered += len(data)
        if self._writer is not None and self._buffered >= CHUNK:
            self._flush()
        self._check_pressure()

    # -- storage side --------------------------------------------------------------------
    def _on_open(self, writer):
        self._writer = writer
        if self._aborted:
            return self._abort_writer()
        if self._parts:
            self._flush()

    def _on_open_failed(self, failure):
        self._fail(failure)

    def _flush(self):
        # In runs of about CHUNK: what arrived before the writer opened (up to HIGH_WATER)
        # is not joined into one piece, which would double it for a moment.
        parts, self._parts, self._buffered = self._parts, [], 0
        run, size = [], 0
        for part in parts:
            run.append(part)
            size += len(part)
            if size >= CHUNK:
                self._store(run)
                run, size = [], 0
        if run:
            self._store(run)

    def _store(self, run):
        if self._error is not None:   # an earlier run of this flush failed at once
            return
        data = run[0] if len(run) == 1 else b"".join(run)
        d = self._writer.write(data)
        self._inflight.append(d)
        d.addCallbacks(self._stored, self._fail, callbackArgs=(len(data), d), errbackArgs=())

    def _stored(self, _, n, d):
        self._inflight.remove(d)
        self._pending -= n
        self._check_pressure()

    def _fail(self, failure):
        if self._error is None:
            self._error = failure
        self._parts = []
        self._buffered = 0
        self._pending = 0
        self._check_pressure()

    def _check_pressure(self):
        if not self._paused and self._pending > HIGH_WATER:
            self._paused = True
            self._transport.pauseProducing()
        elif self._paused and self._pending < LOW_WATER:
            self._paused = False
            self._transport.resumeProducing()

    async def finish(self):
        """Wait until every byte is stored; return the (closed) writer or raise the error."""
        await defer.maybeDeferred(lambda: self._opened)
        if self._error is None and self._parts:
            self._flush()
        if self._inflight:
            await defer.DeferredList(list(self._inflight), consumeErrors=True)
        if self.received >= HIGH_WATER:
            release_free_memory()
        if self._error is not None:
            if self._writer is not None:
                await self._writer.abort()
            self._error.raiseException()
        await self._writer.close()
        return self._writer

    def abort(self):
        """The connection went away mid-body."""
        if self._aborted:
            return
        self._aborted = True
        self._parts = []
        self._buffered = 0
        if self._writer is not None:
            self._abort_writer()

    def _abort_writer(self):
        d = defer.DeferredList(list(self._inflight), consumeErrors=True)
        d.addCallback(lambda _: self._writer.abort())
        d.addErrback(lambda f: log.failure("aborting upload writer", f, LogLevel.error))


class RegistryRequest(server.Request):
    """Chooses the body sink before the body arrives (the route is known from the request line)."""

    # Set by the access gate (distregistry/api/access.py). registry_user is THE place that
    # names the authenticated user (events' actor.name, logs); None without auth.
    registry_user = None
    registry_authorized = False
    registry_rejected = False   # answered 401 before the body was read; never processed
    registry_pending = None     # Deferred of an access decision made before the body
    # HTTP metrics (distregistry.metrics.http): set by HTTPInstrumentation.begin.
    instrument = None
    metric_handler = None
    started = None

    def gotLength(self, length):
        self.started = time.monotonic()
        channel = self.channel
        method = getattr(channel, "_command", None) or getattr(channel, "command", b"")
        path = getattr(channel, "_path", None) or getattr(channel, "path", b"")
        self.content = channel.site.api.body_sink(self, method, path, length)

    def process(self):
        if self.registry_rejected:
            return
        pending = self.registry_pending
        if pending is not None and not pending.called:
            # The whole body came with the headers, before the access decision.
            pending.addCallback(lambda _: None if self.registry_rejected else server.Request.process(self))
            return
        super().process()

    def finish(self):
        super().finish()
        if self.instrument is not None:
            self.instrument.end(self)

    def connectionLost(self, reason):
        abort = getattr(self.content, "abort", None)
        if abort is not None and not self.finished:
            abort()
        if self.instrument is not None and not self.finished:
            self.instrument.end(self)
        super().connectionLost(reason)
