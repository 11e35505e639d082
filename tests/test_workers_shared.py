"""``http.workers`` and what is shared across workers: each worker's webhook events reach
the receiver exactly once, from a journal of its own (also after a restart and when the
number of workers is lowered), and worker 0's /metrics counts every worker's requests."""

import json
import os
import signal

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import threads

try:
    from support.daemon import free_port
    from test_daemon_operating import REGISTRY_METRICS, debug_get
    from test_notifications import client, endpoint, notifications, push_image, receivers  # noqa: F401
    from test_workers import _gone, connections_to_each_worker, workers_of
except ImportError:
    from tests.support.daemon import free_port
    from tests.test_daemon_operating import REGISTRY_METRICS, debug_get
    from tests.test_notifications import client, endpoint, notifications, push_image, receivers  # noqa: F401
    from tests.test_workers import _gone, connections_to_each_worker, workers_of

pytestmark = pytest.mark.e2e


def config(tmp_path, receiver, workers, debug_port):
    cfg = notifications(tmp_path, endpoint("hook", receiver.url(), backoff="200ms"))
    cfg["http"] = {"workers": workers, "secret": "shared",
                   "debug": {"addr": f"127.0.0.1:{debug_port}", "prometheus": {"enabled": True}}}
    return cfg


async def both_workers_listening(d):
    def wait():
        for conn in connections_to_each_worker(d, workers_of(d, 2)).values():
            conn.close()
    await threads.deferToThread(wait)


async def push_images(client, d, first, count):
    """*count* one-layer images (3 events each), every request on a fresh connection, which
    SO_REUSEPORT hands to either worker."""
    for i in range(first, first + count):
        await push_image(client, d.url, "spread", f"t{i}", f"image {i}")


def journal_events(root):
    """Every event in every journal segment under *root*; each line must be a whole event."""
    events = []
    for segment in sorted(root.rglob("*.log")):
        data = segment.read_bytes()
        assert data == b"" or data.endswith(b"\n"), segment
        events += [json.loads(line) for line in data.splitlines()]
    return events


def scrape(port):
    status, _, body = debug_get(port, "/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def notification_counts(port):
    samples = scrape(port)["registry_notifications_events"].samples
    return {s.labels["type"]: s.value for s in samples if s.labels["endpoint"] == "hook"}


def assert_exactly_once(receiver, count):
    events = receiver.events()
    assert len(events) == count and len({e["id"] for e in events}) == count, \
        f"{len(events)} deliveries of {len({e['id'] for e in events})} events, expected {count} once each"


@pytest_twisted.ensureDeferred
async def test_events_of_two_workers_are_delivered_exactly_once_also_across_a_restart(
        daemons, receivers, client, tmp_path):  # noqa: F811
    r = receivers().start()
    port = free_port()
    d = await threads.deferToThread(daemons.start, "distregistry", extra_config=config(tmp_path, r, 2, port))
    await both_workers_listening(d)
    await push_images(client, d, 0, 10)
    await r.wait_for(lambda: len(r.unique()) >= 30)
    # Worker 0 sums every worker's notification counters (each publishes its own).
    await r.wait_for(lambda: notification_counts(port).get("Successes") == 30, what="the metrics")
    assert notification_counts(port)["Events"] == 30
    status, _, body = debug_get(port, "/debug/vars")
    metrics = json.loads(body)["registry"]["notifications"]["endpoints"][0]["Metrics"]
    assert (metrics["Events"], metrics["Successes"], metrics["Pending"]) == (30, 30, 0), metrics
    # One registry instance, whichever worker served the request.
    assert len({e["source"]["instanceID"] for e in r.unique()}) == 1

    await threads.deferToThread(d.stop)
    journal = tmp_path / "journal" / "hook"
    # Both journals hold events (delivered ones stay in the last segment): both workers took pushes.
    worker_1 = journal_events(journal / "worker-1")
    assert worker_1 and len(journal_events(journal)) > len(worker_1)
    assert len({e["id"] for e in journal_events(journal)}) == len(journal_events(journal))
    await threads.deferToThread(d.start)
    await both_workers_listening(d)
    await push_images(client, d, 10, 10)
    await r.wait_for(lambda: len(r.unique()) >= 60)
    await r.wait_for(lambda: notification_counts(port).get("Successes") == 30, what="the metrics")
    assert_exactly_once(r, 60)
    tags = [e["target"]["tag"] for e in r.unique() if e["target"].get("tag")]
    assert sorted(tags) == sorted(f"t{i}" for i in range(20))


@pytest_twisted.ensureDeferred
async def test_fewer_workers_deliver_what_the_former_ones_left(daemons, receivers, client, tmp_path):  # noqa: F811
    r = receivers(port=free_port())     # down: the events stay in the journals
    port = free_port()
    # A one-process run's journal is worker 0's when the registry is restarted with two.
    d = await threads.deferToThread(daemons.start, "distregistry", extra_config=config(tmp_path, r, 1, port))
    await push_images(client, d, 0, 2)
    await threads.deferToThread(d.stop)
    d.extra_config = config(tmp_path, r, 2, port)
    await threads.deferToThread(d.start)
    await both_workers_listening(d)
    await push_images(client, d, 2, 10)
    await threads.deferToThread(d.stop)
    journal = tmp_path / "journal" / "hook"
    left = journal_events(journal / "worker-1")
    assert left, "worker 1 journaled none of the pushes"
    assert len(journal_events(journal)) == 36

    d.extra_config = config(tmp_path, r, 1, port)
    await threads.deferToThread(d.start)
    r.start()
    await r.wait_for(lambda: len(r.unique()) >= 36)
    await r.wait_for(lambda: not (journal / "worker-1").exists(), what="worker-1's journal to be removed")
    assert_exactly_once(r, 36)
    # Each worker's events in its journal's order.
    ids = [e["id"] for e in r.events()]
    assert [i for i in ids if i in {e["id"] for e in left}] == [e["id"] for e in left]
    assert "former worker journal" in d.log_text()


@pytest_twisted.ensureDeferred
async def test_no_event_is_lost_when_worker_0_is_killed(daemons, receivers, client, tmp_path):  # noqa: F811
    r = receivers(port=free_port())     # down while the first run takes the pushes
    port = free_port()
    d = await threads.deferToThread(daemons.start, "distregistry", extra_config=config(tmp_path, r, 2, port))
    await both_workers_listening(d)
    pids = workers_of(d, 2)
    worker_1 = [p for p in pids if p != d.pid][0]
    environ = dict(v.split("=", 1) for v in open(f"/proc/{worker_1}/environ").read().split("\0") if "=" in v)
    metrics = environ["PROMETHEUS_MULTIPROC_DIR"]
    await push_images(client, d, 0, 10)
    os.kill(d.pid, signal.SIGKILL)      # worker 1 gets SIGTERM from the kernel and stops on its own
    await threads.deferToThread(d.proc.wait)
    assert os.path.isdir(metrics)
    assert journal_events(tmp_path / "journal" / "hook" / "worker-1"), "worker 1 journaled none of the pushes"
    # Restarted at once: the new worker 1 may have to wait for the old one's journal lock.
    await threads.deferToThread(d.start)
    assert not os.path.exists(metrics), "the killed registry's metrics directory was not removed"
    r.start()
    await r.wait_for(lambda: len(r.unique()) >= 30)
    assert await threads.deferToThread(_gone, [p for p in pids if p != d.pid])
    assert_exactly_once(r, 30)


def test_metrics_count_the_requests_of_every_worker(daemons):
    port = free_port()
    d = daemons.start("distregistry", extra_config={"http": {
        "workers": 2, "secret": "s", "debug": {"addr": f"127.0.0.1:{port}", "prometheus": {"enabled": True}}}})
    conns = connections_to_each_worker(d, workers_of(d, 2))

    def base_requests():
        samples = scrape(port)["registry_http_requests"].samples
        return sum(s.value for s in samples if s.labels["handler"] == "base" and s.name.endswith("_total"))
    before = base_requests()
    for conn in conns.values():
        for _ in range(10):
            conn.request("GET", "/v2/")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
        conn.close()
    assert base_requests() == before + 20
    families = scrape(port)
    # One worker's names, types and labels; gauges are summed over the live workers, not one
    # series per process.
    for name, (kind, labels) in REGISTRY_METRICS.items():
        if name.startswith("registry_http_"):
            assert families[name].type == kind, (name, families[name].type)
            assert all(set(s.labels) - {"le"} == labels for s in families[name].samples), name
    assert [s.labels for s in families["registry_http_in_flight_requests"].samples] == [{"handler": "base"}]
    # process_* are the registry's: memory summed over both processes.
    rss = [int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0]) * 1024 for pid in conns]
    assert 0.8 * sum(rss) < families["process_resident_memory_bytes"].samples[0].value < 1.2 * sum(rss), rss
