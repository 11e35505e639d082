"""Metrics whose values live elsewhere (the notification endpoints' status, the
blob-descriptor cache's counters), read at scrape time under registry:2 3.x's names.

In multiprocess mode (``http.workers`` > 1) a collector is read in the scraped process only,
so each worker publishes what it reads into multiprocess metrics of the same names (a
counter's increase, a gauge's value) every ``PUBLISH_INTERVAL`` seconds and when it stops,
and worker 0 before each scrape: /metrics sums all workers, the others' values at most
``PUBLISH_INTERVAL`` old.
"""

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from twisted.application import service
from twisted.internet import task

from distregistry.metrics import MULTIPROCESS, REGISTRY, SCRAPED

PUBLISH_INTERVAL = 1.0


class _Sources:
    """What this process's service registered; read by the collector at each scrape."""

    notifications = None   # distregistry.notifications.status.NotificationStatus
    cache = None           # distregistry.storage.cache.CacheStats
    worker_pids = list     # -> pids of workers 1..N-1 (worker 0's WorkerPool.pids)


SOURCES = _Sources()


def _family(name, kind, help_text, samples):
    if kind == "counter":
        # CounterMetricFamily appends "_total" itself.
        family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=_label_names(samples))
    else:
        family = GaugeMetricFamily(name, help_text, labels=_label_names(samples))
    for labels, value in samples:
        family.add_metric([labels[k] for k in family._labelnames], value)
    return family


def _label_names(samples):
    return list(samples[0][0]) if samples else []


class ServiceCollector:
    def collect(self):
        status = SOURCES.notifications
        if status is not None:
            for name, kind, help_text, samples in status.metric_families():
                if samples:
                    yield _family(name, kind, help_text, samples)
        stats = SOURCES.cache
        if stats is not None:
            for what, value in (("requests", stats.requests), ("hits", stats.hits), ("errors", stats.errors)):
                yield CounterMetricFamily(f"registry_storage_cache_{what}",
                                          f"The number of cache {what} received", value=value)


class WorkersProcessCollector:
    """``process_*`` of the registry, not of worker 0 alone: CPU time, memory and open
    descriptors summed over worker 0 and its workers; start time and descriptor limit are
    worker 0's."""

    SUMMED = {"process_cpu_seconds", "process_virtual_memory_bytes", "process_resident_memory_bytes",
              "process_open_fds"}

    def collect(self):
        families = {f.name: f for f in ProcessCollector(registry=None).collect()}
        for pid in SOURCES.worker_pids():
            for other in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                family = families.get(other.name)
                if family is not None and family.name in self.SUMMED and family.samples and other.samples:
                    family.samples[0] = family.samples[0]._replace(value=family.samples[0].value +
                                                                   other.samples[0].value)
        return families.values()


class Publisher:
    """Copies ServiceCollector's families into multiprocess metrics."""

    def __init__(self, collector):
        self._collector = collector
        self._metrics = {}     # family name -> Counter or Gauge
        self._published = {}   # (family name, label values) -> counter value published so far

    def publish(self):
        for family in self._collector.collect():
            metric = self._metrics.get(family.name)
            if metric is None:
                labels = list(family.samples[0].labels) if family.samples else []
                if family.type == "counter":
                    metric = Counter(family.name, family.documentation, labels, registry=None)
                else:
                    metric = Gauge(family.name, family.documentation, labels, registry=None,
                                   multiprocess_mode="livesum")
                self._metrics[family.name] = metric
            for sample in family.samples:
                child = metric.labels(**sample.labels) if sample.labels else metric
                if family.type == "counter":
                    key = (family.name, tuple(sample.labels.values()))
                    increase = sample.value - self._published.get(key, 0)
                    if increase > 0:
                        child.inc(increase)
                        self._published[key] = sample.value
                else:
                    child.set(sample.value)


class PublishService(service.Service):
    def __init__(self, publisher, clock):
        self.publisher = publisher
        self._loop = task.LoopingCall(publisher.publish)
        self._loop.clock = clock

    def startService(self):
        super().startService()
        self._loop.start(PUBLISH_INTERVAL, now=False)

    def stopService(self):
        super().stopService()
        self._loop.stop()
        self.publisher.publish()


COLLECTOR = ServiceCollector()
REGISTRY.register(COLLECTOR)
PUBLISHER = None
if MULTIPROCESS:
    PUBLISHER = Publisher(COLLECTOR)
    SCRAPED.register(WorkersProcessCollector())
