"""What operators watch and steer a running daemon with, wired into the service in one
place: request and storage metrics (``http.debug.prometheus``), health checks and their API
gate (``health``), the debug site (``http.debug.addr``) and the SIGHUP reload with the
settings it applies itself (``log.level``, ``storage.readonly``, ``storage.uploadpurging``,
``health``)."""

import types

from twisted.application import internet
from twisted.internet import endpoints

from distregistry import logs
from distregistry.health import HealthService
from distregistry.metrics.http import HTTPInstrumentation
from distregistry.metrics.site import DebugSite
from distregistry.metrics.storage import InstrumentedDriver
from distregistry.reload import Reloader


def instrument_driver(config, driver):
    """The driver to build the registry on: timed when metrics are on (as in registry:2,
    also without a debug address)."""
    return InstrumentedDriver(driver) if config.debug.prometheus_enabled else driver


def prepare(config, api, driver, reactor):
    """Set the API's metrics and health gate (before make_site); the HealthService or None."""
    if config.debug.prometheus_enabled:
        api.metrics = HTTPInstrumentation()
    health = HealthService(config.health, driver, reactor)
    # Without checks there is no gate in front of the API; one added by SIGHUP needs a restart.
    api.health = health if config.health.checks else None
    return health


def add_services(top, config, api, health, reactor, endpoint_description, purger=None):
    """Health checks, debug site and reloader as children of *top* (after the API listener,
    so they stop before the drain)."""
    if api.health is not None:
        health.setServiceParent(top)
    if config.debug.addr:
        debug = DebugSite(config.debug, api.health, reactor)
        where = types.SimpleNamespace(net="tcp", addr=config.debug.addr)
        listener = internet.StreamServerEndpointService(
            endpoints.serverFromString(reactor, endpoint_description(where)), debug.site())
        listener._raiseSynchronously = True   # a debug port in use must fail start-up too
        listener.setServiceParent(top)

    def apply_readonly(new):
        api.readonly = new.storage.readonly

    hooks = top.reload_hooks
    hooks.register(["log.level"], lambda new: logs.set_level(new.log.level))
    hooks.register(["storage.readonly"], apply_readonly)
    if api.health is not None:
        hooks.register(["health"], lambda new: health.reconfigure(new.health))
    if purger is not None:
        hooks.register(["storage.uploadpurging"], lambda new: purger.reconfigure(new.storage.uploadpurging))
    Reloader(config, hooks, reactor).setServiceParent(top)
