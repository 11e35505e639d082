"""``http.workers``: N distregistry processes on one port (SO_REUSEPORT).

The kernel picks the worker for each connection, so the tests find out which process holds
the server end of a connection (/proc/net/tcp inode -> /proc/<pid>/fd) and keep connecting
until they have one connection to each worker.
"""

import hashlib
import http.client
import os
import signal
import time

from urllib.parse import urlsplit

import pytest

from benchmarks.machine import process_tree
from distregistry.config import Config, ConfigError

pytestmark = pytest.mark.e2e

WORKERS = {"http": {"workers": 2}}


def _socket_inodes(pid):
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _server_inode(server_port, client_port):
    """Inode of the server-side socket of the loopback connection from *client_port*."""
    want_local, want_remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return fields[9]
    return None


def connections_to_each_worker(daemon, pids, attempts=200):
    """{pid: HTTPConnection} with one keep-alive connection to each of *pids*."""
    found, spare = {}, []
    for _ in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        conn.connect()
        inode = None
        for _ in range(100):   # the accept may not have happened yet
            inode = _server_inode(daemon.port, conn.sock.getsockname()[1])
            owner = [p for p in pids if inode and inode in _socket_inodes(p)]
            if owner:
                break
            time.sleep(0.01)
        if owner and owner[0] not in found:
            found[owner[0]] = conn
            if len(found) == len(pids):
                break
        else:
            spare.append(conn)
    for conn in spare:
        conn.close()
    assert len(found) == len(pids), f"connections reached only {list(found)} of {pids}"
    return found


def workers_of(daemon, count):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = process_tree(daemon.pid)
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"expected {count} processes, found {process_tree(daemon.pid)}")


def call(conn, method, url, body=b"", headers=None):
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    conn.request(method, path, body=body, headers={"Content-Length": str(len(body)), **(headers or {})})
    resp = conn.getresponse()
    return resp, resp.read()


def test_an_upload_spread_over_two_workers_commits(daemons):
    # No http.secret: worker 0's generated one must be the one every worker signs with.
    d = daemons.start("distregistry", extra_config=WORKERS)
    pids = workers_of(d, 2)
    a, b = connections_to_each_worker(d, pids).values()
    first, second = os.urandom(300_000), os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(first + second).hexdigest()

    resp, _ = call(a, "POST", "/v2/spread/blobs/uploads/")
    assert resp.status == 202
    location = resp.getheader("Location")
    resp, body = call(b, "PATCH", location, first, {"Content-Range": f"0-{len(first) - 1}"})
    assert resp.status == 202, body
    location = resp.getheader("Location")
    resp, body = call(a, "PATCH", location, second,
                      {"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"})
    assert resp.status == 202, body
    location = resp.getheader("Location")
    sep = "&" if "?" in location else "?"
    resp, body = call(b, "PUT", f"{location}{sep}digest={digest}")
    assert resp.status == 201, body
    for conn in (a, b):
        resp, body = call(conn, "GET", f"/v2/spread/blobs/{digest}")
        assert resp.status == 200 and body == first + second
        conn.close()
    # The upload purger runs in worker 0 only.
    assert d.log_text().count("Starting upload purge") == 1, d.log_tail()


def _gone(pids, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{p}") and "zombie" not in open(f"/proc/{p}/status").read()
                   for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_every_worker(daemons):
    d = daemons.start("distregistry", extra_config={"http": {"workers": 3, "secret": "s"}})
    pids = workers_of(d, 3)
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(15)
    assert _gone(pids), [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_workers_die_with_worker_0_even_on_sigkill(daemons):
    d = daemons.start("distregistry", extra_config={"http": {"workers": 2, "secret": "s"}})
    pids = workers_of(d, 2)
    d.proc.kill()
    d.proc.wait(15)
    assert _gone(pids), [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_a_dead_worker_is_respawned(daemons):
    d = daemons.start("distregistry", extra_config={"http": {"workers": 2, "secret": "s"}})
    worker = [p for p in workers_of(d, 2) if p != d.pid][0]
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = process_tree(d.pid)
        if len(pids) == 2 and worker not in pids:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no new worker: {process_tree(d.pid)}")
    assert "worker 1 exited" in d.log_text()


@pytest.mark.parametrize("value, error", [
    (0, "http.workers: must be at least 1"),
    ("two", "http.workers: expected an integer"),
])
def test_workers_must_be_a_positive_integer(value, error):
    with pytest.raises(ConfigError) as e:
        Config.parse({"version": 0.1, "storage": {"inmemory": {}}, "http": {"workers": value}}, environ={})
    assert error in str(e.value)


def test_workers_need_tcp():
    with pytest.raises(ConfigError) as e:
        Config.parse({"version": 0.1, "storage": {"inmemory": {}},
                      "http": {"net": "unix", "addr": "/tmp/x.sock", "workers": 2}}, environ={})
    assert "http.workers: more than one worker needs net: tcp" in str(e.value)
    assert Config.parse({"version": 0.1, "storage": {"inmemory": {}}}, environ={}).http.workers == 1
