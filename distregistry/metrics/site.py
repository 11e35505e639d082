"""The debug site on ``http.debug.addr``: Prometheus metrics at ``prometheus.path`` (when
enabled) and ``/debug/health`` in registry:2's format. Separate from the API port, so it
has neither the API's headers nor its health gate."""

import json

from klein import Klein
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from twisted.internet import defer, threads
from twisted.web import server

from distregistry.metrics import SCRAPED, collectors


class DebugSite:
    def __init__(self, debug_config, health, reactor, notifications=None):
        self._health = health
        self._reactor = reactor
        self.app = Klein()
        if notifications is not None:
            from distregistry.notifications.status import StatusResource

            # registry:2's expvar view of the notification endpoints.
            if collectors.PUBLISHER is not None:
                notifications = _WorkersStatus(notifications)
            vars_resource = StatusResource(notifications)
            self.app.route("/debug/vars", methods=["GET"], endpoint="vars")(
                lambda request: _respond(request, 200, vars_resource.render_GET(request),
                                         "application/json; charset=utf-8"))
        if debug_config.prometheus_enabled:
            self.app.route(debug_config.prometheus_path, methods=["GET"], endpoint="metrics")(
                lambda request: defer.ensureDeferred(self.metrics(request)))
        self.app.route("/debug/health", methods=["GET"])(self.health)

    async def metrics(self, request):
        if collectors.PUBLISHER is not None:
            collectors.PUBLISHER.publish()   # this worker's part as of now
        # The process collector reads /proc (and multiprocess mode the workers' files):
        # off the reactor thread, like any file I/O.
        body = await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                               generate_latest, SCRAPED)
        # The classic text format every Prometheus reads (as Go's promhttp serves by default).
        return _respond(request, 200, body, CONTENT_TYPE_PLAIN_0_0_4)

    def health(self, request):
        # registry:2's StatusHandler: 200 {} or 503 {"<check>": "<error>"}.
        statuses = self._health.statuses() if self._health is not None else {}
        return _respond(request, 503 if statuses else 200, json.dumps(statuses).encode(), "application/json")

    def site(self):
        site = server.Site(self.app.resource())
        site.log = lambda request: None
        site.displayTracebacks = False
        site.noisy = False
        return site


class _WorkersStatus:
    """/debug/vars with http.workers: each endpoint's ``Metrics`` summed over the workers (as
    they published them for /metrics); last success, failure, error and journal are worker 0's."""

    def __init__(self, status):
        self._status = status

    def debug_vars(self):
        collectors.PUBLISHER.publish()
        totals = {}
        for family in MultiProcessCollector(None).collect():
            for sample in family.samples:
                endpoint = sample.labels.get("endpoint")
                if endpoint is None:
                    continue
                metrics = totals.setdefault(endpoint, {"Statuses": {}})
                if family.name == "registry_notifications_events":
                    metrics[sample.labels["type"]] = int(sample.value)
                elif family.name == "registry_notifications_pending_total":
                    metrics["Pending"] = int(sample.value)
                elif family.name == "registry_notifications_status":
                    metrics["Statuses"][sample.labels["code"]] = int(sample.value)
        out = self._status.debug_vars()
        for endpoint in out["endpoints"]:
            endpoint["Metrics"].update(totals.get(endpoint["name"], {}))
        return out


def _respond(request, code, body, content_type):
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type.encode())
    request.setHeader(b"content-length", b"%d" % len(body))
    return body
