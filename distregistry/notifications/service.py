"""The notifications service: per endpoint a journal and a sink, one thread pool for the
journals' disk work, one persistent HTTP connection pool for the sinks."""

import os
import uuid

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from distregistry.notifications.broadcast import Broadcaster, Endpoint
from distregistry.notifications.events import source_record
from distregistry.notifications.journal import Journal
from distregistry.notifications.sink import EndpointSink
from distregistry.notifications.status import EndpointStatus, NotificationStatus

log = Logger()


class NotificationService(service.Service):
    def __init__(self, config, http_addr, reactor):
        self._config = config
        self._reactor = reactor
        # One flush, one read and one cursor write per endpoint can be in flight.
        self._pool = ThreadPool(minthreads=1, maxthreads=max(2, min(3 * len(config.endpoints), 8)),
                                name="notifications")
        endpoints = []
        for ep in config.endpoints:
            journal = Journal(os.path.join(config.journal_directory, ep.name), config.journal_maxsize,
                              self._pool, reactor)
            status = EndpointStatus(ep, journal)
            journal.on_drop = status.drop
            endpoints.append(Endpoint(ep, journal, status))
        self.status = NotificationStatus(e.status for e in endpoints)
        self.broadcaster = Broadcaster(endpoints, source_record(http_addr, str(uuid.uuid4())),
                                       config.include_references)
        self._http_pool = None
        self._sinks = []

    def privilegedStartService(self):
        # Recovery before the reactor serves anything, so no request's event can land in a
        # journal that is still being read back; a directory we cannot use stops start-up.
        for endpoint in self.broadcaster.endpoints:
            try:
                endpoint.journal.open()
            except OSError as e:
                log.critical("notifications endpoint {name}: cannot use journal {directory}: {error}",
                             name=endpoint.config.name, directory=endpoint.journal.directory, error=e)
                raise SystemExit(1) from None
        super().privilegedStartService()

    def startService(self):
        super().startService()
        if not self.broadcaster.endpoints:
            return
        # The HTTP client (treq, twisted.web.client) is imported only with endpoints configured.
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory

        class QuietFactory(_HTTP11ClientFactory):
            # The pool's factory logs "Starting factory ..." for every new connection otherwise.
            noisy = False

        self._pool.start()
        self._http_pool = HTTPConnectionPool(self._reactor, persistent=True)
        self._http_pool.maxPersistentPerHost = 2
        self._http_pool._factory = QuietFactory
        for endpoint in self.broadcaster.endpoints:
            c = endpoint.config
            log.info("notifications endpoint {name} ({url}): timeout {timeout}s, threshold {threshold}, "
                     "backoff {backoff}s, {pending} pending", name=c.name, url=c.url, timeout=c.timeout,
                     threshold=c.threshold, backoff=c.backoff, pending=endpoint.journal.pending)
            client = HTTPClient(Agent(self._reactor, pool=self._http_pool, connectTimeout=c.timeout))
            sink = EndpointSink(c, endpoint.journal, endpoint.status, client, self._reactor)
            sink.start()
            self._sinks.append(sink)
        self._reactor.addSystemEventTrigger("during", "shutdown", lambda: defer.ensureDeferred(self.close()))

    def stopService(self):
        # The sinks stop now (an unfinished delivery is retried after the restart), but the
        # journals stay open: requests still draining may append their events. They close
        # "during" shutdown, which comes after every "before" trigger, the drain included.
        super().stopService()
        for sink in self._sinks:
            sink.stop()
        self._sinks = []
        if self._http_pool is None:
            return None
        pool, self._http_pool = self._http_pool, None
        return pool.closeCachedConnections()

    async def close(self):
        """Write out what is pending and stop the thread pool (call after stopService)."""
        for endpoint in self.broadcaster.endpoints:
            await endpoint.journal.close()
        if self._pool.started:
            self._pool.stop()
