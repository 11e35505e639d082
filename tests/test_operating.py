"""In-process parts of operating the daemon: the http.debug and health sections, the
effective configuration with secrets masked, health checks' threshold logic (on a fake
clock) and their http/tcp probes (against real local sockets), the storage timing wrapper,
the request metrics, and the SIGHUP reload's diff and hooks."""

import os

import pytest
from twisted.internet import defer, protocol, reactor, task
from twisted.logger import capturedLogs, formatEvent
from twisted.web import resource, server

from distregistry.config import Config, ConfigError
from distregistry.config.config import SECTIONS
from distregistry.config.effective import MASK, effective, flatten, mask
from distregistry.config.health import HTTPCheck, TCPCheck
from distregistry.health import CheckFailed, HealthService, _http, _tcp
from distregistry.metrics import REGISTRY
from distregistry.metrics.storage import InstrumentedDriver
from distregistry.reload import ReloadHooks, Reloader
from distregistry.storage.driver import factory
from distregistry.storage.driver.base import FileInfo, PathNotFoundError

MINIMAL = "version: 0.1\nstorage: inmemory\n"


def parse(text, env=None):
    return Config.parse(MINIMAL + text, "config.yml", env or {})


def error(text, env=None):
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return str(info.value)


# --- configuration ------------------------------------------------------------------------

def test_debug_and_health_sections():
    cfg = parse(
        "http: {debug: {addr: '127.0.0.1:5001', prometheus: {enabled: true}}}\n"
        "health:\n"
        "  storagedriver: {enabled: true, interval: 5s, threshold: 3}\n"
        "  file: [{file: /tmp/down}]\n"
        "  http: [{uri: 'http://up/', headers: {Authorization: [x]}, timeout: 2s}]\n"
        "  tcp: [{addr: 'db:5432', interval: 1m}]\n")
    assert (cfg.debug.addr, cfg.debug.prometheus_enabled, cfg.debug.prometheus_path) == \
        ("127.0.0.1:5001", True, "/metrics")
    h = cfg.health
    assert (h.storagedriver.interval, h.storagedriver.threshold) == (5.0, 3)
    assert (h.file[0].file, h.file[0].interval, h.file[0].threshold) == ("/tmp/down", 10.0, 0)
    assert (h.http[0].statuscode, h.http[0].timeout, h.http[0].headers) == (200, 2.0, {"Authorization": ["x"]})
    # registry:2's 0 (no timeout) would let a hung check block its own next poll.
    assert (h.tcp[0].interval, h.tcp[0].timeout) == (60.0, 60.0)
    assert len(h.checks) == 4
    assert parse("").debug.addr == "" and parse("").health.checks == ()
    assert parse("health: {storagedriver: {enabled: false}}").health.checks == ()


def test_debug_and_health_from_the_environment():
    cfg = parse("", env={"REGISTRY_HTTP_DEBUG_ADDR": ":5001", "REGISTRY_HTTP_DEBUG_PROMETHEUS_PATH": "/m",
                         "REGISTRY_HEALTH_TCPCHECKERS": "[{addr: 'a:1'}]"})
    assert (cfg.debug.addr, cfg.debug.prometheus_path, cfg.health.tcp[0].addr) == (":5001", "/m", "a:1")


@pytest.mark.parametrize("text, message", [
    ("http: {debug: {addr: nowhere}}", 'config.yml: http.debug.addr: expected host:port such as ":5000", got'),
    ("http: {debug: {prometheus: {path: metrics}}}", "config.yml: http.debug.prometheus.path: expected an absolute"),
    ("health: {http: [{statuscode: 204}]}", "config.yml: health.http.0.uri: required: the URL to check"),
    ("health: {file: [{file: /x, interval: often}]}", "config.yml: health.file.0.interval: expected a duration"),
    ("health: {tcp: [{addr: 'a:1', threshold: -1}]}", "config.yml: health.tcp.0.threshold: must be at least 0"),
    ("health: {storagedriver: {enabled: yes please}}", "config.yml: health.storagedriver.enabled: expected true"),
])
def test_section_errors_name_the_key(text, message):
    assert error(text).startswith(message)


def test_effective_configuration_masks_secrets():
    cfg = parse("http: {secret: hunter2}\n"
                "health: {http: [{uri: 'http://up/', headers: {Authorization: [Basic eA==], X-Ok: [1]}}]}\n")
    shown = mask(effective(cfg, SECTIONS))
    assert shown["http"]["secret"] == MASK
    assert shown["health"]["http"][0]["headers"] == {"Authorization": MASK, "X-Ok": ["1"]}
    assert "hunter2" not in repr(shown) and "eA==" not in repr(shown)
    assert mask({"password": "", "nested": [{"secretkey": "k"}]}) == {"password": "", "nested": [{"secretkey": MASK}]}
    flat = flatten(effective(cfg, SECTIONS))
    assert flat["http.secret"] == "hunter2" and flat["storage.readonly"] is False


# --- health checks --------------------------------------------------------------------------

class FakeDriver:
    name = "fake"

    def __init__(self):
        self.result = FileInfo("/", is_dir=True)

    def stat(self, path):
        if isinstance(self.result, Exception):
            return defer.fail(self.result)
        return defer.succeed(self.result)


def health_of(text, driver, clock):
    service = HealthService(parse(text).health, driver, clock)
    service.startService()
    return service


def test_threshold_then_recovery():
    clock, driver = task.Clock(), FakeDriver()
    health = health_of("health: {storagedriver: {enabled: true, interval: 10s, threshold: 2}}", driver, clock)
    clock.advance(10)
    assert not health.failing
    driver.result = OSError("disk on fire")
    clock.advance(10)
    assert not health.failing and health.statuses() == {}          # one failure of two
    clock.advance(10)
    assert health.failing and health.statuses() == {"storagedriver_fake": "OSError: disk on fire"}
    driver.result = FileInfo("/", is_dir=True)
    clock.advance(10)
    assert not health.failing and health.statuses() == {}           # one success resets
    health.stopService()
    assert clock.getDelayedCalls() == []


def test_threshold_zero_fails_at_once_and_missing_root_is_healthy():
    clock, driver = task.Clock(), FakeDriver()
    health = health_of("health: {storagedriver: {enabled: true, interval: 1s}}", driver, clock)
    driver.result = PathNotFoundError("/", "fake")     # nothing pushed yet: healthy, as registry:2
    clock.advance(1)
    assert not health.failing
    driver.result = FileInfo("/", is_dir=False)
    clock.advance(1)
    assert health.statuses() == {"storagedriver_fake": "fake: the storage root is not a directory"}
    health.stopService()


def test_hung_storage_check_times_out_as_a_failure():
    clock, driver = task.Clock(), FakeDriver()
    driver.stat = lambda path: defer.Deferred()
    health = health_of("health: {storagedriver: {enabled: true, interval: 1s}}", driver, clock)
    clock.advance(1)
    assert not health.failing
    clock.advance(1)       # the interval is the timeout
    assert health.failing and "TimeoutError" in health.statuses()["storagedriver_fake"]
    health.stopService()


def test_reconfigure_keeps_unchanged_checks_with_their_state():
    clock, driver = task.Clock(), FakeDriver()
    text = "health: {storagedriver: {enabled: true, interval: 1s}}\n"
    health = health_of(text, driver, clock)
    driver.result = OSError("down")
    clock.advance(1)
    assert health.failing
    health.reconfigure(parse(text).health)
    assert health.failing                                       # same check: state kept
    health.reconfigure(parse("health: {tcp: [{addr: 'db:1', interval: 1h}]}").health)
    assert not health.failing and [c.getTime() for c in clock.getDelayedCalls()] == [1 + 3600]
    health.stopService()
    assert clock.getDelayedCalls() == []


class _Status(resource.Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def render(self, request):
        self.seen.append((request.method, request.getHeader(b"x-probe")))
        request.setResponseCode(int(request.path.strip(b"/") or 200))
        return b""


@pytest.fixture
def web():
    status = _Status()
    port = reactor.listenTCP(0, server.Site(status), interface="127.0.0.1")
    status.url = f"http://127.0.0.1:{port.getHost().port}"
    yield status
    port.stopListening()


def http_check(uri, statuscode=200):
    return HTTPCheck(uri=uri, headers={"X-Probe": ["yes"]}, statuscode=statuscode, timeout=5.0, interval=5.0,
                     threshold=0)


async def test_http_probe(web):
    await _http(reactor, http_check(web.url + "/200"))
    await _http(reactor, http_check(web.url + "/204", statuscode=204))
    assert web.seen == [(b"HEAD", b"yes"), (b"HEAD", b"yes")]
    with pytest.raises(CheckFailed) as info:
        await _http(reactor, http_check(web.url + "/500"))
    assert str(info.value) == f"{web.url}/500: downstream service returned unexpected status: 500"


async def test_tcp_probe():
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface="127.0.0.1")
    addr = f"127.0.0.1:{port.getHost().port}"
    try:
        await _tcp(reactor, TCPCheck(addr=addr, timeout=5.0, interval=5.0, threshold=0))
    finally:
        await port.stopListening()
    with pytest.raises(CheckFailed) as info:
        await _tcp(reactor, TCPCheck(addr=addr, timeout=5.0, interval=5.0, threshold=0))
    assert str(info.value).startswith(f"{addr}: connection failed: ")


# --- metrics --------------------------------------------------------------------------------

def _sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_storage_actions_are_timed():
    driver = InstrumentedDriver(factory.create("inmemory", {}))
    before = {a: _sample("registry_storage_action_seconds_count", driver="inmemory", action=a)
              for a in ("PutContent", "GetContent", "Stat", "List", "Move", "Delete")}
    await driver.put_content("/a/b", b"x")
    assert await driver.get_content("/a/b") == b"x"
    await driver.stat("/a")
    await driver.list("/a")
    await driver.move("/a/b", "/a/c")
    with pytest.raises(PathNotFoundError):      # failures are timed too, as registry:2 does
        await driver.delete("/nothing")
    for action, count in before.items():
        assert _sample("registry_storage_action_seconds_count", driver="inmemory", action=action) == count + 1
    writer = await driver.writer("/w")           # passed through untimed
    await writer.write(b"y")
    await writer.commit()
    assert await driver.get_content("/w") == b"y"


# --- reload ---------------------------------------------------------------------------------

async def test_reload_applies_hooks_and_reports_the_rest(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(MINIMAL + "log: {level: info}\n")
    config = Config.load(str(path), {})
    hooks = ReloadHooks()
    applied = []
    hooks.register(["log.level"], lambda new: applied.append(("level", new.log.level)))

    def broken(new):
        raise RuntimeError("cannot")
    hooks.register(["storage.readonly"], broken)
    reloader = Reloader(config, hooks, reactor, environ={})

    path.write_text(MINIMAL + "log: {level: debug}\nstorage: {inmemory: , maintenance: {readonly: {enabled: true}}}\n"
                    "catalog: {maxentries: 5}\n")
    with capturedLogs() as events:
        await reloader.reload()
    lines = [formatEvent(e) for e in events]
    assert applied == [("level", "debug")]
    assert "configuration reloaded: applied log.level" in lines
    assert "configuration change of catalog.maxentries needs a restart" in lines
    assert "configuration change of storage.readonly needs a restart" in lines   # its hook failed

    with capturedLogs() as events:
        await reloader.reload()          # same file again: what was applied is not re-applied
    lines = [formatEvent(e) for e in events]
    assert applied == [("level", "debug")]
    assert "configuration change of catalog.maxentries needs a restart" in lines

    path.write_text("version: 0.1\nstorage: {inmemory: , delete: {enabled: maybe}}\n")
    with capturedLogs() as events:
        await reloader.reload()
    assert any(formatEvent(e).startswith("configuration reload failed, keeping the running configuration: "
                                         f"{path}: storage.delete.enabled") for e in events)
    os.unlink(path)
    with capturedLogs() as events:
        await reloader.reload()
    assert any("cannot read the configuration" in formatEvent(e) for e in events)
