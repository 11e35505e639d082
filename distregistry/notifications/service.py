"""The notifications service: per endpoint a journal and a sink, one thread pool for the
journals' disk work, one persistent HTTP connection pool for the sinks.

With ``http.workers`` every worker journals the events of the requests it serves and
delivers them itself (in its order), each from its own directory: worker 0's is the
endpoint's directory, as in a one-process run, worker i's the subdirectory ``worker-<i>``.
Worker 0 also delivers what a former run with more workers left in ``worker-<j>`` (j >= N)
and removes those directories once they are drained.
"""

import os
import re
import shutil

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from distregistry.notifications.broadcast import Broadcaster, Endpoint
from distregistry.notifications.events import source_record
from distregistry.notifications.journal import Journal, JournalBusy
from distregistry.notifications.sink import EndpointSink
from distregistry.notifications.status import EndpointStatus, NotificationStatus

log = Logger()

FORMER_WORKER_RETRY = 1.0   # seconds between attempts at a former worker's journal still locked
_WORKER_DIRECTORY = re.compile(r"worker-([1-9][0-9]*)")


def journal_directory(root, worker):
    """Worker *worker*'s journal directory for the endpoint directory *root*."""
    return root if worker == 0 else os.path.join(root, f"worker-{worker}")


def former_worker_directories(root, workers):
    """Journal directories in *root* of worker indexes >= *workers*."""
    found = []
    for name in sorted(os.listdir(root)):
        match = _WORKER_DIRECTORY.fullmatch(name)
        if match and int(match[1]) >= workers and os.path.isdir(os.path.join(root, name)):
            found.append(os.path.join(root, name))
    return found


class NotificationService(service.Service):
    """*instance_id*: the events' ``source.instanceID``; *worker* of *workers*
    (``http.workers``); *lock_timeout*: how long start-up waits for a journal another process
    still holds (a worker of a killed worker 0 still draining)."""

    def __init__(self, config, http_addr, reactor, instance_id, worker=0, workers=1, lock_timeout=0.0):
        self._config = config
        self._reactor = reactor
        self._worker = worker
        self._workers = workers
        self._lock_timeout = lock_timeout
        self._former = []   # (endpoint, directory) to drain: worker 0's
        # journal.maxsize bounds an endpoint's disk use: the workers' journals share it.
        self._maxsize = config.journal_maxsize // workers
        # One flush, one read and one cursor write per endpoint can be in flight.
        self._pool = ThreadPool(minthreads=1, maxthreads=max(2, min(3 * len(config.endpoints), 8)),
                                name="notifications")
        endpoints = []
        for ep in config.endpoints:
            journal = Journal(journal_directory(os.path.join(config.journal_directory, ep.name), worker),
                              self._maxsize, self._pool, reactor)
            status = EndpointStatus(ep, journal)
            journal.on_drop = status.drop
            endpoints.append(Endpoint(ep, journal, status))
        self.status = NotificationStatus(e.status for e in endpoints)
        self.broadcaster = Broadcaster(endpoints, source_record(http_addr, instance_id),
                                       config.include_references)
        self._http_pool = None
        self._sinks = []

    def privilegedStartService(self):
        # Recovery before the reactor serves anything, so no request's event can land in a
        # journal that is still being read back; a directory we cannot use stops start-up.
        for endpoint in self.broadcaster.endpoints:
            try:
                endpoint.journal.open(self._lock_timeout)
                if self._worker == 0:
                    root = os.path.join(self._config.journal_directory, endpoint.config.name)
                    self._former += [(endpoint, d) for d in former_worker_directories(root, self._workers)]
            except OSError as e:
                log.critical("notifications endpoint {name}: cannot use journal {directory}: {error}",
                             name=endpoint.config.name, directory=endpoint.journal.directory, error=e)
                raise SystemExit(1) from None
        super().privilegedStartService()

    def startService(self):
        super().startService()
        if not self.broadcaster.endpoints:
            return
        # The HTTP client (treq, twisted.web.client) is imported only with endpoints configured
        # (here and in _start_sink).
        from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory

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
            self._start_sink(endpoint, endpoint.journal)
        for endpoint, directory in self._former:
            d = defer.ensureDeferred(self._drain_former(endpoint, directory))
            d.addErrback(lambda f, directory=directory: log.failure(
                "notifications: draining former worker journal {directory} failed", f, directory=directory))
        self._reactor.addSystemEventTrigger("during", "shutdown", lambda: defer.ensureDeferred(self.close()))

    def _start_sink(self, endpoint, journal, until_drained=False):
        from treq.client import HTTPClient
        from twisted.web.client import Agent

        c = endpoint.config
        client = HTTPClient(Agent(self._reactor, pool=self._http_pool, connectTimeout=c.timeout))
        sink = EndpointSink(c, journal, endpoint.status, client, self._reactor, until_drained)
        self._sinks.append(sink)
        return sink.start()

    async def _drain_former(self, endpoint, directory):
        """Deliver a former worker's journal, then remove it. Its worker may still be
        draining (its worker 0 was killed): the journal's lock is retried until it exits."""
        journal = Journal(directory, self._maxsize, self._pool, self._reactor)
        while True:
            try:
                # Recovery reads the segments: off the reactor thread, requests are served.
                await threads.deferToThreadPool(self._reactor, self._pool, journal.open)
                break
            except JournalBusy:
                await task.deferLater(self._reactor, FORMER_WORKER_RETRY, lambda: None)
                if not self.running:
                    return
            except OSError as e:
                log.error("notifications endpoint {name}: cannot use former worker journal {directory}: {error}",
                          name=endpoint.config.name, directory=directory, error=e)
                return
        if not self.running:
            await journal.close()
            return
        log.info("notifications endpoint {name}: delivering {pending} events of former worker journal "
                 "{directory}", name=endpoint.config.name, pending=journal.pending, directory=directory)
        endpoint.status.draining.append(journal)
        await self._start_sink(endpoint, journal, until_drained=True)
        if journal.pending or not self.running:
            return          # stopped: close() closes it, the next start goes on
        endpoint.status.draining.remove(journal)
        await journal.close()
        await threads.deferToThreadPool(self._reactor, self._pool, shutil.rmtree, directory)
        log.info("notifications endpoint {name}: former worker journal {directory} delivered and removed",
                 name=endpoint.config.name, directory=directory)

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
            for journal in [endpoint.journal] + endpoint.status.draining:
                await journal.close()
        if self._pool.started:
            self._pool.stop()
