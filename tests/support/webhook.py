"""A real webhook receiver for notification tests: a Twisted web server in the test
process, on a loopback port, recording every POST with its arrival time."""

import json
import time

import attr
from twisted.internet import defer, reactor, task
from twisted.web import http, resource, server


@attr.s
class Hit:
    at = attr.ib()        # time.monotonic() on arrival
    path = attr.ib()
    headers = attr.ib()   # {lower-case name: [values]}
    body = attr.ib()

    @property
    def events(self):
        return json.loads(self.body)["events"]


class _Hook(resource.Resource):
    isLeaf = True

    def __init__(self, receiver):
        super().__init__()
        self._receiver = receiver

    def render_POST(self, request):
        r = self._receiver
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()}
        r.hits.append(Hit(time.monotonic(), request.path.decode(), headers, request.content.read()))
        if len(r.hits) <= r.fail_first:
            request.setResponseCode(500)
            return b"no"
        if not r.delay:
            return b""
        call = reactor.callLater(r.delay, lambda: request.finish())
        r.calls.append(call)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        return server.NOT_DONE_YET


class _Site(server.Site):
    def __init__(self, receiver):
        super().__init__(_Hook(receiver))
        self.noisy = False
        # Plain HTTP/1.1 channels (not the h2 switch, which has no .transport) to abort at stop.
        self.protocol = http.HTTPChannel
        self.protocols = set()

    def buildProtocol(self, addr):
        p = super().buildProtocol(addr)
        self.protocols.add(p)
        return p


class Receiver:
    """``fail_first``: answer the first N POSTs 500; ``delay``: seconds before answering."""

    def __init__(self, port=0, fail_first=0, delay=0.0):
        self.port = port
        self.fail_first = fail_first
        self.delay = delay
        self.hits = []
        self.calls = []
        self._listening = None
        self._site = _Site(self)

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        self._listening = reactor.listenTCP(self.port, self._site, interface="127.0.0.1")
        self.port = self._listening.getHost().port
        return self

    async def stop(self):
        if self._listening is not None:
            await defer.maybeDeferred(self._listening.stopListening)
            self._listening = None
        for call in self.calls:
            if call.active():
                call.cancel()
        for p in list(self._site.protocols):
            if p.transport is not None:
                p.transport.abortConnection()
        self._site.protocols.clear()
        await task.deferLater(reactor, 0.05, lambda: None)

    def events(self, path=None):
        """Every event received at *path* (all paths: None), retries included, in arrival order."""
        return [e for h in self.hits if path is None or h.path == path for e in h.events]

    def unique(self, path=None):
        """Events by first arrival, each id once (receivers de-duplicate by id)."""
        seen, out = set(), []
        for e in self.events(path):
            if e["id"] not in seen:
                seen.add(e["id"])
                out.append(e)
        return out

    async def wait_for(self, predicate, timeout=30.0, what="events"):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {len(self.hits)} POSTs")
            await task.deferLater(reactor, 0.05, lambda: None)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)

