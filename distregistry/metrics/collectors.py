"""Metrics whose values live elsewhere (the notification endpoints' status, the
blob-descriptor cache's counters), read at scrape time under registry:2 3.x's names."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from distregistry.metrics import REGISTRY


class _Sources:
    """What this process's service registered; read by the collector at each scrape."""

    notifications = None   # distregistry.notifications.status.NotificationStatus
    cache = None           # distregistry.storage.cache.CacheStats


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


REGISTRY.register(ServiceCollector())
