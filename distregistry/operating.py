"""What operators watch and steer a running daemon with, wired into the service in one
place: request and storage metrics (``http.debug.prometheus``), health checks and their API
gate (``health``), the debug site (``http.debug.addr``) and the SIGHUP reload with the
settings it applies itself (``log.level``, ``storage.readonly``, ``storage.uploadpurging``,
``health``).

The metrics modules are imported only when configured: prometheus_client and the debug
site would otherwise add to every start-up (and to every ``config check`` failure)."""

import types

from twisted.application import internet
from twisted.internet import endpoints

from distregistry import logs
from distregistry.health import HealthService
from distregistry.reload import Reloader


def instrument_driver(config, driver):
    """The driver to build the registry on: timed when metrics are on (as in registry:2,
    also without a debug address)."""
    if not config.debug.prometheus_enabled:
        return driver
    from distregistry.metrics.storage import InstrumentedDriver

    return InstrumentedDriver(driver)


def prepare(config, api, driver, reactor):
    """Set the API's metrics and health checks (before make_site, which puts the gate in front)."""
    if config.debug.prometheus_enabled:
        from distregistry.metrics.http import HTTPInstrumentation

        api.metrics = HTTPInstrumentation()
    # Without checks there is no gate in front of the API; checks added by SIGHUP need a restart.
    if config.health.checks:
        api.health = HealthService(config.health, driver, reactor)


def add_services(top, config, api, reactor, endpoint_description, purger=None, serve_debug=True,
                 notifications=None, cache=None, worker_pids=None):
    """Health checks, debug site (unless *serve_debug* is false) and reloader as children of
    *top* (after the API listener, so they stop before the drain). *notifications* (their
    status) and *cache* (the blob-descriptor cache's counters) feed /metrics and /debug/vars;
    *worker_pids* (worker 0 with http.workers) gives the processes /metrics sums over."""
    if config.debug.prometheus_enabled:
        from distregistry.metrics import collectors

        collectors.SOURCES.notifications = notifications
        collectors.SOURCES.cache = cache
        if worker_pids is not None:
            collectors.SOURCES.worker_pids = worker_pids
        if collectors.PUBLISHER is not None:
            collectors.PublishService(collectors.PUBLISHER, reactor).setServiceParent(top)
    health = api.health
    if health is not None:
        health.setServiceParent(top)
    if config.debug.addr and serve_debug:
        from distregistry.metrics.site import DebugSite

        debug = DebugSite(config.debug, health, reactor, notifications)
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
    if health is not None:
        hooks.register(["health"], lambda new: health.reconfigure(new.health))
    if purger is not None:
        hooks.register(["storage.uploadpurging"], lambda new: purger.reconfigure(new.storage.uploadpurging))
    Reloader(config, hooks, reactor).setServiceParent(top)
