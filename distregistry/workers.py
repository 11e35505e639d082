"""``http.workers: N``: N processes accept on one TCP port, so the registry uses N cores.

Each process binds its own socket with SO_REUSEPORT and the kernel spreads connections
across them (1.95x for 2 processes on this machine; a shared fd with one accept queue
gave only 1.6x: shared/reference/twisted.md 4.4). The process twistd started is worker 0:
it binds first, then spawns workers 1..N-1 (the same twistd plugin, told their index
through the environment), stops them with SIGTERM when it stops, and respawns one that
dies. Upload state lives in storage and is HMAC-signed, so a PATCH and the PUT that
commits it may land on different workers; the per-process state (upload purger, drain
bookkeeping) is either per connection or runs in worker 0 only. Each worker journals and
delivers the webhook events of its requests (distregistry.notifications.service), under
worker 0's instance id. Metrics are summed across workers by prometheus_client's
multiprocess mode, in a directory of worker 0's making (``shared_metrics_directory``); only
worker 0 serves them.
"""

import base64
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import sys
import tempfile
import uuid

import attr
from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger

log = Logger()

WORKER_ENV = "DISTREGISTRY_WORKER"   # set in workers 1..N-1: their index
PARENT_ENV = "DISTREGISTRY_WORKER_PARENT"   # and worker 0's pid
INSTANCE_ENV = "DISTREGISTRY_INSTANCE_ID"   # and the registry's instance id
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"   # prometheus_client's; workers inherit worker 0's
METRICS_PREFIX = "distregistry-metrics-"
METRICS_LOCK = "lock"
_metrics_lock = None   # worker 0's lock on its metrics directory, held until it exits
RESPAWN_DELAY = 1.0
STOP_GRACE = 10.0   # seconds a stopping worker gets beyond http.draintimeout
BACKLOG = 1024
PR_SET_PDEATHSIG = 1


def worker_index(environ=os.environ):
    return int(environ.get(WORKER_ENV, "0"))


def stop_timeout(config):
    """How long a worker may take to stop (then worker 0 kills it)."""
    return config.http.draintimeout + STOP_GRACE


def instance_id(config, worker):
    """registry:2's ``source.instanceID`` of events: one per start of the registry, which its
    workers share (a receiver sees one instance, whichever process served the request)."""
    if worker > 0:
        return os.environ[INSTANCE_ENV]
    value = str(uuid.uuid4())
    if config.http.workers > 1:
        os.environ[INSTANCE_ENV] = value   # the workers inherit worker 0's environment
    return value


def shared_metrics_directory(config, worker):
    """Switch prometheus_client to multiprocess mode when several workers have metrics:
    returns the directory of the workers' value files (None: single-process mode). Must run
    before prometheus_client is imported. Worker 0 makes a fresh private directory (on tmpfs
    when there is one: values are written per observation) and removes it when it stops;
    the others find it in their environment."""
    global _metrics_lock
    if worker > 0:
        return os.environ.get(MULTIPROC_ENV)
    # An inherited value is not ours: one process keeps its plain in-memory metrics.
    os.environ.pop(MULTIPROC_ENV, None)
    os.environ.pop(MULTIPROC_ENV.lower(), None)
    if config.http.workers == 1 or not config.debug.prometheus_enabled:
        return None
    shm = "/dev/shm"
    parent = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    _remove_abandoned_metrics(parent)
    # Held while worker 0 lives: a directory whose lock is free was left by a killed one. It
    # is taken before the directory gets the name other registries look for.
    making = tempfile.mkdtemp(prefix="." + METRICS_PREFIX, dir=parent)
    _metrics_lock = os.open(os.path.join(making, METRICS_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(_metrics_lock, fcntl.LOCK_EX)
    directory = os.path.join(parent, os.path.basename(making)[1:])
    os.rename(making, directory)
    os.environ[MULTIPROC_ENV] = directory
    return directory


def _remove_abandoned_metrics(parent):
    for name in os.listdir(parent):
        if not name.startswith(METRICS_PREFIX):
            continue
        try:
            fd = os.open(os.path.join(parent, name, METRICS_LOCK), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue     # another user's, or one being created
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue     # its worker 0 is alive
        finally:
            os.close(fd)
        log.info("removing metrics directory {directory} of a registry that was killed",
                 directory=os.path.join(parent, name))
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def shared_secret(config):
    """*config* with a random ``http.secret`` (registry:2 generates one when unset, per process)."""
    log.warn("No HTTP secret provided - generated a random secret shared by the {count} workers. Uploads fail "
             "across registries behind a load-balancer unless http.secret is set.", count=config.http.workers)
    secret = base64.b64encode(os.urandom(32)).decode()
    return attr.evolve(config, http=attr.evolve(config.http, secret=secret))


def tie_to_parent(reactor):
    """In workers 1..N-1: stop with worker 0. Linux sends SIGTERM when it dies (even of
    SIGKILL), and a terminal's Ctrl-C, which reaches the whole process group, is left to
    worker 0, which stops its workers itself (a second stop request would fail)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(os.environ.get(PARENT_ENV, "0")):
        raise SystemExit("worker 0 exited while this worker was starting")
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)


def _bind_address(addr):
    """(family, host, port) for ``host:port``; an empty host means every IPv4 address,
    as the single-process ``tcp:PORT`` endpoint binds."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, host or "0.0.0.0", int(port)


class ReusePortService(service.Service):
    """Listens on ``addr`` with SO_REUSEPORT through ``reactor.adoptStreamPort``."""

    def __init__(self, addr, factory, reactor):
        self._family, self._host, self._port = _bind_address(addr)
        self._factory = factory
        self._reactor = reactor
        self._socket = None
        self.port = None

    def privilegedStartService(self):
        sock = socket.socket(self._family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._host, self._port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise error.CannotListenError(self._host, self._port, e) from None
        self._socket = sock
        self.bound_port = sock.getsockname()[1]   # what ``:0`` picked, for the other workers
        super().privilegedStartService()

    def startService(self):
        super().startService()
        # adoptStreamPort dups the fd: close ours so only the reactor's copy remains.
        self.port = self._reactor.adoptStreamPort(self._socket.fileno(), self._family, self._factory)
        self._socket.close()

    def stopService(self):
        super().stopService()
        return self.port.stopListening() if self.port is not None else None


class _WorkerProtocol(protocol.ProcessProtocol):
    def __init__(self, pool, index):
        self.pool = pool
        self.index = index
        self.pid = None
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.pool._ended(self, reason)
        self.ended.callback(None)


class WorkerPool(service.Service):
    """Worker 0's side: runs workers 1..count-1 on the port *listener* bound; owns the
    multiprocess metrics directory *metrics_directory* (if any)."""

    def __init__(self, config, listener, reactor, stop_timeout, metrics_directory=None):
        self._config = config
        self._listener = listener
        self._reactor = reactor
        self._stop_timeout = stop_timeout
        self._metrics_directory = metrics_directory
        self._workers = {}

    def pids(self):
        """Of the running workers (1..N-1)."""
        return [proto.pid for proto in self._workers.values()]

    def _argv(self):
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "--nodaemon", "--pidfile=", "distregistry"]
        if os.path.exists(self._config.source):   # else the workers find it as we did (env/default)
            argv += ["--config", self._config.source]
        return argv

    def _spawn(self, index):
        family, host, _ = _bind_address(self._config.http.addr)
        host = f"[{host}]" if family == socket.AF_INET6 else host
        env = dict(os.environ)
        env[WORKER_ENV] = str(index)
        env[PARENT_ENV] = str(os.getpid())
        # The port worker 0 actually bound (``:0`` picks one): the environment override wins.
        env["REGISTRY_HTTP_ADDR"] = f"{host}:{self._listener.bound_port}"
        env["REGISTRY_HTTP_SECRET"] = self._config.http.secret
        proto = _WorkerProtocol(self, index)
        proto.pid = self._reactor.spawnProcess(proto, sys.executable, self._argv(), env=env,
                                               childFDs={0: 0, 1: 1, 2: 2}).pid
        self._workers[index] = proto

    def startService(self):
        super().startService()
        for index in range(1, self._config.http.workers):
            self._spawn(index)
        log.info("started {count} worker processes", count=self._config.http.workers - 1)

    def _ended(self, proto, reason):
        if self._workers.get(proto.index) is proto:
            del self._workers[proto.index]
        if self._metrics_directory is not None:
            from prometheus_client import multiprocess

            # Its live gauges (in-flight requests, pending events) end with it; counters stay.
            multiprocess.mark_process_dead(proto.pid, self._metrics_directory)
        if self.running:
            log.error("worker {index} exited ({reason}); restarting it", index=proto.index,
                      reason=reason.value)
            self._reactor.callLater(RESPAWN_DELAY, self._respawn, proto.index)

    def _respawn(self, index):
        if self.running and index not in self._workers:
            self._spawn(index)

    async def _stop(self):
        workers = list(self._workers.values())
        for proto in workers:
            proto.transport.signalProcess("TERM")
        ended = defer.DeferredList([p.ended for p in workers])
        timeout = self._reactor.callLater(self._stop_timeout, self._kill, workers)
        await ended
        if timeout.active():
            timeout.cancel()
        if self._metrics_directory is not None:
            shutil.rmtree(self._metrics_directory, ignore_errors=True)

    def _kill(self, workers):
        for proto in workers:
            if not proto.ended.called:
                log.error("worker {index} did not stop; killing it", index=proto.index)
                try:
                    proto.transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass

    def stopService(self):
        super().stopService()
        return defer.ensureDeferred(self._stop())
