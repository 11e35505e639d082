"""Builds the daemon's one MultiService from a Config: the API site on its endpoint, the
upload purger, the online garbage collector, the storage driver's lifetime, and what
``operating`` adds (metrics, health checks, debug site, SIGHUP reload)."""

import random

from twisted.application import internet, service
from twisted.internet import defer, endpoints, reactor
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, LogLevel
from twisted.protocols.tls import TLSMemoryBIOFactory

from distregistry import operating
from distregistry.api.app import RegistryAPI, make_site
from distregistry.api.drain import DrainService
from distregistry.auth import make_access_controller
from distregistry.config import Config
from distregistry.gc.online import OnlineGC
from distregistry.logs import AccessLog
from distregistry.notifications.service import NotificationService
from distregistry.registry import Registry
from distregistry.registry.purge import purge_uploads
from distregistry.reload import ReloadHooks
from distregistry.storage import cache as descriptor_cache
from distregistry.storage.driver import factory
from distregistry.tls import certificate_options
from distregistry.workers import (
    ReusePortService,
    WorkerPool,
    instance_id,
    shared_metrics_directory,
    shared_secret,
    stop_timeout,
    tie_to_parent,
    worker_index,
)

log = Logger()


def load_config(path):
    return Config.load(path)


def _endpoint_description(http):
    """A strports description for ``http.addr`` (``host:port``, ``:port``, ``[v6]:port``) or a socket path."""
    if http.net == "unix":
        return "unix:" + http.addr.replace(":", r"\:")
    host, _, port = http.addr.rpartition(":")
    host = host.strip("[]")
    desc = f"tcp:{int(port)}"
    if host:
        desc += ":interface=" + host.replace(":", r"\:")
    return desc


class UploadPurger(service.Service):
    """registry:2's upload purger: first run after a random delay (so replicas spread out),
    then every ``interval``; a failing run is logged and never stops the schedule. Runs are
    skipped while *readonly()* is true (read-only mode can be switched on by SIGHUP)."""

    def __init__(self, driver, config, clock=reactor, readonly=lambda: False):
        self._driver = driver
        self._config = config
        self._clock = clock
        self._readonly = readonly
        self._call = None

    def reconfigure(self, config):
        """New age, interval and dryrun (SIGHUP); the next run is due after the new interval."""
        self._config = config
        if self._call is not None and self._call.active():
            self._call.reset(config.interval)

    def startService(self):
        super().startService()
        delay = random.uniform(0, min(3600.0, self._config.interval))
        log.info("Starting upload purge in {delay:.0f}s", delay=delay)
        self._call = self._clock.callLater(delay, self._run)

    async def _purge(self):
        cfg = self._config
        if not cfg.enabled:   # switched off by SIGHUP
            return
        if self._readonly():
            log.info("upload purge skipped: the registry is in read-only mode")
            return
        try:
            await purge_uploads(self._driver, self._clock.seconds() - cfg.age, not cfg.dryrun)
        except Exception:
            log.failure("upload purge failed", level=LogLevel.error)

    def _run(self):
        d = defer.ensureDeferred(self._purge())
        d.addBoth(lambda _: self._schedule())

    def _schedule(self):
        if self.running:
            self._call = self._clock.callLater(self._config.interval, self._run)

    def stopService(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        return super().stopService()


class RegistryService(service.MultiService):
    def __init__(self, config, driver, reactor_=reactor, blob_cache=None):
        super().__init__()
        self.config = config
        self.driver = driver
        self.blob_cache = blob_cache
        self._reactor = reactor_
        # What a SIGHUP may change (distregistry.reload): other parts register theirs here.
        self.reload_hooks = ReloadHooks()

    def privilegedStartService(self):
        # registry:2 exits with one line ("listen tcp ...: bind: address already in use"), not a traceback.
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            log.critical("cannot listen on {net} {addr}: {error}", net=self.config.http.net,
                         addr=self.config.http.addr, error=e.socketError)
            raise SystemExit(1) from None

    def startService(self):
        log.info("distregistry starting: config {source}, storage {driver}, listening on {addr}",
                 source=self.config.source, driver=self.driver.name, addr=self.config.http.addr)
        for warning in self.config.warnings:
            log.warn("config: {warning}", warning=warning)
        super().startService()

    async def _stop(self):
        await super().stopService()
        await self.driver.close()
        if self.blob_cache is not None:
            await self.blob_cache.close()
        if self.config.http.draintimeout > 0 and getattr(self._reactor, "_exitSignal", None) is not None:
            # registry:2 exits 0 after a graceful drain on SIGTERM/SIGINT (and dies of the
            # signal without one); twistd would re-raise the signal that stopped the reactor.
            self._reactor._exitSignal = None

    def stopService(self):
        return defer.ensureDeferred(self._stop())


def _tls_wrapped(site, tls, source, section):
    if tls is None:
        return site
    return TLSMemoryBIOFactory(certificate_options(tls, source, section), False, site)


def _listener(reactor_, listen, site, tls, source, section):
    """A service listening on *listen* (an HTTPConfig or TokenServerConfig), with TLS over
    whatever endpoint it names (tcp or a unix socket) when *tls* is set."""
    endpoint = endpoints.serverFromString(reactor_, _endpoint_description(listen))
    listener = internet.StreamServerEndpointService(endpoint, _tls_wrapped(site, tls, source, section))
    listener._raiseSynchronously = True   # a port already in use must fail start-up, not just log
    return listener


def make_service(config, reactor_=reactor, worker=None):
    """*worker*: this process's index with ``http.workers`` > 1 (default: from the environment)."""
    worker = worker_index() if worker is None else worker
    if config.http.workers > 1 and not config.http.secret:
        # Workers must sign upload state with one key; worker 0's reaches the others
        # as REGISTRY_HTTP_SECRET (WorkerPool), so none of them generates its own.
        config = shared_secret(config)
    metrics_directory = shared_metrics_directory(config, worker)   # before any metric exists
    driver = factory.create(config.storage.driver, config.storage.parameters, reactor_, managed=True)
    driver = operating.instrument_driver(config, driver)
    blob_cache = descriptor_cache.build(config.storage.blobdescriptor_cache, config.storage.blobdescriptor_size,
                                        config.redis, reactor_)
    registry = Registry(driver, delete_enabled=config.storage.delete_enabled, validation=config.validation,
                        blob_cache=blob_cache)
    access = make_access_controller(config.auth, reactor_, config.source)
    top = RegistryService(config, driver, reactor_, blob_cache)
    # First child: its journals are recovered (privilegedStartService) before the port opens.
    # A journal may still be held by the process this one replaces: a worker of a killed
    # worker 0, which takes up to its stop timeout to exit.
    notifications = NotificationService(config.notifications, config.http.addr, reactor_, instance_id(config, worker),
                                        worker, config.http.workers, stop_timeout(config))
    notifications.setServiceParent(top)
    api = RegistryAPI(registry, config, access, notifications.broadcaster)
    operating.prepare(config, api, driver, reactor_)
    site = make_site(api, None if config.log.accesslog_disabled else AccessLog())
    DrainService(site, config.http.draintimeout, reactor_).setServiceParent(top)
    pool = None
    if config.http.workers > 1:
        api_site = _tls_wrapped(site, config.http.tls, config.source, "http.tls")
        listener = ReusePortService(config.http.addr, api_site, reactor_)
        listener.setServiceParent(top)
        if worker == 0:
            pool = WorkerPool(config, listener, reactor_, stop_timeout(config), metrics_directory)
            pool.setServiceParent(top)
        else:
            tie_to_parent(reactor_)
    else:
        _listener(reactor_, config.http, site, config.http.tls, config.source, "http.tls").setServiceParent(top)
    ts = config.tokenserver
    if ts is not None and worker == 0:
        # The built-in token issuer, on its own port (worker 0's only: not a shared one);
        # imported only when configured (jwt, cryptography's key types).
        from distregistry.auth.issuer import make_issuer_site

        issuer = make_issuer_site(ts, config.source, reactor_)
        _listener(reactor_, ts, issuer, ts.tls, config.source, "tokenserver.tls").setServiceParent(top)
    purging = config.storage.uploadpurging
    # One purger per registry, not per worker: worker 0's.
    purger = None
    if purging.enabled and worker == 0:
        purger = UploadPurger(driver, purging, reactor_, readonly=lambda: api.readonly)
        purger.setServiceParent(top)
    if config.storage.gc.enabled:
        OnlineGC(registry, config.storage.gc, reactor_).setServiceParent(top)
    # The debug port is one per host as well: with http.workers it is worker 0's (and so are its metrics).
    operating.add_services(top, config, api, reactor_, _endpoint_description, purger, serve_debug=worker == 0,
                           notifications=notifications.status,
                           cache=blob_cache.stats if blob_cache is not None else None,
                           worker_pids=pool.pids if pool is not None else None)
    return top
