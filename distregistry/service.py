"""Builds the daemon's one MultiService from a Config: the API site on its endpoint, the
upload purger, and the storage driver's lifetime."""

import random

from twisted.application import internet, service
from twisted.internet import defer, endpoints, reactor
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, LogLevel

from distregistry.api.app import RegistryAPI, make_site
from distregistry.api.drain import DrainService
from distregistry.config import Config
from distregistry.logs import AccessLog
from distregistry.registry import Registry
from distregistry.registry.purge import purge_uploads
from distregistry.storage import cache as descriptor_cache
from distregistry.storage.driver import factory

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
    then every ``interval``; a failing run is logged and never stops the schedule."""

    def __init__(self, driver, config, clock=reactor):
        self._driver = driver
        self._config = config
        self._clock = clock
        self._call = None

    def startService(self):
        super().startService()
        delay = random.uniform(0, min(3600.0, self._config.interval))
        log.info("Starting upload purge in {delay:.0f}s", delay=delay)
        self._call = self._clock.callLater(delay, self._run)

    async def _purge(self):
        cfg = self._config
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


def make_service(config, reactor_=reactor):
    driver = factory.create(config.storage.driver, config.storage.parameters, reactor_, managed=True)
    blob_cache = descriptor_cache.build(config.storage.blobdescriptor_cache, config.storage.blobdescriptor_size,
                                        config.redis, reactor_)
    registry = Registry(driver, delete_enabled=config.storage.delete_enabled, validation=config.validation,
                        blob_cache=blob_cache)
    api = RegistryAPI(registry, config)
    site = make_site(api, None if config.log.accesslog_disabled else AccessLog())
    top = RegistryService(config, driver, reactor_, blob_cache)
    DrainService(site, config.http.draintimeout, reactor_).setServiceParent(top)
    endpoint = endpoints.serverFromString(reactor_, _endpoint_description(config.http))
    listener = internet.StreamServerEndpointService(endpoint, site)
    listener._raiseSynchronously = True   # a port already in use must fail start-up, not just log
    listener.setServiceParent(top)
    purging = config.storage.uploadpurging
    if purging.enabled and not config.storage.readonly:
        UploadPurger(driver, purging, reactor_).setServiceParent(top)
    return top
