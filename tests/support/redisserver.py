"""A real redis-server (Debian's) on a free loopback port, started and stopped by tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .daemon import free_port
from .processes import terminate

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, workdir: Path, tls: bool = False):
        self.workdir = Path(workdir)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        # TLS only (no plain port), certificates made by make_certificates(); clients need not
        # present one.
        self.tls = tls

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        log = open(self.workdir / "redis.log", "ab", buffering=0)
        listen = ["--port", str(self.port)]
        if self.tls:
            self.ca = make_certificates(self.workdir)
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.workdir / "server.pem"),
                      "--tls-key-file", str(self.workdir / "server.key"), "--tls-ca-cert-file", str(self.ca),
                      "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--maxmemory-policy", "allkeys-lru"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.tls:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                if self.command("PING") == "+PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("redis-server did not come up")

    def command(self, *args: str) -> str:
        """One command in RESP, the first reply line back (enough for checks in tests)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(("*%d\r\n" % len(args) + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode())
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode().split("\r\n")[0]

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


def make_certificates(directory: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI); the CA's path."""
    d = Path(directory)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=distregistry test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return d / "ca.pem"
