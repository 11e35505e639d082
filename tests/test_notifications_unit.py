"""Notifications in process: the sink's retry timing on a task.Clock, the journal on real
files with a real thread pool, the config section, the status views, webhook-echo."""

import json
import os
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.python.threadpool import ThreadPool

from distregistry.config import Config, ConfigError
from distregistry.config.notifications import EndpointConfig
from distregistry.notifications.events import encode_envelope, go_timestamp
from distregistry.notifications.journal import Journal, JournalBusy
from distregistry.notifications.service import former_worker_directories, journal_directory
from distregistry.notifications.sink import EndpointSink
from distregistry.notifications.status import EndpointStatus, NotificationStatus

try:
    from support.daemon import REPO_ROOT, free_port
except ImportError:
    from tests.support.daemon import REPO_ROOT, free_port


def endpoint_config(**overrides):
    values = dict(name="hook", url="http://127.0.0.1:9/", headers={"X-Test": ["a"]}, timeout=1.0, threshold=2,
                  backoff=10.0, ignored_media_types=frozenset(), ignored_actions=frozenset(),
                  media_type="application/vnd.docker.distribution.events.v2+json")
    values.update(overrides)
    return EndpointConfig(**values)


# --- the sink, on a clock ----------------------------------------------------------------------

class _Response:
    def __init__(self, code):
        self.code = code

    def content(self):
        return defer.succeed(b"")


class _Client:
    """Answers POSTs from a script of status codes (or exceptions), noting the clock time."""

    def __init__(self, clock, script):
        self.clock = clock
        self.script = list(script)
        self.posts = []

    def post(self, url, data, headers, allow_redirects):
        self.posts.append((self.clock.seconds(), json.loads(data)["events"][0]["id"], headers))
        outcome = self.script.pop(0) if self.script else 200
        if outcome == "hang":
            return defer.Deferred()
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(_Response(outcome))


class _MemoryJournal:
    """The journal's reader side over a list."""

    def __init__(self, events):
        self.lines = [json.dumps(e).encode() for e in events]
        self.acked = []
        self.pending = len(events)
        self.directory, self.size = "/journal", 123
        self._done = defer.Deferred()

    async def read(self, limit):
        if self.lines:
            batch, self.lines = self.lines[:limit], self.lines[limit:]
            return [(i, line) for i, line in enumerate(batch, start=len(self.acked))]
        await self._done
        return []

    def ack(self, position):
        self.acked.append(position)
        self.pending -= 1


def run_sink(script, events, until_drained=False, **config):
    clock = task.Clock()
    client = _Client(clock, script)
    journal = _MemoryJournal(events)
    status = EndpointStatus(endpoint_config(**config), journal)
    sink = EndpointSink(endpoint_config(**config), journal, status, client, clock, until_drained)
    sink.done = sink.start()
    return clock, client, journal, status, sink


def test_retries_are_immediate_below_threshold_then_wait_backoff_after_each_failure():
    events = [{"id": "e1"}, {"id": "e2"}]
    clock, client, journal, status, sink = run_sink([500, 503, ConnectionRefusedError(), 500, 200, 200], events)
    for _ in range(50):
        clock.advance(1)
    sink.stop()
    # threshold 2: two attempts at once, then one every 10 s after the last failure.
    assert [(t, i) for t, i, _ in client.posts] == [(0, "e1"), (0, "e1"), (10, "e1"), (20, "e1"), (30, "e1"),
                                                     (30, "e2")]
    assert journal.acked == [0, 1]
    assert client.posts[0][2] == {"Content-Type": ["application/vnd.docker.distribution.events.v2+json"],
                                  "X-Test": ["a"]}
    assert (status.successes, status.failures, status.errors) == (2, 3, 1)
    assert dict(status.statuses) == {"500 Internal Server Error": 2, "503 Service Unavailable": 1, "200 OK": 2}
    assert status.last_error == "response status 500 Internal Server Error unaccepted"


def test_a_success_resets_the_breaker_and_timeouts_count_as_errors():
    events = [{"id": "e1"}, {"id": "e2"}]
    clock, client, journal, status, sink = run_sink(["hang", "hang", 200, 500, 200], events, threshold=2,
                                                    backoff=5.0, timeout=3.0)
    for _ in range(40):
        clock.advance(0.5)
    sink.stop()
    # Two timeouts (3 s each, the second right after the first), the backoff counts from the
    # last failure; after the success e2's first failure is again retried at once.
    assert [(t, i) for t, i, _ in client.posts] == [(0, "e1"), (3, "e1"), (11, "e1"), (11, "e2"), (11, "e2")]
    assert status.errors == 2 and status.failures == 1 and status.last_error.startswith("response status 500")
    assert journal.acked == [0, 1]


def test_a_timeout_is_an_error_and_stop_leaves_the_event_unacknowledged():
    clock, client, journal, status, sink = run_sink(["hang", "hang"], [{"id": "e1"}], timeout=3.0)
    clock.advance(3)
    assert status.errors == 1 and status.last_error == "no response within 3.0s"
    sink.stop()
    assert journal.acked == [] and clock.getDelayedCalls() == []


def test_a_sink_until_drained_ends_once_the_journal_has_nothing_pending():
    clock, client, journal, status, sink = run_sink([500, 200, 200], [{"id": "e1"}, {"id": "e2"}],
                                                    until_drained=True, threshold=1)
    assert not sink.done.called
    clock.advance(10)
    assert sink.done.called and journal.acked == [0, 1] and status.successes == 2
    _, client, _, _, sink = run_sink([], [], until_drained=True)
    assert sink.done.called and client.posts == []


# --- the journal, on disk ---------------------------------------------------------------------

@pytest.fixture
def pool():
    p = ThreadPool(minthreads=1, maxthreads=3, name="test-journal")
    p.start()
    yield p
    p.stop()


def open_journal(directory, pool, maxsize=1 << 30):
    j = Journal(str(directory), maxsize, pool, reactor)
    j.open()
    return j


async def drain(journal, n):
    out = []
    while len(out) < n:
        for position, line in await journal.read(n - len(out)):
            out.append(line)
            journal.ack(position)
    return out


@pytest_twisted.ensureDeferred
async def test_journal_appends_are_durable_and_delivery_resumes_after_the_cursor(tmp_path, pool):
    j = open_journal(tmp_path, pool)
    await defer.gatherResults([j.append(b'{"n":%d}' % i) for i in range(10)])
    assert j.pending == 10
    assert await drain(j, 4) == [b'{"n":%d}' % i for i in range(4)]
    await j.close()

    again = open_journal(tmp_path, pool)
    assert again.pending == 6
    assert await drain(again, 6) == [b'{"n":%d}' % i for i in range(4, 10)]
    await again.close()
    assert open_journal(tmp_path, pool).pending == 0


@pytest_twisted.ensureDeferred
async def test_journal_recovery_cuts_a_torn_last_event_and_survives_a_bad_cursor(tmp_path, pool):
    j = open_journal(tmp_path, pool)
    await defer.gatherResults([j.append(b'{"n":1}'), j.append(b'{"n":2}')])
    await j.close()
    segment = next(tmp_path.glob("*.log"))
    with open(segment, "ab") as f:
        f.write(b'{"n":3, "cut sh')           # a crash in the middle of a write
    (tmp_path / "cursor").write_bytes(b"garbage")
    again = open_journal(tmp_path, pool)
    assert again.pending == 2
    await again.append(b'{"n":4}')
    assert await drain(again, 3) == [b'{"n":1}', b'{"n":2}', b'{"n":4}']
    await again.close()


@pytest_twisted.ensureDeferred
async def test_journal_over_its_bound_drops_the_oldest_segment_and_counts_it(tmp_path, pool):
    maxsize = 1 << 20                          # segments of 128 KiB
    j = open_journal(tmp_path, pool, maxsize)
    dropped = []
    j.on_drop = dropped.append
    line = b'{"pad":"' + b"x" * 1000 + b'"}'
    for i in range(1200):                      # ~1.2 MiB
        await j.append(line)
    assert j.size <= maxsize
    assert sum(dropped) > 0 and j.pending == 1200 - sum(dropped)
    assert len(list(tmp_path.glob("*.log"))) == len(j._segments)
    got = await drain(j, j.pending)
    assert len(got) == 1200 - sum(dropped)
    await j.close()
    # Delivered segments are deleted, the tail stays for appends.
    assert len(list(tmp_path.glob("*.log"))) == 1


@pytest_twisted.ensureDeferred
async def test_a_failed_write_fails_its_appends_and_leaves_the_journal_consistent(tmp_path, pool, monkeypatch):
    j = open_journal(tmp_path, pool)
    await j.append(b'{"n":1}')
    real = os.fsync

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        await j.append(b'{"n":2}')
    monkeypatch.setattr(os, "fsync", real)
    await j.append(b'{"n":3}')
    assert j.pending == 2
    assert await drain(j, 2) == [b'{"n":1}', b'{"n":3}']
    await j.close()


@pytest_twisted.ensureDeferred
async def test_journal_group_commits_concurrent_appends(tmp_path, pool, monkeypatch):
    j = open_journal(tmp_path, pool)
    fsyncs = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real(fd)))
    await defer.gatherResults([j.append(b"{}") for _ in range(200)])
    assert j.pending == 200 and len(fsyncs) <= 4     # one write for the first, one for the rest
    await j.close()


@pytest_twisted.ensureDeferred
async def test_a_journal_is_used_by_one_process_at_a_time(tmp_path, pool):
    j = open_journal(tmp_path, pool)
    await j.append(b'{"n":1}')
    # flock is per open file: a second Journal in this process stands for another process.
    other = Journal(str(tmp_path), 1 << 30, pool, reactor)
    with pytest.raises(JournalBusy, match=f"in use by process {os.getpid()}"):
        other.open()
    t0 = time.monotonic()
    with pytest.raises(JournalBusy):
        other.open(lock_timeout=0.3)
    assert time.monotonic() - t0 >= 0.3
    await j.close()
    other.open()
    assert other.pending == 1
    await other.close()


def test_worker_journal_layout(tmp_path):
    root = str(tmp_path)
    # Worker 0's is the endpoint's directory: a one-process run's journal stays where it was.
    assert journal_directory(root, 0) == root
    assert journal_directory(root, 3) == os.path.join(root, "worker-3")
    for name in ("worker-1", "worker-2", "worker-10", "worker-0", "worker-01", "workers"):
        (tmp_path / name).mkdir()
    (tmp_path / "worker-3").write_text("not a directory")
    assert former_worker_directories(root, 2) == [os.path.join(root, n) for n in ("worker-10", "worker-2")]
    assert former_worker_directories(root, 1) == [os.path.join(root, n) for n in ("worker-1", "worker-10",
                                                                                  "worker-2")]


# --- events ---------------------------------------------------------------------------------------

def test_envelope_is_go_json_marshal_indent_with_html_escapes():
    body = encode_envelope({"id": "x", "request": {"useragent": "a<b>&c"}})
    assert body == (b'{\n   "events": [\n      {\n         "id": "x",\n         "request": {\n'
                    b'            "useragent": "a\\u003cb\\u003e\\u0026c"\n         }\n      }\n   ]\n}')


def test_timestamps_are_rfc3339_nano_trimmed(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert go_timestamp(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
        assert go_timestamp(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert go_timestamp(1_700_000_000_000_000_001) == "2023-11-15T03:43:20.000000001+05:30"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_bridge_names_the_authenticated_actor_and_the_request():
    from twisted.web.test.requesthelper import DummyRequest

    from distregistry.api.urls import URLBuilder
    from distregistry.descriptor import Descriptor
    from distregistry.notifications.events import Bridge
    from distregistry.registry.blobs import BLOB_MEDIA_TYPE

    written = []

    class Sink:
        endpoints = ["one"]

        def write(self, event):
            written.append(event)
            return defer.succeed(None)

    request = DummyRequest([b"v2"])
    request.method = b"GET"
    request.requestHeaders.setRawHeaders(b"host", [b"registry.example:5000"])
    request.requestHeaders.setRawHeaders(b"x-real-ip", [b"198.51.100.2"])
    request.requestHeaders.setRawHeaders(b"x-forwarded-for", [b"not-an-ip"])
    request.registry_user = "alice"
    bridge = Bridge(Sink(), request, URLBuilder(host="https://registry.example"), {"addr": "h:5000", "instanceID": "i"}, False)
    bridge.blob_pulled("r", Descriptor(BLOB_MEDIA_TYPE, "sha256:" + "a" * 64, 3))
    bridge.tag_deleted("r", "t")
    first, second = written
    assert first["actor"] == {"name": "alice"}
    assert first["request"] == {"id": first["request"]["id"], "addr": "198.51.100.2", "host": "registry.example:5000",
                                "method": "GET", "useragent": ""}
    assert second["request"]["id"] == first["request"]["id"] and second["id"] != first["id"]
    assert first["target"]["url"] == "https://registry.example/v2/r/blobs/sha256:" + "a" * 64


def test_source_is_the_host_name_with_the_port_of_http_addr():
    import socket

    from distregistry.notifications.events import source_record

    host = socket.gethostname()
    assert source_record(":5000", "i") == {"addr": f"{host}:5000", "instanceID": "i"}
    assert source_record("[::1]:5001", "i")["addr"] == f"{host}:5001"
    assert source_record("/run/registry.sock", "i")["addr"] == host


# --- config ---------------------------------------------------------------------------------------

def parse(notifications, env=None):
    return Config.parse({"version": "0.1", "storage": "inmemory", "notifications": notifications},
                        "config.yml", env or {})


def test_endpoint_defaults_and_keys_as_registry2_reads_them():
    cfg = parse({"endpoints": [
        {"name": "a", "url": "https://hooks.example/x", "timeout": 0, "threshold": -1, "headers": {"x-auth": "t"},
         "ignoredmediatypes": ["m1"], "ignore": {"mediatypes": ["m2"], "actions": ["pull"]}},
        {"name": "off", "disabled": True},
    ]}).notifications
    (a,) = cfg.endpoints
    assert (a.timeout, a.threshold, a.backoff) == (1.0, 10, 1.0)
    assert a.headers == {"X-Auth": ["t"]} and a.ignored_media_types == {"m1", "m2"}
    assert a.ignored_actions == {"pull"} and a.media_type.endswith("events.v2+json")
    assert cfg.include_references is False and cfg.journal_directory == "/var/lib/distregistry/notifications"


def test_environment_overrides_reach_list_items():
    cfg = parse({"endpoints": [{"name": "a", "url": "http://x/"}]},
                {"REGISTRY_NOTIFICATIONS_ENDPOINTS_0_BACKOFF": "3s",
                 "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_ENVELOPE": "v1"}).notifications
    assert cfg.endpoints[0].backoff == 3.0 and cfg.endpoints[0].media_type.endswith("events.v1+json")


@pytest.mark.parametrize("endpoints, message", [
    ([{"name": "a"}], "notifications.endpoints.0.url: expected an http(s) URL, got ''"),
    ([{"name": "a", "url": "ftp://x"}], "notifications.endpoints.0.url: expected an http(s) URL, got 'ftp://x'"),
    ([{"url": "http://x/"}], "notifications.endpoints.0.name: expected a name without '/', got ''"),
    ([{"name": "a", "url": "http://x/"}, {"name": "a", "url": "http://y/"}],
     "notifications.endpoints.1.name: duplicate endpoint name 'a' (also notifications.endpoints.0)"),
    ([{"name": "a", "url": "http://x/", "backoff": "soon"}],
     "notifications.endpoints.0.backoff: expected a duration such as \"168h\", got 'soon'"),
    ([{"name": "a", "url": "http://x/", "envelope": "v3"}],
     "notifications.endpoints.0.envelope: expected one of v2, v1, got 'v3'"),
])
def test_endpoint_errors_name_the_key(endpoints, message):
    with pytest.raises(ConfigError) as info:
        parse({"endpoints": endpoints})
    assert str(info.value) == "config.yml: " + message


def test_unknown_action_is_warned_about():
    cfg = parse({"endpoints": [{"name": "a", "url": "http://x/", "ignore": {"actions": ["pul"]}}]})
    assert cfg.warnings == ["config.yml: notifications.endpoints.0.ignore.actions.0: unknown action 'pul'; "
                            "actions are pull, push, delete, mount"]


# --- status ---------------------------------------------------------------------------------------

def test_status_reads_as_registry2_metrics_and_debug_vars():
    journal = _MemoryJournal([{"id": "a"}])
    s = EndpointStatus(endpoint_config(), journal)
    s.events = 3
    s.success(200)
    s.failure(500)
    s.error("connection refused")
    s.drop(2)
    status = NotificationStatus([s])
    families = {name: (kind, samples) for name, kind, _, samples in status.metric_families()}
    assert families["registry_notifications_pending_total"] == ("gauge", [({"endpoint": "hook"}, 1)])
    kind, samples = families["registry_notifications_events_total"]
    assert kind == "counter" and {labels["type"]: v for labels, v in samples} == {
        "Events": 3, "Successes": 1, "Failures": 1, "Errors": 1, "Dropped": 2}
    assert families["registry_notifications_status_total"][1] == [
        ({"code": "200 OK", "endpoint": "hook"}, 1), ({"code": "500 Internal Server Error", "endpoint": "hook"}, 1)]
    (view,) = status.debug_vars()["endpoints"]
    assert view["Metrics"] == {"Pending": 1, "Events": 3, "Successes": 1, "Failures": 1, "Errors": 1,
                               "Dropped": 2, "Statuses": {"200 OK": 1, "500 Internal Server Error": 1}}
    assert view["Headers"] == {"X-Test": ["<redacted>"]} and view["Timeout"] == 1_000_000_000
    assert view["LastError"] == "connection refused" and view["LastSuccess"].endswith("Z")


# --- webhook-echo ---------------------------------------------------------------------------------

def test_webhook_echo_prints_each_event_as_a_line(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "distregistry", "webhook-echo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert "listening on http://127.0.0.1:%d/" % port in proc.stderr.readline()
        body = encode_envelope({"id": "e1", "action": "push"})
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@-",
                              f"http://127.0.0.1:{port}/"], input=body, capture_output=True, timeout=20)
        assert out.stdout == b"200"
        assert json.loads(proc.stdout.readline()) == {"id": "e1", "action": "push"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest_twisted.ensureDeferred
async def test_status_resource_serves_the_debug_vars_json():
    from treq.client import HTTPClient
    from twisted.web import server
    from twisted.web.client import Agent, HTTPConnectionPool

    from distregistry.notifications.status import StatusResource

    s = EndpointStatus(endpoint_config(), _MemoryJournal([]))
    s.success(202)
    site = server.Site(StatusResource(NotificationStatus([s])))
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        response = await HTTPClient(Agent(reactor, pool=pool)).get(f"http://127.0.0.1:{port.getHost().port}/")
        body = json.loads(await response.content())
    finally:
        await pool.closeCachedConnections()
        await defer.maybeDeferred(port.stopListening)
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    (view,) = body["registry"]["notifications"]["endpoints"]
    assert view["name"] == "hook" and view["Metrics"]["Statuses"] == {"202 Accepted": 1}
