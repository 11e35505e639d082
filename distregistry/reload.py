"""Hot reload on SIGHUP: re-read the configuration (the same file and environment as at
start-up), apply what can change safely, and log every other changed key as needing a
restart.

What can be applied is declared by hooks: ``hooks.register(prefixes, apply)`` where
*prefixes* are effective-config key paths (``"log.level"``, ``"auth"``,
``"notifications.endpoints"``; see ``distregistry config check``) and ``apply(new_config)``
may return a Deferred. A hook runs when any key under its prefixes changed; when it raises,
the error is logged and those keys stay as they were (and keep being reported)."""

import os
import signal

from twisted.application import service
from twisted.internet import defer, threads
from twisted.logger import Logger, LogLevel

from distregistry.config import Config, ConfigError
from distregistry.config.config import EMBEDDED_SOURCE, SECTIONS
from distregistry.config.effective import effective, flatten

log = Logger()


def _under(key, prefix):
    return key == prefix or key.startswith(prefix + ".")


class ReloadHooks:
    def __init__(self):
        self._hooks = []

    def register(self, prefixes, apply):
        self._hooks.append((tuple(prefixes), apply))

    def __iter__(self):
        return iter(self._hooks)


class Reloader(service.Service):
    def __init__(self, config, hooks, reactor, environ=None):
        self._source = None if config.source == EMBEDDED_SOURCE else config.source
        self._running = flatten(effective(config, SECTIONS))
        self._hooks = hooks
        self._reactor = reactor
        self._environ = os.environ if environ is None else environ
        self._previous = None
        self._busy = None

    def startService(self):
        super().startService()
        # Python runs the handler on the main (reactor) thread between bytecodes; callFromThread
        # also wakes the reactor up.
        self._previous = signal.signal(signal.SIGHUP, lambda *_: self._reactor.callFromThread(self.reload))

    def stopService(self):
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return super().stopService()

    def reload(self):
        """Deferred; a SIGHUP arriving while a reload runs waits for it."""
        d = defer.Deferred()
        previous, self._busy = self._busy, d

        async def run():
            if previous is not None:
                await previous
            try:
                await self._reload()
            except Exception:
                log.failure("configuration reload failed", level=LogLevel.error)
            finally:
                d.callback(None)
                if self._busy is d:
                    self._busy = None
        defer.ensureDeferred(run())
        return d

    async def _reload(self):
        log.info("SIGHUP: reloading the configuration from {source}", source=self._source or EMBEDDED_SOURCE)
        try:
            # Reading the file is blocking I/O: off the reactor thread.
            config = await threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                                     Config.load, self._source, self._environ)
        except ConfigError as e:
            log.error("configuration reload failed, keeping the running configuration: {error}", error=str(e))
            return
        for warning in config.warnings:
            log.warn("config: {warning}", warning=warning)
        new = flatten(effective(config, SECTIONS))
        changed = sorted(k for k in set(new) | set(self._running) if new.get(k) != self._running.get(k))
        if not changed:
            log.info("configuration unchanged")
            return
        applied = set()
        for prefixes, apply in self._hooks:
            keys = [k for k in changed if any(_under(k, p) for p in prefixes)]
            if not keys:
                continue
            try:
                await defer.maybeDeferred(apply, config)
            except Exception:
                log.failure("applying {keys} failed", level=LogLevel.error, keys=", ".join(keys))
                continue
            applied.update(keys)
        for key in applied:
            if key in new:
                self._running[key] = new[key]
            else:
                self._running.pop(key, None)
        if applied:
            log.info("configuration reloaded: applied {keys}", keys=", ".join(sorted(applied)))
        for key in changed:
            if key not in applied:
                log.warn("configuration change of {key} needs a restart", key=key)
