"""Start and stop registry daemons (distregistry or the Go reference) for end-to-end tests.

Usage::

    d = Daemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run")
    d.start()                       # waits until GET /v2/ answers 200
    r = d.request("GET", "/v2/")    # tiny synchronous HTTP helper
    assert r.status == 200
    d.stop()                        # SIGTERM, then SIGKILL after 10 s

Every daemon is started directly (no shell) so ``.pid`` is the registry process itself and
``vmhwm_kib()`` measures the registry, not a wrapper.  stdout and stderr go to ``.log_path``
(inside ``workdir``, never in the daemon's cwd); ``log_tail()`` is used in failure messages.
"""

from __future__ import annotations

import copy
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = ("distregistry", "go")
GO_REGISTRY_BIN = "/usr/bin/docker-registry"

READY_TIMEOUT = 15.0
# storage subsections that are not a driver (registry:2's reserved keys)
STORAGE_RESERVED = {"maintenance", "cache", "delete", "redirect", "tag"}
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deep_merge(base: dict, extra: Mapping | None) -> dict:
    """Recursively merge ``extra`` into a copy of ``base`` (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def base_config(kind: str, root: Path, port: int) -> dict:
    """The registry:2-style config both daemons understand (see the harness contract)."""
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if kind == "go":
        # Avoid the "No HTTP secret provided" warning; keep Go quiet about its upload purger.
        cfg["http"]["secret"] = "distregistry-e2e-secret"
    return cfg


@dataclass
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class DaemonError(AssertionError):
    """Raised when a daemon fails to start; the message carries its log tail."""


@dataclass
class Daemon:
    """One registry process.  ``kind`` is ``"distregistry"`` or ``"go"``.

    ``root``: storage root directory (created).  ``workdir``: where config.yml and the log go
    (created); the process's cwd is ``workdir / "cwd"`` (an empty dir) unless ``cwd`` is given.
    ``extra_config`` is deep-merged into the base config; ``env`` entries are added to (or, when
    the value is None, removed from) the inherited environment.
    """

    kind: str
    root: Path
    workdir: Path
    extra_config: Mapping | None = None
    env: Mapping[str, str | None] | None = None
    cwd: Path | None = None
    port: int = 0
    name: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)
    config: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown daemon kind {self.kind!r}; expected one of {KINDS}")
        self.root = Path(self.root)
        self.workdir = Path(self.workdir)
        if not self.name:
            self.name = self.kind
        self.cwd = Path(self.cwd) if self.cwd else self.workdir / "cwd"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / f"{self.name}.log"
        self._log_file = None
        self._exit_code: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._exit_code if self.proc is None else self.proc.poll()

    def docker_ref(self, repo: str, tag_or_digest: str | None = None) -> str:
        """``docker://127.0.0.1:<port>/<repo>[:tag|@digest]`` for skopeo."""
        ref = f"docker://{self.host}/{repo}"
        if tag_or_digest:
            sep = "@" if ":" in tag_or_digest else ":"  # tags never contain ':'
            ref += sep + tag_or_digest
        return ref

    # ------------------------------------------------------------------ command line
    def command(self) -> list[str]:
        if self.kind == "distregistry":
            return [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "--logfile=-",
                "distregistry",
                "-c",
                str(self.config_path),
            ]
        return [GO_REGISTRY_BIN, "serve", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Never let a stray REGISTRY_* variable of the calling environment reconfigure the daemon.
        for key in list(env):
            if key.startswith("REGISTRY_"):
                del env[key]
        if self.kind == "distregistry":
            env["PYTHONPATH"] = str(REPO_ROOT)
            env["PYTHONUNBUFFERED"] = "1"
        for key, value in (self.env or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = READY_TIMEOUT, attempts: int = 3) -> "Daemon":
        """Start the process and wait until ``GET /v2/`` answers 200.

        A port is picked at run time; if the process dies before becoming ready and its log says
        the address was in use (a race with another process), a new port is tried.
        """
        assert not self.running, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port
        for attempt in range(attempts):
            if not fixed_port:
                self.port = free_port()
            self.config = deep_merge(base_config(self.kind, self.root, self.port), self.extra_config)
            if set((self.extra_config or {}).get("storage", {})) - STORAGE_RESERVED - {"filesystem"}:
                # Another driver chosen (s3, ...): the base config's filesystem would be a second one.
                self.config["storage"].pop("filesystem", None)
            self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except DaemonError as exc:
                in_use = "address already in use" in self.log_text().lower()
                self.stop()
                if in_use and not fixed_port and attempt + 1 < attempts:
                    continue
                raise exc
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        # Append, so a restart on the same workdir keeps the earlier output.
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._log_file.write(f"===== start {self.kind} {' '.join(self.command())}\n".encode())
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(self.cwd),
            env=self.environment(),
        )

    # What GET /v2/ answers once the daemon is up (401 too behind auth: SecureDaemon).
    ready_statuses = (200,)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise DaemonError(
                    f"{self.kind} exited with status {code} before becoming ready\n"
                    f"--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            try:
                r = self.request("GET", "/v2/", timeout=2)
                if r.status in self.ready_statuses:
                    return
                last_error = f"GET /v2/ -> {r.status} {r.body[:200]!r}"
            except OSError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        raise DaemonError(
            f"{self.kind} (pid {self.proc.pid}) not ready on {self.url} after {timeout:.0f}s "
            f"(last: {last_error})\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL.  Returns the exit status."""
        if self.proc is None:
            return self._exit_code
        proc = self.proc
        try:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    try:
                        proc.kill()
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=30)
            self._exit_code = proc.returncode
        finally:
            self.proc = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        return self._exit_code

    def restart(self, timeout: float = READY_TIMEOUT) -> "Daemon":
        """Stop and start again on the same port, root and config."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _proc_status(self) -> dict[str, str]:
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key] = value.strip()
        return out

    def vmhwm_kib(self) -> int:
        """Peak resident set size (``VmHWM`` from /proc/<pid>/status) in KiB."""
        return int(self._proc_status()["VmHWM"].split()[0])

    def vmrss_kib(self) -> int:
        return int(self._proc_status()["VmRSS"].split()[0])

    def open_files(self) -> list[str]:
        """Targets of the process's file descriptors (sockets/pipes show as ``socket:[..]``)."""
        out = []
        fd_dir = f"/proc/{self.pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            return out
        for name in names:
            try:
                out.append(os.readlink(f"{fd_dir}/{name}"))
            except OSError:
                pass
        return out

    # ------------------------------------------------------------------ HTTP helper
    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Response:
        """One request on a fresh connection.  ``path`` may be absolute (``http://...``) as in a
        Location header; only its path+query is used.  An iterable body needs Content-Length in
        ``headers`` (sent as-is, not chunked)."""
        if path.startswith("http://") or path.startswith("https://"):
            from urllib.parse import urlsplit

            parts = urlsplit(path)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.reason, resp.headers, data)
        finally:
            conn.close()


class DaemonSet:
    """Tracks daemons started by a fixture so teardown stops all of them (by PID)."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)
        self.daemons: list[Daemon] = []
        self._counter = 0

    def start(
        self,
        kind: str,
        root: Path | None = None,
        extra_config: Mapping | None = None,
        env: Mapping[str, str | None] | None = None,
        name: str | None = None,
        cwd: Path | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> Daemon:
        """Start a ``kind`` daemon on ``root`` (default: a fresh dir) with ``extra_config``."""
        self._counter += 1
        label = name or f"{kind}-{self._counter}"
        workdir = self.base_dir / label
        d = Daemon(
            kind=kind,
            root=Path(root) if root else workdir / "data",
            workdir=workdir,
            extra_config=extra_config,
            env=env,
            cwd=cwd,
            name=label,
        )
        self.daemons.append(d)
        d.start(timeout=timeout)
        return d

    def stop_all(self) -> None:
        errors = []
        for d in reversed(self.daemons):
            try:
                d.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def log_report(self, lines: int = 25) -> str:
        parts = []
        for d in self.daemons:
            parts.append(
                f"--- {d.name} ({d.kind}, port {d.port}, exit {d.returncode}) {d.log_path} ---\n"
                f"{d.log_tail(lines)}"
            )
        return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# TLS probe.  Clients told to use an "insecure" registry (skopeo --tls-verify=false, podman,
# dockerd's insecure-registries) first try HTTPS and only fall back to plain HTTP when the TLS
# handshake fails.  Go's net/http answers a TLS ClientHello on a plain-HTTP port at once
# ("HTTP/1.0 400 Bad Request ... Client sent an HTTP request to an HTTPS server") so the client
# falls back immediately; a server that just waits for a request line would make every client
# call stall for the client's TLS handshake timeout (10 s in Go's http.Transport).  distregistry
# answers like Go (distregistry/api/drain.py RegistryChannel); test_e2e_skopeo.py checks it.
# ---------------------------------------------------------------------------------------------


def tls_probe_seconds(port: int, timeout: float = 5.0) -> tuple[float, str]:
    """Start a TLS handshake against plain-HTTP ``127.0.0.1:port`` like an insecure client does.
    Returns (seconds until the server made the handshake fail, how it failed); a server that
    stalls yields ``(timeout, "timeout")``."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.close()
            return time.monotonic() - t0, "handshake succeeded (not a plain-HTTP port?)"
        except socket.timeout:
            return timeout, "timeout"
        except (ssl.SSLError, OSError) as exc:
            return time.monotonic() - t0, f"{type(exc).__name__}: {exc}"
