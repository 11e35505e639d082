"""The daemon's one Prometheus registry, and the metrics registry:2 exposes with its names,
types, labels and buckets (metrics/prometheus.go, docker/go-metrics).

Another module adds a metric by creating it on ``REGISTRY`` at import time::

    from prometheus_client import Counter
    from distregistry.metrics import REGISTRY

    EVENTS = Counter("registry_notifications_events_total", "The number of total events",
                     ["type", "endpoint"], registry=REGISTRY)

A metric is created once per process (module level); creating the same name twice raises.

``SCRAPED`` is what the debug site exposes. With one process it is ``REGISTRY``. With
``http.workers`` > 1 the workers run prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
set by ``distregistry.workers.shared_metrics_directory`` before this is imported): every
value lives in a per-process mmap'd file, and ``SCRAPED`` sums them all. A gauge's
``multiprocess_mode`` says how (``livesum``: over the processes alive).
"""

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.values import ValueClass

# Go's client emits no "_created" series; neither do we, so dashboards see the same names.
prometheus_client.disable_created_metrics()

MULTIPROCESS = ValueClass._multiprocess
REGISTRY = CollectorRegistry()
if MULTIPROCESS:
    # process_* come from collectors.WorkersProcessCollector: summed over the workers.
    SCRAPED = CollectorRegistry()
    MultiProcessCollector(SCRAPED)
else:
    SCRAPED = REGISTRY
    ProcessCollector(registry=SCRAPED)
# Of the process serving the debug site (worker 0): these read the interpreter itself.
PlatformCollector(registry=SCRAPED)
GCCollector(registry=SCRAPED)

# go-metrics' defaultDurationBuckets and defaultResponseSizeBuckets (1 KiB * 2^k, 22 buckets).
DURATION_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 25, 60)
SIZE_BUCKETS = tuple(1024.0 * 2 ** k for k in range(22))

HTTP_IN_FLIGHT = Gauge("registry_http_in_flight_requests", "The in-flight HTTP requests",
                       ["handler"], multiprocess_mode="livesum", registry=REGISTRY)
HTTP_REQUESTS = Counter("registry_http_requests_total", "Total number of HTTP requests made.",
                        ["handler", "code", "method"], registry=REGISTRY)
HTTP_DURATION = Histogram("registry_http_request_duration_seconds", "The HTTP request latencies in seconds.",
                          ["handler", "method"], buckets=DURATION_BUCKETS, registry=REGISTRY)
HTTP_REQUEST_SIZE = Histogram("registry_http_request_size_bytes", "The HTTP request sizes in bytes.",
                              ["handler"], buckets=SIZE_BUCKETS, registry=REGISTRY)
HTTP_RESPONSE_SIZE = Histogram("registry_http_response_size_bytes", "The HTTP response sizes in bytes.",
                               ["handler"], buckets=SIZE_BUCKETS, registry=REGISTRY)
# Go's prometheus.DefBuckets, which go-metrics' labeled timers use (prometheus_client's differ).
GO_DEFAULT_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
STORAGE_ACTION = Histogram("registry_storage_action_seconds", "The number of seconds that the storage action takes",
                           ["driver", "action"], buckets=GO_DEFAULT_BUCKETS, registry=REGISTRY)
