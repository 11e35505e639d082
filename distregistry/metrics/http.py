"""Per-request HTTP metrics (registry:2's go-metrics InstrumentHandler*), kept cheap because
they sit on every request: the label children of a (handler, method, code) are looked up
once and kept, so a request costs a few dict lookups and five locked updates.

``begin`` is called when a request reaches its route (uploads: before their body streams, so
the in-flight gauge and the duration cover the body); ``end`` once the response is finished
or the connection was lost (RegistryRequest calls it)."""

import time

from distregistry.metrics import (
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_REQUEST_SIZE,
    HTTP_REQUESTS,
    HTTP_RESPONSE_SIZE,
)


def request_size(request):
    """promhttp's computeApproximateRequestSize: URL, method, protocol, header names and
    values, and the declared body length."""
    size = len(request.uri) + len(request.method) + len(request.clientproto)
    for name, values in request.requestHeaders.getAllRawHeaders():
        size += len(name)
        for value in values:
            size += len(value)
    length = request.requestHeaders.getRawHeaders(b"content-length")
    if length:
        try:
            size += int(length[0])
        except ValueError:
            pass
    return size


class _Handler:
    """The label children of one handler."""

    __slots__ = ("name", "in_flight", "request_size", "response_size", "by_method", "by_code")

    def __init__(self, name):
        self.name = name
        self.in_flight = HTTP_IN_FLIGHT.labels(name)
        self.request_size = HTTP_REQUEST_SIZE.labels(name)
        self.response_size = HTTP_RESPONSE_SIZE.labels(name)
        self.by_method = {}  # method bytes -> (lower-case name, duration child)
        self.by_code = {}  # (method bytes, code) -> requests_total child


class HTTPInstrumentation:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._handlers = {}

    def begin(self, request, handler):
        if request.instrument is not None:
            return   # already counted from its body's start
        entry = self._handlers.get(handler)
        if entry is None:
            entry = self._handlers[handler] = _Handler(handler)
        request.instrument = self
        request.metric_handler = entry
        if request.started is None:
            request.started = self._clock()
        entry.in_flight.inc()

    def end(self, request):
        entry = request.metric_handler
        request.instrument = request.metric_handler = None
        elapsed = self._clock() - request.started
        method = request.method
        by_method = entry.by_method.get(method)
        if by_method is None:
            # Go's sanitizeMethod: lower-case names for the standard methods.
            name = method.decode("latin-1").lower()
            by_method = entry.by_method[method] = (name, HTTP_DURATION.labels(entry.name, name))
        key = (method, request.code)
        counter = entry.by_code.get(key)
        if counter is None:
            counter = entry.by_code[key] = HTTP_REQUESTS.labels(entry.name, str(request.code), by_method[0])
        entry.in_flight.dec()
        counter.inc()
        by_method[1].observe(elapsed)
        entry.request_size.observe(request_size(request))
        entry.response_size.observe(request.sentLength)
