"""Per-endpoint counters, readable as registry:2 3.x's ``registry_notifications_*`` metrics
and as the JSON of its ``/debug/vars`` ``registry.notifications`` entry (plus what an
operator needs after an outage: last success, last failure, last error, dropped events).

Neither the metrics registry nor the debug site lives here: ``metric_families()`` and
``debug_vars()`` are what they read, so this module imports no metrics library.
"""

import json
import time
from collections import Counter
from http import HTTPStatus

from twisted.web import resource


def _status_text(code):
    # Go's fmt.Sprintf("%d %s", status, http.StatusText(status)).
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} "


class EndpointStatus:
    def __init__(self, config, journal):
        self.config = config
        self._journal = journal
        self.draining = []    # former workers' journals this process delivers (worker 0)
        self.events = 0       # accepted into the queue (after the ignore filters)
        self.successes = 0
        self.failures = 0     # the receiver answered outside 200-399
        self.errors = 0       # no answer: connection refused, timeout, ...
        self.dropped = 0      # discarded by the journal's size bound
        self.statuses = Counter()
        self.last_success = None   # epoch seconds
        self.last_failure = None
        self.last_error = None     # text of the last failure or error

    @property
    def pending(self):
        return self._journal.pending + sum(j.pending for j in self.draining)

    def success(self, code):
        self.successes += 1
        self.statuses[_status_text(code)] += 1
        self.last_success = time.time()

    def failure(self, code):
        self.failures += 1
        self.statuses[_status_text(code)] += 1
        self.last_failure = time.time()
        self.last_error = f"response status {_status_text(code)} unaccepted"

    def error(self, text):
        self.errors += 1
        self.last_failure = time.time()
        self.last_error = text

    def drop(self, n):
        self.dropped += n

    def to_json(self):
        c = self.config

        def stamp(t):
            return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        return {
            "name": c.name, "url": c.url,
            # Values may be credentials: the debug view shows which headers are sent, not what.
            "Headers": {k: ["<redacted>"] * len(v) for k, v in c.headers.items()},
            "Timeout": int(c.timeout * 1e9), "Threshold": c.threshold, "Backoff": int(c.backoff * 1e9),
            "IgnoredMediaTypes": sorted(c.ignored_media_types),
            "Ignore": {"mediatypes": sorted(c.ignored_media_types), "actions": sorted(c.ignored_actions)},
            "Metrics": {"Pending": self.pending, "Events": self.events, "Successes": self.successes,
                        "Failures": self.failures, "Errors": self.errors, "Dropped": self.dropped,
                        "Statuses": dict(self.statuses)},
            "LastSuccess": stamp(self.last_success), "LastFailure": stamp(self.last_failure),
            "LastError": self.last_error,
            "Journal": {"Directory": self._journal.directory, "Bytes": self._journal.size,
                        "Draining": [{"Directory": j.directory, "Pending": j.pending} for j in self.draining]},
        }


class NotificationStatus:
    """All endpoints' status; what the metrics and debug code read."""

    def __init__(self, endpoints=()):
        self.endpoints = list(endpoints)   # EndpointStatus

    def debug_vars(self):
        """registry:2's expvar ``registry.notifications`` value."""
        return {"endpoints": [e.to_json() for e in self.endpoints]}

    def metric_families(self):
        """``(name, type, help, [(labels, value)])`` with registry:2 3.x's names and labels."""
        events, pending, statuses = [], [], []
        for e in self.endpoints:
            for kind, value in (("Events", e.events), ("Successes", e.successes), ("Failures", e.failures),
                                ("Errors", e.errors), ("Dropped", e.dropped)):
                events.append(({"type": kind, "endpoint": e.config.name}, value))
            pending.append(({"endpoint": e.config.name}, e.pending))
            statuses.extend(({"code": code, "endpoint": e.config.name}, n) for code, n in sorted(e.statuses.items()))
        return [
            ("registry_notifications_events_total", "counter", "The number of total events", events),
            ("registry_notifications_pending_total", "gauge", "The gauge of pending events in queue", pending),
            ("registry_notifications_status_total", "counter", "The number of status code", statuses),
        ]


class StatusResource(resource.Resource):
    """``GET`` → the debug_vars JSON; for the debug site to mount (e.g. under /debug/)."""

    isLeaf = True

    def __init__(self, status):
        super().__init__()
        self._status = status

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps({"registry": {"notifications": self._status.debug_vars()}}, indent=2).encode()
