"""Notifications end to end: the daemon as a process, a real webhook receiver in the test
process (tests/support/webhook.py), pushes and pulls over the wire with treq."""

import hashlib
import json
import os
import re
import signal
import statistics
import time
import uuid

import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet import defer, reactor, threads
from twisted.web.client import Agent, HTTPConnectionPool

try:
    from support.daemon import free_port
    from support.webhook import Receiver, sleep
except ImportError:
    from tests.support.daemon import free_port
    from tests.support.webhook import Receiver, sleep

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
V2 = "application/vnd.docker.distribution.events.v2+json"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def client():
    pool = HTTPConnectionPool(reactor, persistent=False)
    yield HTTPClient(Agent(reactor, pool=pool))
    pytest_twisted.blockon(pool.closeCachedConnections())


@pytest.fixture
def receivers():
    started = []

    def make(**kwargs):
        r = Receiver(**kwargs)
        started.append(r)
        return r
    yield make
    for r in started:
        pytest_twisted.blockon(defer.ensureDeferred(r.stop()))


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def call(client, method, url, body=None, headers=None, expect=None):
    headers = {"User-Agent": ["distregistry-tests"], **(headers or {})}
    response = await client.request(method, url, data=body, headers=headers)
    content = await response.content()
    if expect is not None:
        assert response.code == expect, (method, url, response.code, content)
    return response, content


async def push_blob(client, base, repo, data):
    await call(client, "POST", f"{base}/v2/{repo}/blobs/uploads/?digest={digest(data)}", data, expect=201)
    return {"mediaType": OCI_LAYER, "digest": digest(data), "size": len(data)}


async def push_image(client, base, repo, tag, seed):
    """A one-layer OCI image; returns (manifest bytes, config descriptor, layer descriptor)."""
    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    config = dict(await push_blob(client, base, repo, config_bytes), mediaType=OCI_CONFIG)
    layer = await push_blob(client, base, repo, f"layer {seed}".encode())
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                           "layers": [layer]}).encode()
    await call(client, "PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest,
               {"Content-Type": [OCI_MANIFEST]}, expect=201)
    return manifest, config, layer


def endpoint(name, url, **extra):
    return {"name": name, "url": url, "timeout": "2s", "threshold": 3, "backoff": "500ms", **extra}


def notifications(tmp_path, *endpoints, **extra):
    return {"notifications": {"journal": {"rootdirectory": str(tmp_path / "journal")},
                              "endpoints": list(endpoints), **extra}}


async def start(daemons, config, name=None):
    return await threads.deferToThread(daemons.start, "distregistry", extra_config=config, name=name)


def check_schema(event):
    """Every event: registry:2's envelope entry (notifications/event.go)."""
    assert list(event) == ["id", "timestamp", "action", "target", "request", "actor", "source"]
    assert UUID.match(event["id"]) and TIMESTAMP.match(event["timestamp"])
    assert event["action"] in ("push", "pull", "mount", "delete")
    target = event["target"]
    assert list(target)[:3] == ["mediaType", "digest", "size"]
    assert set(target) <= {"mediaType", "digest", "size", "length", "repository", "fromRepository", "url",
                           "tag", "references"}
    request = event["request"]
    assert UUID.match(request["id"]) and request["method"] in ("GET", "HEAD", "PUT", "POST", "DELETE")
    assert request["useragent"] == "distregistry-tests"
    assert request["addr"].startswith("127.0.0.1:") or request["addr"] == "203.0.113.7"
    assert event["actor"] == {}
    assert re.match(r"^[^:]+:\d+$", event["source"]["addr"]) and UUID.match(event["source"]["instanceID"])


def summary(event):
    t = event["target"]
    return (event["action"], event["request"]["method"], t["repository"], t["mediaType"], t["digest"],
            t.get("tag"), t.get("fromRepository"))


@pytest_twisted.ensureDeferred
async def test_push_pull_mount_delete_events_and_ignore_filters(daemons, receivers, client, tmp_path):
    r = receivers().start()
    d = await start(daemons, notifications(
        tmp_path,
        endpoint("all", r.url("/all"), headers={"X-Test": ["yes"]}),
        endpoint("nopull", r.url("/nopull"), ignore={"actions": ["pull"]}),
        endpoint("noblobs", r.url("/noblobs"), ignoredmediatypes=["application/octet-stream"]),
        endpoint("v1", r.url("/v1"), envelope="v1", ignore={"mediatypes": [OCI_MANIFEST]}),
        events={"includereferences": True}))
    base = d.url

    async def req(method, path, body=None, headers=None, expect=None):
        return await call(client, method, base + path, body, headers, expect)

    manifest, config, layer = await push_image(client, base, "app", "v1", "one")
    m_digest = digest(manifest)
    await req("GET", "/v2/app/manifests/v1", headers={"Accept": [OCI_MANIFEST]}, expect=200)
    # A revalidation (304) is not a pull in registry:2: the manifest is never read.
    await req("GET", "/v2/app/manifests/v1", expect=304, headers={"Accept": [OCI_MANIFEST],
                                                                  "If-None-Match": [f'"{m_digest}"']})
    await req("HEAD", f"/v2/app/manifests/{m_digest}", expect=200,
              headers={"Accept": [OCI_MANIFEST], "X-Forwarded-For": ["203.0.113.7, 10.0.0.1"]})
    await req("GET", f"/v2/app/blobs/{layer['digest']}", expect=200)
    await req("GET", f"/v2/app/blobs/{layer['digest']}", headers={"Range": ["bytes=0-1"]}, expect=206)
    await req("HEAD", f"/v2/app/blobs/{layer['digest']}", expect=200)
    await req("POST", f"/v2/other/blobs/uploads/?mount={layer['digest']}&from=app", expect=201)
    await req("DELETE", f"/v2/other/blobs/{layer['digest']}", expect=202)
    # Multi-tag push (OCI 1.1's ?tag=): one push event per tag.
    await req("PUT", f"/v2/app/manifests/{m_digest}?tag=v2&tag=v3", manifest, {"Content-Type": [OCI_MANIFEST]},
              expect=201)
    await req("DELETE", "/v2/app/manifests/v3", expect=202)
    await req("DELETE", f"/v2/app/manifests/{m_digest}", expect=202)
    # Failed operations emit nothing.
    await req("GET", "/v2/app/manifests/nope", expect=404)
    await req("GET", f"/v2/app/blobs/{digest(b'absent')}", expect=404)

    blob = "application/octet-stream"
    expected = [
        ("push", "POST", "app", blob, config["digest"], None, None),
        ("push", "POST", "app", blob, layer["digest"], None, None),
        ("push", "PUT", "app", OCI_MANIFEST, m_digest, "v1", None),
        ("pull", "GET", "app", OCI_MANIFEST, m_digest, "v1", None),
        ("pull", "HEAD", "app", OCI_MANIFEST, m_digest, None, None),
        ("pull", "GET", "app", blob, layer["digest"], None, None),
        ("pull", "GET", "app", blob, layer["digest"], None, None),
        ("pull", "HEAD", "app", blob, layer["digest"], None, None),
        ("mount", "POST", "other", blob, layer["digest"], None, "app"),
        ("delete", "DELETE", "other", "", layer["digest"], None, None),
        ("push", "PUT", "app", OCI_MANIFEST, m_digest, "v2", None),
        ("push", "PUT", "app", OCI_MANIFEST, m_digest, "v3", None),
        ("delete", "DELETE", "app", "", "", "v3", None),
        ("delete", "DELETE", "app", "", m_digest, None, None),
        ("delete", "DELETE", "app", "", "", "v1", None),
        ("delete", "DELETE", "app", "", "", "v2", None),
    ]
    await r.wait_for(lambda: len(r.unique("/all")) >= len(expected))
    await sleep(0.3)   # nothing more should come
    events = r.unique("/all")
    assert [summary(e) for e in events] == expected
    for e in events:
        check_schema(e)
    assert len({e["id"] for e in events}) == len(events)
    assert len({e["source"]["instanceID"] for e in events}) == 1
    # Events of one request share its request id; different requests differ.
    assert events[0]["request"]["id"] != events[1]["request"]["id"]
    assert events[-3]["request"]["id"] == events[-2]["request"]["id"] == events[-1]["request"]["id"]

    push = events[2]["target"]
    assert push == {"mediaType": OCI_MANIFEST, "digest": m_digest, "size": len(manifest), "length": len(manifest),
                    "repository": "app", "url": f"{base}/v2/app/manifests/{m_digest}", "tag": "v1",
                    "references": [config, layer]}
    assert events[2]["request"]["host"] == d.host
    # The client's address: X-Forwarded-For's first entry when it is an IP (registry:2's RemoteAddr).
    assert events[4]["request"]["addr"] == "203.0.113.7"
    assert events[5]["target"] == {"mediaType": blob, "digest": layer["digest"], "size": layer["size"],
                                   "length": layer["size"], "repository": "app",
                                   "url": f"{base}/v2/app/blobs/{layer['digest']}"}
    assert events[-4]["target"] == {"mediaType": "", "digest": "", "size": 0, "repository": "app", "tag": "v3"}
    assert events[-3]["target"] == {"mediaType": "", "digest": m_digest, "size": 0, "repository": "app"}

    # One event per POST, registry:2's envelope, configured headers merged in.
    hit = next(h for h in r.hits if h.path == "/all")
    assert hit.headers["content-type"] == [V2] and hit.headers["x-test"] == ["yes"]
    assert hit.body.startswith(b'{\n   "events": [\n      {\n         "id": ')
    assert all(len(h.events) == 1 for h in r.hits)

    # Filters: by action, by media type (ignoredmediatypes and ignore.mediatypes), before queueing.
    assert [summary(e) for e in r.unique("/nopull")] == [s for s in expected if s[0] != "pull"]
    assert [summary(e) for e in r.unique("/noblobs")] == [s for s in expected if s[3] != blob]
    assert [summary(e) for e in r.unique("/v1")] == [s for s in expected if s[3] != OCI_MANIFEST]
    assert {h.headers["content-type"][0] for h in r.hits if h.path == "/v1"} == {
        "application/vnd.docker.distribution.events.v1+json"}


@pytest_twisted.ensureDeferred
async def test_failing_receiver_gets_every_event_in_order_with_registry2_retry_spacing(
        daemons, receivers, client, tmp_path):
    threshold, backoff, fail_first = 2, 1.5, 5
    r = receivers(fail_first=fail_first).start()
    d = await start(daemons, notifications(
        tmp_path, endpoint("hook", r.url(), threshold=threshold, backoff=f"{backoff}s")))
    pushed = [await push_blob(client, d.url, "retry", f"blob {i}".encode()) for i in range(4)]

    await r.wait_for(lambda: len(r.unique()) == len(pushed) and len(r.hits) >= fail_first + len(pushed))
    await sleep(0.3)
    # In order, each event once after the failures (a 500 is not an acceptance).
    assert [e["target"]["digest"] for e in r.unique()] == [p["digest"] for p in pushed]
    assert len(r.hits) == fail_first + len(pushed)
    first = r.hits[0].events[0]["id"]
    assert [h.events[0]["id"] for h in r.hits[:fail_first + 1]] == [first] * (fail_first + 1)
    # go-events' Breaker: retries are immediate until `threshold` failures in a row, then each
    # attempt waits `backoff` after the last failure; the success resets it.
    gaps = [b.at - a.at for a, b in zip(r.hits, r.hits[1:fail_first + 1])]
    print("gaps between attempts at the first event:", [round(g, 3) for g in gaps])
    immediate, backed_off = gaps[:threshold - 1], gaps[threshold - 1:]
    assert all(g < backoff * 0.6 for g in immediate), gaps
    assert all(backoff * 0.95 <= g < backoff + 3 for g in backed_off), gaps
    after = [b.at - a.at for a, b in zip(r.hits[fail_first:], r.hits[fail_first + 1:])]
    assert all(g < backoff * 0.6 for g in after), after


@pytest_twisted.ensureDeferred
async def test_events_survive_sigkill_while_the_receiver_is_down(daemons, receivers, client, tmp_path):
    port = free_port()
    r = receivers(port=port)          # not listening yet: every delivery fails to connect
    d = await start(daemons, notifications(tmp_path, endpoint("hook", r.url(), backoff="200ms")))
    tags = [f"t{i}" for i in range(100)]
    digests, blobs = {}, []
    for tag in tags:
        manifest, config, layer = await push_image(client, d.url, "durable", tag, tag)
        digests[tag] = digest(manifest)
        blobs += [config["digest"], layer["digest"]]
    os.kill(d.pid, signal.SIGKILL)
    await threads.deferToThread(d.proc.wait)
    journal = tmp_path / "journal" / "hook"
    assert sum(p.stat().st_size for p in journal.glob("*.log")) > 0

    await threads.deferToThread(d.start)
    r.start()
    pushes = lambda: {e["target"].get("tag"): e["target"]["digest"] for e in r.unique()  # noqa: E731
                      if e["action"] == "push" and e["target"]["mediaType"] == OCI_MANIFEST}
    await r.wait_for(lambda: len(pushes()) == len(tags), timeout=60, what="100 manifest push events")
    assert pushes() == digests
    # The blob pushes too, and everything in push order: the journal is a FIFO.
    await r.wait_for(lambda: len(r.unique()) == 3 * len(tags))
    assert [e["target"].get("tag") for e in r.unique() if e["target"].get("tag")] == tags
    assert [e["target"]["digest"] for e in r.unique() if e["target"]["mediaType"] != OCI_MANIFEST] == blobs


@pytest_twisted.ensureDeferred
async def test_a_slow_receiver_does_not_slow_down_pushes(daemons, receivers, client, tmp_path):
    fast, slow = receivers().start(), receivers(delay=5.0).start()
    base = await start(daemons, notifications(tmp_path / "a", endpoint("hook", fast.url(), timeout="30s")),
                       name="fast-receiver")
    lagging = await start(daemons, notifications(tmp_path / "b", endpoint("hook", slow.url(), timeout="30s")),
                          name="slow-receiver")

    async def timed_push(d, i):
        t0 = time.monotonic()
        await push_image(client, d.url, "speed", f"t{i}", f"{d.name}-{i}")
        return time.monotonic() - t0

    times = {base.name: [], lagging.name: []}
    started = time.monotonic()
    for i in range(15):                 # interleaved, so both see the same machine load
        for d in (base, lagging):
            times[d.name].append(await timed_push(d, i))
    elapsed = time.monotonic() - started
    fast_median, slow_median = statistics.median(times[base.name]), statistics.median(times[lagging.name])
    print(f"push medians: fast receiver {fast_median:.3f}s, slow receiver {slow_median:.3f}s ({elapsed:.1f}s)")
    # The slow receiver was busy all along: one POST at a time, each answered after 5 s.
    assert 1 <= len(slow.hits) <= elapsed / 5 + 1
    await fast.wait_for(lambda: len(fast.unique()) == 3 * 15)
    assert slow_median < fast_median * 1.5 + 0.05, times
    assert max(times[lagging.name]) < 4.0, times     # a push waiting on the receiver takes 5 s


def test_an_unusable_journal_directory_stops_start_up(daemons, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    config = {"notifications": {"journal": {"rootdirectory": str(tmp_path / "file")},
                                "endpoints": [endpoint("hook", "http://127.0.0.1:9/")]}}
    with pytest.raises(AssertionError) as info:
        daemons.start("distregistry", extra_config=config, timeout=10)
    assert "notifications endpoint hook: cannot use journal" in str(info.value)


@pytest_twisted.ensureDeferred
async def test_sigterm_with_undelivered_events_exits_promptly_and_resumes(daemons, receivers, client, tmp_path):
    r = receivers(port=free_port())   # down while the daemon runs the first time
    d = await start(daemons, notifications(tmp_path, endpoint("hook", r.url())))
    pushed = [await push_blob(client, d.url, "term", f"blob {i}".encode()) for i in range(3)]
    t0 = time.monotonic()
    await threads.deferToThread(d.stop)
    assert time.monotonic() - t0 < 5 and "Server Shut Down" in d.log_text()
    r.start()
    await threads.deferToThread(d.start)
    await r.wait_for(lambda: len(r.unique()) == 3)
    assert [e["target"]["digest"] for e in r.unique()] == [p["digest"] for p in pushed]
    assert "3 undelivered events recovered" in d.log_text()
