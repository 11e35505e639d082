"""A real S3 endpoint for tests: moto's server mode on a free loopback port.

moto keeps everything in its own process memory; each test takes a fresh bucket from
:meth:`MotoS3.bucket`. Requests are not signature-checked by moto, so bucket creation
here needs no signer (the driver under test signs all of its own requests).
"""

from __future__ import annotations

import http.client
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from .daemon import free_port
from .processes import terminate

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"


class MotoS3:
    def __init__(self, workdir: Path, tls: bool = False):
        self.workdir = Path(workdir)
        self.tls = tls  # moto's own self-signed certificate
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._names = itertools.count(1)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "MotoS3":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = self.workdir / "moto.log"
        log = open(self.log_path, "ab", buffering=0)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(self.port),
             *(["-s"] if self.tls else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            try:
                self._call("GET", "/")
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("moto server did not come up")

    def _call(self, method: str, path: str) -> int:
        if self.tls:
            import ssl

            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def bucket(self, prefix: str = "b") -> str:
        name = f"{prefix}-{os.getpid()}-{next(self._names)}"
        assert self._call("PUT", f"/{name}") == 200
        return name

    def parameters(self, bucket: str, **extra) -> dict:
        """The ``storage.s3`` section for *bucket* on this server."""
        return {
            "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "region": REGION,
            "regionendpoint": self.endpoint, "forcepathstyle": True, "secure": self.tls,
            "bucket": bucket, **extra,
        }

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
