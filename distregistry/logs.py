"""Log output as registry:2 writes it: ``log.level``, ``log.formatter`` (text, json, logstash),
``log.fields``; and the access log (Apache combined format on stdout, as registry:2's
gorilla handler does), written directly because twisted.web's own access log costs
20-40 % of small-request throughput (shared/reference/twisted.md 4.3).
"""

import json
import sys
import time
from datetime import datetime, timezone

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
_LEVEL_NAMES = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warning",
    LogLevel.error: "error",
    LogLevel.critical: "fatal",
}
# Keys twisted.logger puts in every event; not user fields.
_INTERNAL = {
    "log_logger", "log_level", "log_namespace", "log_source", "log_format", "log_time",
    "log_failure", "log_text", "log_io", "log_legacy", "log_flattened", "log_trace", "log_system",
    "format", "message", "isError", "system", "time", "printed", "why", "failure",
}


def _timestamp(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _fields(event, static):
    out = dict(static)
    for key, value in event.items():
        if key in _INTERNAL or key.startswith("log_") or key.startswith("_"):
            continue
        out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
    return out


def _message(event):
    text = formatEvent(event) or ""
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}" if text else failure.getTraceback()
    return text


def _quote(value):
    s = str(value)
    if s and all(c.isalnum() or c in "-_./:@" for c in s):
        return s
    return json.dumps(s)


class _Formatter:
    def __init__(self, formatter, fields, stream):
        self._format = getattr(self, "_" + formatter)
        self._static = dict(fields or {})
        self._stream = stream

    def __call__(self, event):
        try:
            line = self._format(event)
        except Exception as e:  # a log line must never take the daemon down
            line = f"log formatting failed: {e!r}: {event!r}"
        self._stream.write(line + "\n")
        self._stream.flush()

    def _text(self, event):
        level = _LEVEL_NAMES.get(event.get("log_level"), "info")
        parts = [f'time="{_timestamp(event.get("log_time", time.time()))}"', f"level={level}",
                 f"msg={json.dumps(_message(event))}"]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(event, self._static).items()]
        return " ".join(parts)

    def _json(self, event):
        out = _fields(event, self._static)
        out.update(level=_LEVEL_NAMES.get(event.get("log_level"), "info"), msg=_message(event),
                   time=_timestamp(event.get("log_time", time.time())))
        return json.dumps(out)

    def _logstash(self, event):
        out = _fields(event, self._static)
        out.update({"@timestamp": _timestamp(event.get("log_time", time.time())), "@version": "1",
                    "level": _LEVEL_NAMES.get(event.get("log_level"), "info"), "message": _message(event)})
        return json.dumps(out)


def make_observer(log_config, stream=None):
    """A twisted.logger observer honouring the ``log`` section (application logs go to stderr)."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[log_config.level])
    observer = FilteringLogObserver(_Formatter(log_config.formatter, log_config.fields, stream or sys.stderr),
                                    [predicate])
    observer.level_predicate = predicate
    return observer


_configured = []
_observers = []


def configure(log_config):
    """Remember the ``log`` section for :func:`configured_observer` (twistd's ``--logger``
    takes a dotted name, not an object)."""
    _configured[:] = [log_config]


def configured_observer():
    observer = make_observer(_configured[0])
    _observers.append(observer)
    return observer


def set_level(level):
    """Apply a new ``log.level`` to the running daemon's log (SIGHUP reload)."""
    for observer in _observers:
        observer.level_predicate.setLogLevelForNamespace("", LEVELS[level])


class AccessLog:
    """Apache combined log format, one line per request, to stdout (registry:2 does the same).

    Lines are flushed once per reactor turn, not once per request: under load a turn
    finishes many requests, and a write() each was ~3 % of a small request's CPU."""

    def __init__(self, stream=None, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self._stream = stream or sys.stdout
        self._clock = clock
        self._flush = None

    def __call__(self, request):
        agent = (request.getHeader(b"user-agent") or b"").decode("latin-1")
        referer = (request.getHeader(b"referer") or b"").decode("latin-1")
        addr = request.getClientAddress()
        host = getattr(addr, "host", "-")
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        line = (f'{host} - - [{stamp}] "{request.method.decode("latin-1")} '
                f'{request.uri.decode("latin-1")} {request.clientproto.decode("latin-1")}" '
                f'{request.code} {request.sentLength} {json.dumps(referer)} {json.dumps(agent)}\n')
        self._stream.write(line)
        if self._flush is None:
            self._flush = self._clock.callLater(0, self._flushed)

    def _flushed(self):
        self._flush = None
        self._stream.flush()
