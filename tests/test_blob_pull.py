"""Blob pulls end to end: the sendfile path (local file, plain TCP) against the producer path
(TLS, in-memory storage): identical bytes, ranges, keep-alive, clients that leave mid-pull,
a blob shorter than its recorded size, the access log's and metrics' byte counts, and other
requests served while big pulls are under way."""

import hashlib
import http.client
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from distregistry.registry.interfaces import ILocalFileReader
from distregistry.storage.driver import filesystem
from distregistry.storage.driver.filesystem import FilesystemDriver
from distregistry.storage.driver.inmemory import InMemoryDriver
from tests.support.daemon import Daemon, free_port
from tests.support.pki import PKI
from tests.support.secure import SecureDaemon

MiB = 1 << 20
# Not a multiple of the producer's 1 MiB reads nor of sendfile's 4 MiB steps.
DATA = random.Random(9).randbytes(21 * MiB + 12345)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
REPO = "pull/test"
BLOB = f"/v2/{REPO}/blobs/{DIGEST}"


def push(d, repo=REPO, data=DATA):
    r = d.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, r
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = r.header("Location")
    r = d.request("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", body=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    return digest


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI.create(tmp_path_factory.mktemp("pki"))


def _started(d, repo=REPO, data=DATA):
    d.start()
    push(d, repo, data)
    return d


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    base = tmp_path_factory.mktemp("plain")
    debug = free_port()
    # The descriptor cache lets a test shrink a blob below the size the registry still believes.
    d = Daemon("distregistry", root=base / "data", workdir=base / "run", extra_config={
        "storage": {"cache": {"blobdescriptor": "inmemory"}},
        "http": {"debug": {"addr": f"127.0.0.1:{debug}", "prometheus": {"enabled": True}}}})
    d.debug_port = debug
    yield _started(d)
    d.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory, pki):
    base = tmp_path_factory.mktemp("tls")
    d = SecureDaemon("distregistry", root=base / "data", workdir=base / "run", ca_file=str(pki.ca),
                     extra_config={"storage": {"cache": {"blobdescriptor": "inmemory"}},
                                   "http": {"tls": {"certificate": str(pki.server_cert),
                                                    "key": str(pki.server_key)}}})
    yield _started(d)
    d.stop()


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    base = tmp_path_factory.mktemp("memory")
    d = Daemon("distregistry", root=base / "data", workdir=base / "run", extra_config={"storage": {"inmemory": {}}})
    yield _started(d)
    d.stop()


@pytest.fixture(params=["plain", "tls", "memory"])
def daemon(request):
    return request.getfixturevalue(request.param)


def get(conn, path, headers=None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r, r.read()


@pytest.mark.parametrize("rng, start, end", [
    (None, 0, len(DATA)),
    ("bytes=0-0", 0, 1),
    ("bytes=4194000-12582999", 4194000, 12583000),      # across sendfile steps and read chunks
    ("bytes=-5", len(DATA) - 5, len(DATA)),
    (f"bytes={len(DATA) - MiB - 1}-", len(DATA) - MiB - 1, len(DATA)),
], ids=["full", "first-byte", "middle", "suffix", "open-end"])
def test_pull_is_byte_identical(daemon, rng, start, end):
    conn = daemon.connection()
    try:
        r, body = get(conn, BLOB, {"Range": rng} if rng else None)
    finally:
        conn.close()
    assert r.status == (206 if rng else 200)
    assert int(r.getheader("Content-Length")) == end - start
    assert body == DATA[start:end]
    if rng:
        assert r.getheader("Content-Range") == f"bytes {start}-{end - 1}/{len(DATA)}"


def test_kept_alive_connection_serves_the_next_requests(daemon):
    conn = daemon.connection()
    try:
        r, body = get(conn, BLOB)
        sock = conn.sock
        assert r.status == 200 and body == DATA
        r, body = get(conn, BLOB, {"Range": "bytes=10-19"})
        assert r.status == 206 and body == DATA[10:20]
        r, body = get(conn, "/v2/")
        assert r.status == 200 and body == b"{}"
        r, body = get(conn, BLOB)
        assert r.status == 200 and body == DATA
        assert conn.sock is sock, "the server closed the kept-alive connection"
    finally:
        conn.close()


def test_pipelined_request_after_a_pull(daemon):
    s = socket.create_connection(("127.0.0.1", daemon.port))
    if isinstance(daemon, SecureDaemon):
        s = daemon.ssl_context().wrap_socket(s, server_hostname="localhost")
    try:
        s.sendall(f"GET {BLOB} HTTP/1.1\r\nHost: x\r\n\r\n"
                  f"GET {BLOB} HTTP/1.1\r\nHost: x\r\nRange: bytes=3-5\r\nConnection: close\r\n\r\n".encode())
        received = bytearray()
        while chunk := s.recv(1 << 20):
            received += chunk
    finally:
        s.close()
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert rest[:len(DATA)] == DATA
    head, _, body = rest[len(DATA):].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206"), head
    assert body == DATA[3:6]


def _traced_bytes(d, action, syscall="sendfile"):
    """Bytes the daemon moved with *syscall* (sendfile(2); a name strace knows, or a class
    such as %file) while *action* ran (strace)."""
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    out = d.workdir / "strace.out"
    # Every thread already running (the driver's pool), and any started meanwhile (-f).
    tasks = [arg for tid in os.listdir(f"/proc/{d.pid}/task") for arg in ("-p", tid)]
    p = subprocess.Popen(["strace", "-f", "-e", f"trace={syscall}", "-o", str(out)] + tasks,
                         stderr=subprocess.PIPE, text=True)
    try:
        # strace says "attached" on stderr once it traces; unprivileged ptrace is refused instead.
        first = p.stderr.readline()
        if "attached" not in first:
            pytest.skip(f"strace cannot attach: {first.strip()}")
        time.sleep(0.2)    # the other threads' attach lines
        action()
        time.sleep(0.3)    # strace may not have logged the last call's return yet
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(10)
    # With several threads traced, a call may print as "... <unfinished ...>" and end on a
    # later "<... sendfile resumed> ...) = N" line.
    return sum(int(n) for n in re.findall(r"^\S*\s*(?:\w+\(|<\.\.\. \w+ resumed>).*\) = (\d+)$",
                                          out.read_text(), re.M))


@pytest.mark.parametrize("kind", ["plain", "tls", "memory"])
def test_sendfile_only_for_a_local_file_on_plain_tcp(request, kind):
    d = request.getfixturevalue(kind)

    def pull():
        conn = d.connection()
        try:
            assert get(conn, BLOB)[1] == DATA
            assert get(conn, BLOB, {"Range": "bytes=100-1000099"})[1] == DATA[100:1000100]
        finally:
            conn.close()

    sent = _traced_bytes(d, pull)
    assert sent == (len(DATA) + 1000000 if kind == "plain" else 0)


def _data_files_open(d):
    return [f for f in d.open_files() if "/blobs/sha256/" in f and f.endswith("/data")]


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_leaving_mid_pull(plain, how):
    s = socket.create_connection(("127.0.0.1", plain.port))
    try:
        s.sendall(f"GET {BLOB} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < 2 * MiB:
            got += len(s.recv(256 * 1024))
        if how == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()
    deadline = time.monotonic() + 10
    while _data_files_open(plain) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _data_files_open(plain), "the blob's file stayed open"
    conn = plain.connection()
    try:
        assert get(conn, BLOB, {"Range": "bytes=5-9"})[1] == DATA[5:10]
    finally:
        conn.close()


def test_stalled_client_does_not_stall_others(plain):
    s = socket.create_connection(("127.0.0.1", plain.port))
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET {BLOB} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.recv(1)
        # The pull waits for a full socket; everyone else is served meanwhile.
        for _ in range(5):
            assert plain.request("GET", "/v2/", timeout=5).status == 200
        r = plain.request("GET", BLOB, headers={"Range": "bytes=0-99"}, timeout=5)
        assert r.status == 206 and r.body == DATA[:100]
    finally:
        s.close()


def test_requests_answered_during_concurrent_pulls(plain):
    errors, latencies, stop = [], [], threading.Event()

    def pull():
        try:
            for _ in range(3):
                conn = plain.connection()
                try:
                    if get(conn, BLOB)[1] != DATA:
                        errors.append("corrupt body")
                finally:
                    conn.close()
        except Exception as e:
            errors.append(e)

    pullers = [threading.Thread(target=pull) for _ in range(4)]
    for t in pullers:
        t.start()
    conn = plain.connection(timeout=10)
    try:
        while any(t.is_alive() for t in pullers):
            t0 = time.monotonic()
            r, body = get(conn, "/v2/")
            latencies.append(time.monotonic() - t0)
            assert r.status == 200
            time.sleep(0.01)
    finally:
        conn.close()
        for t in pullers:
            t.join()
    assert not errors, errors
    latencies.sort()
    # Generous for a shared machine: 4 pulls must not hold the reactor for whole blobs.
    assert len(latencies) >= 5 and latencies[len(latencies) // 2] < 0.5, latencies


def test_access_log_and_metrics_count_the_bytes_sent(plain):
    def blob_bytes():
        conn = http.client.HTTPConnection("127.0.0.1", plain.debug_port, timeout=10)
        try:
            text = get(conn, "/metrics")[1].decode()
        finally:
            conn.close()
        m = re.search(r'^registry_http_response_size_bytes_sum\{handler="blob"\} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    before = blob_bytes()
    conn = plain.connection()
    try:
        get(conn, BLOB, {"User-Agent": "sizes-full"})
        get(conn, BLOB, {"Range": "bytes=7-1048582", "User-Agent": "sizes-range"})
    finally:
        conn.close()
    assert blob_bytes() - before == len(DATA) + MiB
    deadline = time.monotonic() + 5
    while "sizes-range" not in plain.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = plain.log_text()
    assert re.search(rf'"GET {BLOB} HTTP/1.1" 200 {len(DATA)} "" "sizes-full"', log), log[-2000:]
    assert re.search(rf'"GET {BLOB} HTTP/1.1" 206 {MiB} "" "sizes-range"', log), log[-2000:]


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_blob_shorter_than_its_size_ends_the_connection(request, kind):
    d = request.getfixturevalue(kind)
    data = random.Random(10).randbytes(9 * MiB)
    digest = push(d, "pull/short", data)
    path = f"/v2/pull/short/blobs/{digest}"
    conn = d.connection()
    try:
        assert get(conn, path)[1] == data       # its size is cached now
    finally:
        conn.close()
    hexa = digest.split(":")[1]
    os.truncate(d.root / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data", 5 * MiB)
    conn = d.connection()
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200 and int(r.getheader("Content-Length")) == len(data)
        with pytest.raises(http.client.IncompleteRead) as raised:
            r.read()
        assert raised.value.partial == data[:5 * MiB]
    finally:
        conn.close()
    assert "blob data ended before its size" in d.log_text()
    assert d.request("GET", "/v2/").status == 200


def test_sigterm_lets_a_pull_in_flight_finish(tmp_path):
    """http.draintimeout: the drain closes connections with loseConnection, which must wait
    for the sendfile body and then close (not cut it, not hang)."""
    d = Daemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
               extra_config={"http": {"draintimeout": "10s"}})
    _started(d)
    s = socket.create_connection(("127.0.0.1", d.port))
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(f"GET {BLOB} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = bytearray(s.recv(64 * 1024))
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)                 # the drain is under way, the body still mostly unsent
        while chunk := s.recv(1 << 20):
            received += chunk
            time.sleep(0.001)           # a slow client: ~1 s for the blob
    finally:
        s.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == DATA
    assert d.proc.wait(15) == 0
    assert "draining 1 in-flight requests" in d.log_text()


async def test_only_the_filesystem_reader_is_local(tmp_path):
    fs = FilesystemDriver(str(tmp_path / "root"), maxthreads=2)
    try:
        await fs.put_content("/a/data", b"0123456789")
        r = await fs.reader("/a/data", 3)
        assert ILocalFileReader.providedBy(r) and r.offset == 3
        assert await r.read(4) == b"3456" and r.offset == 7
        assert os.pread(r.fileno(), 3, r.offset) == b"789" and r.offset == 7
        r.close()
    finally:
        await fs.close()
    mem = InMemoryDriver()
    await mem.put_content("/a/data", b"0123456789")
    assert not ILocalFileReader.providedBy(await mem.reader("/a/data"))


def _evict(path):
    """Drop *path*'s pages from the page cache. DONTNEED skips pages still under writeback
    (a busy disk), so it is repeated until the file's first byte is no longer cached."""
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + 10
        while True:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            try:
                os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
            except BlockingIOError:
                return
            assert time.monotonic() < deadline, f"the kernel keeps {path} cached"
            time.sleep(0.05)
    finally:
        os.close(fd)


@pytest.mark.skipif(not filesystem._NOWAIT.enabled, reason="no openat2/RWF_NOWAIT here")
async def test_the_local_reader_tells_and_fills_the_page_cache(tmp_path):
    fs = FilesystemDriver(str(tmp_path / "root"), maxthreads=2)
    try:
        await fs.put_content("/a/data", DATA)
        _evict(tmp_path / "root" / "a" / "data")
        r = await fs.reader("/a/data")
        assert not r.cached(0, 4 * MiB)
        await r.prefetch(0, 4 * MiB)
        assert r.cached(0, 4 * MiB)
        r.close()
    finally:
        await fs.close()


@pytest.mark.skipif(not filesystem._NOWAIT.enabled, reason="no openat2/RWF_NOWAIT here")
def test_an_evicted_blob_is_read_into_the_cache_in_the_pool_first(plain):
    """sendfile on the reactor thread would read a cold blob from disk there: each step is
    prefetched by the driver's threads first, and still goes out with sendfile."""
    data = [f for f in (plain.root / "docker/registry/v2/blobs/sha256").rglob("data")
            if hashlib.sha256(f.read_bytes()).hexdigest() == DIGEST[7:]]
    assert len(data) == 1
    _evict(data[0])

    def pull():
        conn = plain.connection()
        try:
            assert get(conn, BLOB)[1] == DATA
        finally:
            conn.close()

    # The driver's threads read the first step before the reactor sent it; the kernel's
    # readahead, started by that read, keeps ahead of the rest.
    assert _traced_bytes(plain, pull, "preadv,preadv2") >= 4 * MiB
    _evict(data[0])
    assert _traced_bytes(plain, pull) == len(DATA)
