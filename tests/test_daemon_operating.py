"""Operating distregistry as a process: the debug site's /metrics scraped during a skopeo
push and pull (parsed with prometheus_client's parser), /debug/health and the API's 503 while
the storage root is broken, SIGHUP switching read-only mode, upload purging (dry run, then
for real, keeping new and in-progress uploads), and an upload cut off by SIGTERM resumed
after the restart.

Every daemon is started by the harness (tests/support/daemon.py) and stopped by PID; every
port is on 127.0.0.1. Timing assertions only have lower bounds that load cannot break
(a LoopingCall under load is late, never early) and generous upper bounds."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

try:
    from support.daemon import free_port
except ImportError:  # tests is a package
    from tests.support.daemon import free_port

pytestmark = pytest.mark.e2e

MiB = 1 << 20
V2 = Path("docker/registry/v2")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_for(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def debug_get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        conn.close()


def debug_config(port: int, **health) -> dict:
    cfg = {"http": {"secret": "operating-tests", "debug": {"addr": f"127.0.0.1:{port}",
                                                           "prometheus": {"enabled": True}}}}
    if health:
        cfg["health"] = health
    return cfg


def rewrite_config(d, change) -> None:
    """Edit the running daemon's config file as an operator would (before a SIGHUP)."""
    cfg = yaml.safe_load(d.config_path.read_text())
    change(cfg)
    d.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def sighup(d, count_before: int) -> str:
    """SIGHUP and wait until that reload's outcome is logged; the log from the reload on."""
    d.proc.send_signal(signal.SIGHUP)
    marks = ("configuration reloaded", "configuration unchanged", "configuration reload failed")
    wait_for(lambda: sum(d.log_text().count(m) for m in marks) > count_before, 15, "the reload to finish")
    return d.log_text()


def reloads(d) -> int:
    text = d.log_text()
    return sum(text.count(m) for m in ("configuration reloaded", "configuration unchanged",
                                       "configuration reload failed"))


class Streamer(threading.Thread):
    """One request whose body of *data* is sent in *piece*-byte parts with *pause* seconds
    after each; ``sent`` counts the bytes handed to the socket."""

    def __init__(self, d, method: str, url: str, data: bytes, headers=None, piece=128 << 10, pause=0.05):
        super().__init__(daemon=True)
        self.d, self.method, self.url, self.data = d, method, url, data
        self.headers = {"Content-Length": str(len(data)), "Content-Type": "application/octet-stream",
                        **(headers or {})}
        self.piece, self.pause = piece, pause
        self.sent = 0
        self.response = None
        self.error: Exception | None = None

    def _body(self):
        for i in range(0, len(self.data), self.piece):
            yield self.data[i:i + self.piece]
            self.sent += len(self.data[i:i + self.piece])
            time.sleep(self.pause)

    def run(self):
        try:
            self.response = self.d.request(self.method, self.url, body=self._body(), headers=self.headers,
                                           timeout=60)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc


# ---------------------------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------------------------
# family name (as prometheus_client's parser names it) -> (type, label names but "le")
REGISTRY_METRICS = {
    "registry_http_in_flight_requests": ("gauge", {"handler"}),
    "registry_http_requests": ("counter", {"handler", "code", "method"}),
    "registry_http_request_duration_seconds": ("histogram", {"handler", "method"}),
    "registry_http_request_size_bytes": ("histogram", {"handler"}),
    "registry_http_response_size_bytes": ("histogram", {"handler"}),
    "registry_storage_action_seconds": ("histogram", {"driver", "action"}),
}


class Scraper(threading.Thread):
    """Scrapes /metrics until stopped, parsing every answer; keeps the highest in-flight
    gauge seen and any error."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stopped = threading.Event()
        self.scrapes = 0
        self.max_in_flight = 0.0
        self.errors: list[str] = []

    def run(self):
        while not self.stopped.is_set():
            try:
                status, _, body = debug_get(self.port, "/metrics")
                assert status == 200, status
                for family in text_string_to_metric_families(body.decode()):
                    if family.name == "registry_http_in_flight_requests":
                        self.max_in_flight = max([self.max_in_flight] + [s.value for s in family.samples])
                self.scrapes += 1
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
            time.sleep(0.05)


def test_metrics_during_skopeo_push_and_pull(daemons, skopeo, e2e_images, tmp_path):
    port = free_port()
    cfg = debug_config(port)
    # The blob-descriptor cache and a notification endpoint (nothing listens on it: its events
    # stay pending) feed their metrics too.
    cfg["storage"] = {"cache": {"blobdescriptor": "inmemory"}}
    cfg["notifications"] = {"endpoints": [{"name": "nowhere", "url": f"http://127.0.0.1:{free_port()}/events",
                                           "backoff": "10s"}],
                            "journal": {"rootdirectory": str(tmp_path / "journal")}}
    d = daemons.start("distregistry", extra_config=cfg)
    scraper = Scraper(port)
    scraper.start()
    try:
        skopeo.copy(e2e_images.big.ref, d.docker_ref("metrics/big", "v1"))
        skopeo.copy(d.docker_ref("metrics/big", "v1"), f"oci:{tmp_path / 'pulled'}:v1")
        assert d.request("DELETE", "/v2/_catalog").status == 405   # counted under "catalog"
    finally:
        scraper.stopped.set()
        scraper.join(10)
    assert scraper.errors == [] and scraper.scrapes > 0, scraper.errors[:3]
    # Blob uploads stream for a while: some scrape saw one in flight.
    assert scraper.max_in_flight >= 1, "no scrape saw a request in flight during the push"

    status, content_type, body = debug_get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), content_type
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name, (kind, labels) in REGISTRY_METRICS.items():
        family = families.get(name)
        assert family is not None, f"{name} missing"
        assert family.type == kind, (name, family.type)
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
        if kind != "gauge":
            assert any(s.value > 0 for s in family.samples), f"{name}: no non-zero sample"

    def values(name, label, suffix="_total"):
        return {s.labels[label] for s in families[name].samples if s.name == name + suffix and s.value > 0}

    requests = [s for s in families["registry_http_requests"].samples if s.value > 0]
    handlers = {s.labels["handler"] for s in requests}
    assert {"base", "blob", "blob_upload", "blob_upload_chunk", "manifest"} <= handlers, handlers
    assert {"get", "head", "post", "put"} <= {s.labels["method"] for s in requests}, requests
    assert {"200", "201", "202"} <= {s.labels["code"] for s in requests}, requests
    assert {(s.labels["handler"], s.labels["code"], s.labels["method"]) for s in requests} >= {("catalog", "405", "delete")}
    actions = values("registry_storage_action_seconds", "action", "_count")
    assert {"GetContent", "PutContent", "Stat", "Move"} <= actions, actions
    assert {s.labels["driver"] for s in families["registry_storage_action_seconds"].samples} == {"filesystem"}
    # The pull read the 40 MiB layer: the response-size histogram has it above 32 MiB.
    big = [s for s in families["registry_http_response_size_bytes"].samples
           if s.name.endswith("_bucket") and s.labels["handler"] == "blob" and s.labels["le"] == "3.3554432e+07"]
    total = [s for s in families["registry_http_response_size_bytes"].samples
             if s.name.endswith("_count") and s.labels["handler"] == "blob"]
    assert big and total and total[0].value > big[0].value, (big, total)
    cache = {f.name: f.samples[0].value for f in families.values() if f.name.startswith("registry_storage_cache_")}
    assert cache.keys() == {"registry_storage_cache_requests", "registry_storage_cache_hits",
                            "registry_storage_cache_errors"}, cache
    assert cache["registry_storage_cache_requests"] > 0 and cache["registry_storage_cache_hits"] > 0, cache
    events = {s.labels["type"]: s.value for s in families["registry_notifications_events"].samples
              if s.labels["endpoint"] == "nowhere"}
    assert events["Events"] > 0, events
    assert families["registry_notifications_pending_total"].samples[0].value > 0
    status, content_type, body = debug_get(port, "/debug/vars")
    assert status == 200 and json.loads(body)["registry"]["notifications"]["endpoints"][0]["name"] == "nowhere"
    # Process metrics come with it, as from registry:2's default registry.
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    # The debug site is not the API: no health gate, no API routes.
    assert debug_get(port, "/v2/")[0] == 404
    assert debug_get(port, "/debug/health")[:2] == (200, "application/json")


# ---------------------------------------------------------------------------------------------
# health
# ---------------------------------------------------------------------------------------------
def test_storage_driver_failure_turns_health_and_api_503_then_recovers(daemons):
    port = free_port()
    interval, threshold = 0.5, 3
    d = daemons.start("distregistry", extra_config=debug_config(
        port, storagedriver={"enabled": True, "interval": f"{interval}s", "threshold": threshold}))
    assert debug_get(port, "/debug/health")[::2] == (200, b"{}")
    assert d.request("POST", "/v2/health/x/blobs/uploads/").status == 202

    # The root replaced by a file: every write would fail.
    shutil.rmtree(d.root)
    d.root.write_text("not a directory")
    t0 = time.monotonic()
    wait_for(lambda: debug_get(port, "/debug/health")[0] == 503, 15, "/debug/health to turn 503")
    elapsed = time.monotonic() - t0
    # threshold consecutive failed polls: the first comes at most one interval after the break.
    assert elapsed > (threshold - 1) * interval, f"unhealthy after {elapsed:.2f}s, before {threshold} polls"
    status, content_type, body = debug_get(port, "/debug/health")
    assert content_type == "application/json"
    assert yaml.safe_load(body) == {"storagedriver_filesystem": "filesystem: the storage root is not a directory"}
    for method, path in [("GET", "/v2/"), ("GET", "/"), ("POST", "/v2/health/x/blobs/uploads/"),
                         ("GET", "/v2/_catalog")]:
        r = d.request(method, path)
        assert r.status == 503, (method, path, r.status)
        assert r.json() == {"errors": [{"code": "UNAVAILABLE", "message": "service unavailable",
                                        "detail": "health check failed: please see /debug/health"}]}
        assert r.header("Docker-Distribution-API-Version") is None
    assert "health check storagedriver_filesystem failed" in d.log_text()

    d.root.unlink()
    d.root.mkdir()
    wait_for(lambda: debug_get(port, "/debug/health")[0] == 200, 15, "/debug/health to recover")
    assert d.request("GET", "/v2/").status == 200
    assert d.request("POST", "/v2/health/x/blobs/uploads/").status == 202
    assert "health check storagedriver_filesystem passes again" in d.log_text()


def test_file_check_and_sighup_removing_it(daemons, tmp_path):
    """health.file fails while the file exists; a SIGHUP that drops the check makes the
    registry healthy at once."""
    port = free_port()
    down = tmp_path / "down"
    down.touch()
    # The harness waits for /v2/ 200; the check starts healthy and fails from its first poll.
    d = daemons.start("distregistry", extra_config=debug_config(port, file=[{"file": str(down),
                                                                             "interval": "200ms"}]))
    wait_for(lambda: d.request("GET", "/v2/").status == 503, 10, "the file check to fail")
    assert yaml.safe_load(debug_get(port, "/debug/health")[2]) == {str(down): "file exists"}
    before = reloads(d)
    rewrite_config(d, lambda cfg: cfg.pop("health"))
    log = sighup(d, before)
    assert "configuration reloaded: applied health.file" in log, log[-2000:]
    assert d.request("GET", "/v2/").status == 200
    assert debug_get(port, "/debug/health")[::2] == (200, b"{}")


# ---------------------------------------------------------------------------------------------
# SIGHUP
# ---------------------------------------------------------------------------------------------
def test_sighup_switches_readonly_without_restart(daemons):
    d = daemons.start("distregistry", extra_config={"http": {"secret": "operating-tests"}})
    pid = d.pid
    blob = b"pushed before read-only"
    r = d.request("POST", f"/v2/ro/x/blobs/uploads/?digest={sha256(blob)}", body=blob,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, (r.status, r.body)

    def readonly(on):
        def change(cfg):
            cfg["storage"].setdefault("maintenance", {})["readonly"] = {"enabled": on}
        return change

    before = reloads(d)
    rewrite_config(d, lambda cfg: (readonly(True)(cfg), cfg["http"].update(prefix="/elsewhere/"),
                                   cfg["log"].update(level="debug")))
    log = sighup(d, before)
    assert "configuration reloaded: applied log.level, storage.readonly" in log, log[-2000:]
    assert "configuration change of http.prefix needs a restart" in log
    r = d.request("POST", "/v2/ro/x/blobs/uploads/")
    assert r.status == 405 and r.header("Allow") == "GET, HEAD", (r.status, r.body)
    assert d.request("PUT", "/v2/ro/x/manifests/v1", body=b"{}").status == 405
    r = d.request("GET", f"/v2/ro/x/blobs/{sha256(blob)}")
    assert (r.status, r.body) == (200, blob)
    assert d.request("GET", "/v2/").status == 200            # the prefix did not change

    before = reloads(d)
    rewrite_config(d, readonly(False))
    log = sighup(d, before)
    assert d.request("POST", "/v2/ro/x/blobs/uploads/").status == 202
    # A broken file keeps the running configuration.
    before = reloads(d)
    d.config_path.write_text("version: 0.1\nstorage: {filesystem: {maxthreads: many}}\n")
    log = sighup(d, before)
    assert "configuration reload failed, keeping the running configuration" in log
    assert "storage.filesystem.maxthreads" in log
    assert d.request("POST", "/v2/ro/x/blobs/uploads/").status == 202

    # log.level error: the info line of a started upload is no longer written.
    def upload_logged():
        r = d.request("POST", "/v2/ro/x/blobs/uploads/")
        assert r.status == 202
        uuid = r.header("Docker-Upload-UUID")
        time.sleep(0.3)
        return f"upload {uuid} started" in d.log_text()

    assert upload_logged()
    d.config_path.write_text(yaml.safe_dump({**d.config, "log": {"level": "error"}}, sort_keys=False))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not upload_logged(), 15, "info lines to stop after log.level: error")
    assert d.pid == pid and d.running


# ---------------------------------------------------------------------------------------------
# SIGTERM: an upload cut off by the end of the drain can be resumed
# ---------------------------------------------------------------------------------------------
def test_upload_cut_off_by_sigterm_is_resumable_after_restart(daemons):
    d = daemons.start("distregistry", extra_config={"http": {"secret": "operating-tests", "draintimeout": "1s"}})
    data = os.urandom(12 * MiB)
    r = d.request("POST", "/v2/resume/x/blobs/uploads/")
    assert r.status == 202
    # ~2.5 MiB/s: far longer than the 1 s drain.
    patch = Streamer(d, "PATCH", r.header("Location"), data, pause=0.05)
    patch.start()
    wait_for(lambda: patch.sent >= 3 * MiB, 20, "3 MiB to be sent")
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(20)
    patch.join(20)
    assert patch.response is None or patch.response.status != 202, "the PATCH finished: nothing to resume"
    assert "draining 1 in-flight requests" in d.log_text()

    d.start()   # same root, port and secret
    status = d.request("GET", r.header("Location"))
    assert status.status == 204, (status.status, status.body)
    stored = int(status.header("Range").split("-")[1]) + 1
    assert 0 < stored < len(data), stored
    rest = d.request("PATCH", status.header("Location"), body=data[stored:], headers={
        "Content-Type": "application/octet-stream", "Content-Range": f"{stored}-{len(data) - 1}"})
    assert rest.status == 202, (rest.status, rest.body)
    sep = "&" if "?" in rest.header("Location") else "?"
    done = d.request("PUT", f"{rest.header('Location')}{sep}digest={sha256(data)}")
    assert done.status == 201, (done.status, done.body)
    got = d.request("GET", f"/v2/resume/x/blobs/{sha256(data)}")
    assert got.status == 200 and got.body == data


# ---------------------------------------------------------------------------------------------
# upload purging
# ---------------------------------------------------------------------------------------------
def _upload_dir(root: Path, repo: str, uuid: str) -> Path:
    return root / V2 / "repositories" / repo / "_uploads" / uuid


def _backdate(upload: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    (upload / "startedat").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)))
    if (upload / "data").exists():   # no data file before the first byte (as registry:2)
        os.utime(upload / "data", (when, when))


def _finished_runs(d, delete: bool) -> int:
    # One "starting" line per run; count the runs of one kind that also finished.
    text = d.log_text()
    kind = "true" if delete else "false"
    starts = [m.end() for m in re.finditer(rf"PurgeUploads starting: olderThan=[^,]*, actuallyDelete={kind}", text)]
    return sum(1 for s in starts if "Purge uploads finished." in text[s:])


def test_upload_purging_dry_run_then_for_real(daemons):
    """age 1h, interval 1s: an upload started 2h ago is removed; one started now and one
    started 2h ago but still receiving its body are kept; the dry run removes nothing and
    says what it would remove; SIGHUP turns the dry run off."""
    purging = {"enabled": True, "age": "1h", "interval": "1s", "dryrun": True}
    d = daemons.start("distregistry", extra_config={
        "http": {"secret": "operating-tests"},
        "storage": {"maintenance": {"uploadpurging": purging}}})

    def start(repo):
        r = d.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202
        return r.header("Location"), _upload_dir(d.root, repo, r.header("Docker-Upload-UUID"))

    _, old = start("purge/old")
    _, new = start("purge/new")
    busy_url, busy = start("purge/busy")
    _backdate(old, 2 * 3600)
    _backdate(busy, 2 * 3600)
    data = os.urandom(10 * MiB)
    # ~1.3 MiB/s for ~8 s: in flight through the dry run and the real one.
    stream = Streamer(d, "PATCH", busy_url, data, piece=64 << 10, pause=0.05)
    stream.start()
    wait_for(lambda: (busy / "data").exists() and (busy / "data").stat().st_size > 0, 10, "the busy upload's first bytes to be stored")

    dry = _finished_runs(d, delete=False)
    wait_for(lambda: _finished_runs(d, delete=False) >= dry + 2, 15, "two dry runs")
    assert old.is_dir() and new.is_dir() and busy.is_dir()
    log = d.log_text()
    assert f"Upload files in /{V2}/repositories/purge/old/_uploads/{old.name} have older date" in log
    assert "Dry run: not removing the upload directory." in log

    before = reloads(d)
    rewrite_config(d, lambda cfg: cfg["storage"]["maintenance"]["uploadpurging"].update(dryrun=False))
    assert "applied storage.uploadpurging.dryrun" in sighup(d, before)
    wait_for(lambda: _finished_runs(d, delete=True) >= 2, 15, "two purge runs")
    assert stream.is_alive(), "the busy upload finished too early to prove it is kept while in progress"
    assert not old.exists()
    assert new.is_dir() and busy.is_dir()
    log = d.log_text()
    assert "Num deleted=1, num errors=0" in log
    assert f"/{V2}/repositories/purge/busy/_uploads/{busy.name} have older date" in log
    assert "in progress, kept." in log

    stream.join(30)
    assert stream.error is None and stream.response.status == 202, (stream.error, stream.response)
    sep = "&" if "?" in stream.response.header("Location") else "?"
    done = d.request("PUT", f"{stream.response.header('Location')}{sep}digest={sha256(data)}")
    assert done.status == 201, (done.status, done.body)
