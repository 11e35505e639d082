"""Health checks as registry:2 runs them (health/health.go, health/checks, app.go
RegisterHealthChecks): each check polls every ``interval`` in a LoopingCall, starts healthy,
turns unhealthy after ``threshold`` consecutive failures (0: the first) and healthy again on
one success. While any check is unhealthy the API answers 503 UNAVAILABLE (``HealthGate``)
and ``/debug/health`` lists the failing checks."""

import os

from twisted.application import service
from twisted.internet import defer, endpoints, protocol, task, threads
from twisted.logger import Logger
from twisted.web import resource

from distregistry.config.health import FileCheck, HTTPCheck, StorageDriverCheck, TCPCheck
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.storage.driver.base import PathNotFoundError

log = Logger()


class CheckFailed(Exception):
    """A check's failure, with registry:2's message."""


async def _storage_driver(reactor, driver, check):
    # registry:2 stats "/", and a missing "/" only means nothing was pushed yet. A root that
    # is there but is not a directory (replaced, or a mount gone wrong) fails every write, so
    # it counts as a failure here too (registry:2 would call it healthy).
    try:
        info = await driver.stat("/").addTimeout(check.interval, reactor)
    except PathNotFoundError:
        return
    if not info.is_dir:
        raise CheckFailed(f"{driver.name}: the storage root is not a directory")


def _file_exists(path):
    return os.path.lexists(os.path.abspath(path))


async def _file(reactor, check):
    # os.stat is blocking I/O: off the reactor thread.
    if await threads.deferToThreadPool(reactor, reactor.getThreadPool(), _file_exists, check.file):
        raise CheckFailed("file exists")


async def _http(reactor, check):
    import treq   # only http checks need it; importing it costs ~0.2 s of every start-up

    try:
        response = await treq.head(check.uri, headers=check.headers, timeout=check.timeout, reactor=reactor,
                                   persistent=False)
    except Exception as e:
        raise CheckFailed(f"{check.uri}: error while checking: {_reason(e)}") from None
    await treq.content(response)
    if response.code != check.statuscode:
        raise CheckFailed(f"{check.uri}: downstream service returned unexpected status: {response.code}")


async def _tcp(reactor, check):
    host, _, port = check.addr.rpartition(":")
    try:
        endpoint = endpoints.HostnameEndpoint(reactor, host.strip("[]") or "localhost", int(port),
                                              timeout=check.timeout)
        proto = await endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
    except Exception as e:
        raise CheckFailed(f"{check.addr}: connection failed: {_reason(e)}") from None
    proto.transport.loseConnection()


def _reason(error):
    # treq's ResponseFailed and the like wrap the cause in a list of Failures.
    reasons = getattr(error, "reasons", None)
    if reasons:
        return str(reasons[0].value)
    return str(error) or type(error).__name__


def check_name(check, driver):
    """registry:2's names: ``storagedriver_<driver>``, the file path, the URI, the address."""
    if isinstance(check, StorageDriverCheck):
        return f"storagedriver_{driver.name}"
    if isinstance(check, FileCheck):
        return check.file
    if isinstance(check, HTTPCheck):
        return check.uri
    return check.addr


class _Runner:
    """One check's LoopingCall and its threshold state."""

    def __init__(self, name, check, probe, reactor, on_change):
        self.name = name
        self.check = check
        self._probe = probe
        self._on_change = on_change
        self._failures = 0
        self.error = None   # the message while unhealthy
        self._loop = task.LoopingCall(self._run)
        self._loop.clock = reactor

    def start(self):
        # registry:2 polls first after one interval; a check starts healthy.
        self._loop.start(self.check.interval, now=False)

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    async def _poll(self):
        # Never raises: a LoopingCall stops for good on a failure (twisted.md 6.2).
        try:
            await self._probe()
        except Exception as e:
            message = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
            self._failures += 1
            if self._failures >= max(1, self.check.threshold) and self.error != message:
                if self.error is None:
                    log.error("health check {name} failed: {error}", name=self.name, error=message)
                self.error = message
                self._on_change()
            return
        self._failures = 0
        if self.error is not None:
            log.info("health check {name} passes again", name=self.name)
            self.error = None
            self._on_change()

    def _run(self):
        return defer.ensureDeferred(self._poll())


class HealthService(service.Service):
    """Runs the checks of a HealthConfig; ``failing`` is what the API gate and
    ``/debug/health`` read. ``reconfigure`` (SIGHUP) keeps checks whose settings did not
    change, with their state, and replaces the others."""

    def __init__(self, health_config, driver, reactor):
        self._driver = driver
        self._reactor = reactor
        self._runners = []
        self.failing = False
        self._config = health_config

    def _probe(self, check):
        reactor, driver = self._reactor, self._driver
        if isinstance(check, StorageDriverCheck):
            return lambda: _storage_driver(reactor, driver, check)
        if isinstance(check, FileCheck):
            return lambda: _file(reactor, check)
        if isinstance(check, HTTPCheck):
            return lambda: _http(reactor, check)
        assert isinstance(check, TCPCheck)
        return lambda: _tcp(reactor, check)

    def _update(self):
        self.failing = any(r.error is not None for r in self._runners)

    def statuses(self):
        """registry:2's /debug/health body: failing check name -> message."""
        return {r.name: r.error for r in self._runners if r.error is not None}

    def startService(self):
        super().startService()
        self._runners = [self._runner(check) for check in self._config.checks]
        for runner in self._runners:
            log.info("health check {name} every {interval}s, threshold {threshold}", name=runner.name,
                     interval=runner.check.interval, threshold=runner.check.threshold)
            runner.start()

    def _runner(self, check):
        return _Runner(check_name(check, self._driver), check, self._probe(check), self._reactor, self._update)

    def reconfigure(self, health_config):
        self._config = health_config
        if not self.running:
            return
        keep = {r.check: r for r in self._runners}
        runners = []
        for check in health_config.checks:
            runner = keep.pop(check, None)
            if runner is None:
                runner = self._runner(check)
                log.info("health check {name} added", name=runner.name)
                runner.start()
            runners.append(runner)
        for runner in keep.values():
            log.info("health check {name} removed", name=runner.name)
            runner.stop()
        self._runners = runners
        self._update()

    def stopService(self):
        for runner in self._runners:
            runner.stop()
        return super().stopService()


UNAVAILABLE_BODY = RegistryError(ErrorCode.UNAVAILABLE, detail="health check failed: please see /debug/health").body()


class HealthGate(resource.Resource):
    """In front of the API resource: every request, ``/`` included, gets registry:2's 503
    while a check fails (without the API-version header, as registry:2 answers it before
    its router)."""

    isLeaf = True

    def __init__(self, inner, health):
        super().__init__()
        self._inner = inner
        self._health = health

    def render(self, request):
        if self._health.failing:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"%d" % len(UNAVAILABLE_BODY))
            return b"" if request.method == b"HEAD" else UNAVAILABLE_BODY
        return self._inner.render(request)
