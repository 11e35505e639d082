"""distregistry as a process: start-up failures, where the configuration comes from, REGISTRY_*
overrides, the ``distregistry`` CLI, log formats and the access log, shutdown (drain, exit
status), a port in use, a unix socket, and replicas sharing ``http.secret`` (the Go reference
among them).

Every process is started by the harness (``tests/support/daemon.py``) or by ``Run`` below and
stopped by PID; all listen on 127.0.0.1 or a socket under the test's tmp dir. Start-ups that
are independent are done in parallel to keep the module at ~30 s.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml

try:
    from support.daemon import REPO_ROOT, Daemon, free_port
    from support.goregistry import blob_data_path, layer_link, read_link, requires_go
except ImportError:  # tests is a package
    from tests.support.daemon import REPO_ROOT, Daemon, free_port
    from tests.support.goregistry import blob_data_path, layer_link, read_link, requires_go

pytestmark = pytest.mark.e2e

PY = sys.executable
TWISTD = [PY, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "--logfile=-", "distregistry"]
MODULE = [PY, "-m", "distregistry"]
CONFIG = "{config}"  # replaced by the path of the config file the harness writes
MiB = 1 << 20



# ---------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------
def clean_env(extra: dict | None = None) -> dict:
    """The environment a distregistry process gets: no inherited REGISTRY_*, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


@dataclass
class Proc(Daemon):
    """A harness Daemon with its own command line (``argv``; ``CONFIG`` stands for the config
    file's path), stdout (the access log) and stderr (the application log) in separate files,
    and ``edit``: a function that may change the config dict before it is written."""

    argv: list = field(default_factory=list)
    edit: Callable[[dict], None] | None = None

    def command(self) -> list[str]:
        if not self.argv:
            return super().command()
        return [str(self.config_path) if a == CONFIG else a for a in self.argv]

    @property
    def out_path(self) -> Path:
        return self.workdir / f"{self.name}.stdout"

    @property
    def err_path(self) -> Path:
        return self.workdir / f"{self.name}.stderr"

    def _spawn(self) -> None:
        if self.edit is not None:
            self.edit(self.config)
            self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self._log_file = open(self.out_path, "ab", buffering=0)
        self._err_file = open(self.err_path, "ab", buffering=0)
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._err_file,
            cwd=str(self.cwd),
            env=self.environment(),
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        try:
            return super().stop(timeout)
        finally:
            if getattr(self, "_err_file", None) is not None:
                self._err_file.close()
                self._err_file = None

    def out_text(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def err_text(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def log_text(self) -> str:  # what failure reports and the harness's port-race retry read
        return self.err_text() + self.out_text()


def new_proc(dset, name: str, **kw) -> Proc:
    """A Proc tracked by *dset* (so the fixture's teardown stops it), not started yet."""
    workdir = dset.base_dir / name
    kw.setdefault("root", workdir / "data")
    p = Proc(kind=kw.pop("kind", "distregistry"), workdir=workdir, name=name, **kw)
    dset.daemons.append(p)
    return p


def start_all(*procs: Proc) -> None:
    """Start several daemons at once (each start is ~1 s of Python imports)."""
    with concurrent.futures.ThreadPoolExecutor(len(procs)) as pool:
        for f in [pool.submit(p.start) for p in procs]:
            f.result()


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Run:
    """A process expected to exit by itself (a failing start-up, ``config check``): output to
    files, optionally watching that it never accepts a connection on ``watch_port``."""

    def __init__(self, workdir: Path, name: str, argv: list[str], env: dict | None = None,
                 watch_port: int | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.name, self.argv, self.watch_port = name, argv, watch_port
        self._out = open(workdir / f"{name}.out", "w+b")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                                     cwd=str(workdir), env=clean_env(env))
        self.port_was_open = False
        self.output = ""

    def poll(self) -> bool:
        """True once exited; checks the watched port while it runs."""
        if self.proc.poll() is not None:
            return True
        if self.watch_port and port_open(self.watch_port):
            self.port_was_open = True
        return False

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.seek(0)
        self.output = self._out.read().decode(errors="replace")
        self._out.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def __repr__(self) -> str:
        return f"<{self.name} rc={self.returncode}\n{self.output[-3000:]}>"


def run_all(runs: list[Run], timeout: float = 20.0) -> None:
    """Wait for every run to exit (killing the stragglers after *timeout*)."""
    deadline = time.monotonic() + timeout
    try:
        while not all([r.poll() for r in runs]) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for r in runs:
            r.finish()


# ---------------------------------------------------------------------------------------------
# registry helpers
# ---------------------------------------------------------------------------------------------
def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(d: Daemon, repo: str, data: bytes) -> str:
    r = d.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, (r.status, r.body)
    digest = sha256(data)
    r = d.request("PUT", f"{r.header('Location')}&digest={digest}", body=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, (r.status, r.body)
    assert r.header("Docker-Content-Digest") == digest
    return digest


def error_codes(r) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]


def base_yaml(root: Path, port: int, **sections) -> dict:
    cfg = {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(root)}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret"},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def drop_delete_section(cfg: dict) -> None:
    cfg["storage"].pop("delete", None)


# ---------------------------------------------------------------------------------------------
# 1. A bad configuration stops start-up
# ---------------------------------------------------------------------------------------------
BAD_CONFIGS = [
    # (name, config sections, env, key path that must be named, other words the message must have)
    ("purge-age", {"storage": {"maintenance": {"uploadpurging": {
        "enabled": True, "age": "abc", "interval": "24h", "dryrun": False}}}}, None,
     "storage.maintenance.uploadpurging.age", ["abc"]),
    ("addr-port", {"http": {"addr": "127.0.0.1:abc"}}, None, "http.addr", ["127.0.0.1:abc"]),
    ("log-level", {"log": {"level": "loud"}}, None, "log.level", ["loud"]),
    ("driver", {"storage": {"s4": {"bucket": "b"}}}, None, "storage.s4", ["unknown storage driver"]),
    ("auth-token", {"auth": {"token": {"realm": "r", "service": "s", "issuer": "i"}}}, None,
     "auth.token", ["signing key"]),
    ("env-log-level", {}, {"REGISTRY_LOG_LEVEL": "loud"}, "log.level", ["loud", "REGISTRY_LOG_LEVEL"]),
]


def test_bad_config_fails_startup_naming_file_and_key(tmp_path):
    runs, expected = [], {}
    for name, sections, env, keypath, words in BAD_CONFIGS:
        port = free_port()
        cfg = base_yaml(tmp_path / "data", port)
        for key, value in sections.items():
            if key == "storage" and "s4" in value:
                cfg["storage"] = value  # the only driver
            else:
                cfg.setdefault(key, {}).update(value)
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        runs.append(Run(tmp_path, name, TWISTD + ["-c", str(path)], env, watch_port=port))
        expected[name] = (path, keypath, words)
    # The same errors through `distregistry serve` (one file, one override).
    runs.append(Run(tmp_path, "serve-log-level", MODULE + ["serve", str(tmp_path / "log-level.yml")],
                    watch_port=None))
    expected["serve-log-level"] = expected["log-level"]
    run_all(runs)

    for r in runs:
        path, keypath, words = expected[r.name]
        assert r.returncode not in (0, None), r
        assert not r.port_was_open, f"{r.name}: the port was opened before the config was rejected"
        assert f"{path}: {keypath}" in r.output, r
        for word in words:
            assert word in r.output, (word, r)
        assert "Traceback" not in r.output, r
    env_run = next(r for r in runs if r.name == "env-log-level")
    assert re.search(r"log\.level: .*loud.*\(from REGISTRY_LOG_LEVEL\)", env_run.output), env_run


def test_yaml_error_and_missing_file_fail_startup(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  addr: [1, 2\n  secret: x\n")
    missing = tmp_path / "nope" / "config.yml"
    runs = [
        Run(tmp_path, "yaml", TWISTD + ["-c", str(broken)]),
        Run(tmp_path, "missing", TWISTD + ["-c", str(missing)]),
        Run(tmp_path, "missing-env", MODULE + ["serve"], {"REGISTRY_CONFIGURATION_PATH": str(missing)}),
    ]
    run_all(runs)
    yaml_run, missing_run, missing_env = runs
    for r in runs:
        assert r.returncode not in (0, None), r
        assert "Traceback" not in r.output, r
    assert re.search(rf"{re.escape(str(broken))}: line 6: invalid YAML", yaml_run.output), yaml_run
    for r in (missing_run, missing_env):
        assert f"{missing}: cannot read the configuration" in r.output, r
        assert "No such file or directory" in r.output, r


# ---------------------------------------------------------------------------------------------
# 2./3. Where the configuration comes from; REGISTRY_* overrides end to end
# ---------------------------------------------------------------------------------------------
def test_environment_overrides_end_to_end(daemons):
    """The file says port A, no delete section, no headers; the environment moves the daemon
    to port B, enables delete and adds a two-valued header (registry:2: key lower-cased by the
    override, then canonicalised; the value is YAML)."""
    file_port, env_port = free_port(), free_port()

    def edit(cfg):
        cfg["http"]["addr"] = f"127.0.0.1:{file_port}"
        drop_delete_section(cfg)

    d = new_proc(daemons, "env", port=env_port, edit=edit, env={
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{env_port}",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_HTTP_HEADERS_X-TEST": "[a, b]",
    })
    d.start()  # waits for GET /v2/ 200 on env_port
    assert "delete" not in d.config["storage"] and d.config["http"]["addr"].endswith(f":{file_port}")
    assert not port_open(file_port), "the port of the file is open too"

    r = d.request("GET", "/v2/")
    assert r.status == 200
    assert r.headers.get_all("X-Test") == ["a", "b"], r.headers.items()

    digest = push_blob(d, "env/del", b"delete me")
    r = d.request("DELETE", f"/v2/env/del/blobs/{digest}")
    assert r.status == 202, (r.status, r.body)
    assert d.request("HEAD", f"/v2/env/del/blobs/{digest}").status == 404


def test_configuration_path_variable_without_dash_c(daemons):
    """twistd without -c reads $REGISTRY_CONFIGURATION_PATH; that file has no delete section,
    so delete stays off (the control for the override test above)."""
    d = new_proc(daemons, "cfgpath", argv=TWISTD, edit=drop_delete_section)
    d.env = {"REGISTRY_CONFIGURATION_PATH": str(d.config_path)}
    d.start()
    assert f"config {d.config_path}," in d.err_text()
    digest = push_blob(d, "cfgpath/x", b"kept")
    assert blob_data_path(d.root, digest).read_bytes() == b"kept"
    r = d.request("DELETE", f"/v2/cfgpath/x/blobs/{digest}")
    assert r.status == 405 and error_codes(r) == ["UNSUPPORTED"], (r.status, r.body)


def test_embedded_default_with_overridden_root_and_port(daemons, tmp_path):
    """No -c, no REGISTRY_CONFIGURATION_PATH: the embedded default runs, moved off
    /var/lib/registry and :5000 by the two overrides the README documents."""
    root, port = tmp_path / "registry-root", free_port()
    var_lib_existed = os.path.exists("/var/lib/registry")
    d = new_proc(daemons, "embedded", argv=MODULE + ["serve"], root=root, port=port, env={
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root),
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
    })
    d.start()
    r = d.request("GET", "/v2/")
    assert r.status == 200 and r.json() == {}
    assert r.header("X-Content-Type-Options") == "nosniff"  # a header only the embedded default sets
    assert "config <embedded default>" in d.err_text()
    assert "service=registry" in d.err_text()  # its log.fields

    digest = push_blob(d, "embedded/x", b"under the overridden root")
    assert blob_data_path(root, digest).read_bytes() == b"under the overridden root"
    assert read_link(layer_link(root, "embedded/x", digest)) == digest
    r = d.request("DELETE", f"/v2/embedded/x/blobs/{digest}")  # the embedded default: delete off
    assert r.status == 405
    assert list(d.cwd.iterdir()) == []
    if not var_lib_existed:
        assert not os.path.exists("/var/lib/registry")


# ---------------------------------------------------------------------------------------------
# 4. The CLI
# ---------------------------------------------------------------------------------------------
def test_cli_serve_and_config_check(daemons, tmp_path):
    d = new_proc(daemons, "serve", argv=MODULE + ["serve", CONFIG])
    good = tmp_path / "good.yml"
    good.write_text(yaml.safe_dump(base_yaml(tmp_path / "data", free_port(), log={"level": "debug"})))
    legacy = tmp_path / "legacy.yml"
    legacy.write_text(yaml.safe_dump({**base_yaml(tmp_path / "data", free_port()), "log": {}, "loglevel": "warn"}))
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(base_yaml(tmp_path / "data", free_port(),
                                            http={"draintimeout": "soon"})))
    checks = [Run(tmp_path, n, MODULE + ["config", "check", str(p)]) for n, p in
              [("good", good), ("legacy", legacy), ("bad", bad)]]
    d.start()
    run_all(checks)

    assert push_blob(d, "cli/serve", b"served by distregistry serve")
    assert d.command()[1:4] == ["-m", "distregistry", "serve"]

    ok, warned, failed = checks
    assert ok.returncode == 0 and ok.output.strip() == f"{good}: ok", ok
    assert warned.returncode == 0 and f"{legacy}: ok" in warned.output, warned
    assert "warning:" in warned.output and "loglevel" in warned.output, warned
    assert failed.returncode == 1, failed
    assert f"{bad}: http.draintimeout:" in failed.output and "soon" in failed.output, failed
    assert "ok" not in failed.output.split(), failed


# ---------------------------------------------------------------------------------------------
# 5. Logging
# ---------------------------------------------------------------------------------------------
ACCESS_LINE = re.compile(
    r'^(?P<host>\S+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
    r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/1\.[01]" (?P<status>\d{3}) (?P<size>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"$'
)
_QUOTED = r'"(?:[^"\\]|\\.)*"'
TEXT_LINE = re.compile(
    rf'^time="\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z" level=(?P<level>debug|info|warning|error|fatal|panic) '
    rf'msg=(?P<msg>{_QUOTED})(?P<fields>(?: [^\s=]+=(?:{_QUOTED}|[^\s"]*))*)$'
)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$")
FIELDS = {"service": "registry", "environment": "e2e"}


def _broken_root(cfg: dict) -> None:
    """A storage root where `repositories` is a file: every upload start fails in the driver."""
    root = Path(cfg["storage"]["filesystem"]["rootdirectory"])
    (root / "docker" / "registry" / "v2").mkdir(parents=True, exist_ok=True)
    (root / "docker" / "registry" / "v2" / "repositories").write_text("not a directory\n")


@pytest.fixture(scope="module")
def log_daemons(module_daemons):
    """One daemon per log configuration, started together."""
    specs = {
        "json": ({"formatter": "json", "fields": FIELDS}, _broken_root),
        "logstash": ({"formatter": "logstash", "fields": FIELDS}, None),
        "text": ({"formatter": "text", "fields": FIELDS}, None),
        "error-level": ({"level": "error", "formatter": "text"}, _broken_root),
        "no-accesslog": ({"accesslog": {"disabled": True}}, None),
    }
    procs = {}
    for name, (log_cfg, edit) in specs.items():
        procs[name] = new_proc(module_daemons, f"log-{name}", extra_config={
            "log": log_cfg, "http": {"secret": "log-test-secret"}}, edit=edit)
    start_all(*procs.values())
    return procs


def _exercise(d: Proc, agent: str, upload: bool = True) -> list[tuple[str, str, int]]:
    """A few requests with a recognisable User-Agent; returns (method, path, status) of each."""
    done = []
    for method, path in [("GET", "/v2/"), ("GET", "/v2/logs/x/tags/list"), ("HEAD", "/v2/")]:
        r = d.request(method, path, headers={"User-Agent": agent})
        done.append((method, path, r.status))
    if upload:
        r = d.request("POST", "/v2/logs/x/blobs/uploads/", headers={"User-Agent": agent})
        done.append(("POST", "/v2/logs/x/blobs/uploads/", r.status))
    return done


def _app_lines(d: Proc) -> list[str]:
    return [line for line in d.err_text().splitlines() if line.strip()]


def test_json_formatter_and_handler_error(log_daemons):
    """Every stderr line is one JSON object with level/msg/time and log.fields, a multi-line
    traceback included; the client of the failing request gets a JSON 500 UNKNOWN that leaks
    nothing of it."""
    d = log_daemons["json"]
    requests = _exercise(d, "json-agent/1")
    assert requests[-1][2] == 500
    r = d.request("POST", "/v2/logs/x/blobs/uploads/")
    assert r.status == 500, (r.status, r.body)
    assert r.header("Content-Type", "").startswith("application/json")
    assert error_codes(r) == ["UNKNOWN"]
    for leak in (b"Traceback", b"StorageDriverError", b".py", b"Not a directory", str(d.root).encode()):
        assert leak not in r.body, r.body
    d.stop()

    records = []
    for line in _app_lines(d):
        rec = json.loads(line)  # raises on a non-JSON line
        assert isinstance(rec["level"], str) and isinstance(rec["msg"], str), rec
        assert RFC3339.match(rec["time"]), rec
        assert {k: rec.get(k) for k in FIELDS} == FIELDS, rec
        records.append(rec)
    msgs = [rec["msg"] for rec in records]
    assert any(m.startswith("distregistry starting") for m in msgs), msgs
    assert any(rec["level"] == "info" for rec in records)
    tracebacks = [rec for rec in records if "Traceback (most recent call last)" in rec["msg"]]
    assert len(tracebacks) == 2, msgs  # one per failed POST
    assert all("StorageDriverError" in rec["msg"] and "POST /v2/logs/x/blobs/uploads/" in rec["msg"]
               for rec in tracebacks)
    # The access log stays on stdout, in its own format.
    out = d.out_text().splitlines()
    assert out and all(ACCESS_LINE.match(line) for line in out), out


def test_logstash_formatter(log_daemons):
    d = log_daemons["logstash"]
    assert [s for _, _, s in _exercise(d, "logstash-agent/1")] == [200, 404, 200, 202]
    d.stop()
    records = [json.loads(line) for line in _app_lines(d)]
    assert records
    for rec in records:
        assert rec["@version"] == "1", rec
        assert RFC3339.match(rec["@timestamp"]), rec
        assert isinstance(rec["message"], str) and "msg" not in rec, rec
        assert {k: rec.get(k) for k in FIELDS} == FIELDS, rec
    assert any("upload" in rec["message"] and "started" in rec["message"] for rec in records), records


def test_text_formatter_and_access_log(log_daemons):
    """logrus-like `time="..." level=... msg="..." k=v` on stderr; on stdout exactly one Apache
    combined line per request."""
    d = log_daemons["text"]
    agent = "text-agent/1.0 (access log test)"
    requests = _exercise(d, agent)
    d.stop()
    lines = _app_lines(d)
    assert lines
    for line in lines:
        m = TEXT_LINE.match(line)
        assert m, line
        assert " service=registry" in m["fields"] and " environment=e2e" in m["fields"], line
    assert any(TEXT_LINE.match(line)["level"] == "info" for line in lines)

    out = d.out_text().splitlines()
    parsed = [ACCESS_LINE.match(line) for line in out]
    assert all(parsed), out
    mine = [m for m in parsed if m["agent"] == agent]
    assert [(m["method"], m["uri"], int(m["status"])) for m in mine] == requests, out
    assert all(m["host"] == "127.0.0.1" and m["referer"] == "" for m in mine)
    get_v2 = next(line for line, m in zip(out, parsed) if m["agent"] == agent)
    assert re.fullmatch(rf'127\.0\.0\.1 - - \[[^\]]+\] "GET /v2/ HTTP/1\.1" 200 2 "" "{re.escape(agent)}"', get_v2)
    # The body size of a 404 is logged (HEAD: nothing sent).
    sizes = {m["method"] + " " + m["uri"]: int(m["size"]) for m in mine}
    assert sizes["GET /v2/logs/x/tags/list"] > 0 and sizes["HEAD /v2/"] == 0, sizes


def test_log_level_error_keeps_only_errors(log_daemons):
    d = log_daemons["error-level"]
    requests = _exercise(d, "error-level-agent")
    assert requests[-1][2] == 500  # the broken root: one error to log
    d.stop()
    lines = _app_lines(d)
    levels = [TEXT_LINE.match(line)["level"] for line in lines]
    assert levels and set(levels) <= {"error", "fatal", "panic"}, lines
    assert any("StorageDriverError" in line for line in lines), lines
    assert not any("distregistry starting" in line for line in lines)
    assert len([line for line in d.out_text().splitlines() if "error-level-agent" in line]) == 4


def test_access_log_disabled(log_daemons):
    d = log_daemons["no-accesslog"]
    assert [s for _, _, s in _exercise(d, "quiet-agent")] == [200, 404, 200, 202]
    d.stop()
    assert d.out_text() == ""
    assert any("distregistry starting" in line for line in _app_lines(d))  # app log unaffected


# ---------------------------------------------------------------------------------------------
# 6. Lifecycle
# ---------------------------------------------------------------------------------------------
class SlowUpload(threading.Thread):
    """A monolithic PUT of *data* written in 256 KiB pieces with a pause after each (~5 MiB/s)."""

    def __init__(self, d: Daemon, repo: str, data: bytes, piece: int = 256 << 10, pause: float = 0.05):
        super().__init__(daemon=True)
        r = d.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202, (r.status, r.body)
        self.d, self.data, self.piece, self.pause = d, data, piece, pause
        self.url = f"{r.header('Location')}&digest={sha256(data)}"
        self.sent = 0
        self.halfway = threading.Event()
        self.response = None
        self.error: Exception | None = None

    def _body(self):
        for i in range(0, len(self.data), self.piece):
            yield self.data[i:i + self.piece]
            self.sent += self.piece
            if self.sent >= len(self.data) // 3:
                self.halfway.set()
            time.sleep(self.pause)

    def run(self):
        try:
            self.response = self.d.request("PUT", self.url, body=self._body(), timeout=30, headers={
                "Content-Length": str(len(self.data)), "Content-Type": "application/octet-stream"})
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.halfway.set()


# filesystem: its thread pool must outlive the drain (it used to close in a "before shutdown"
# trigger, running alongside the drain: 500 "filesystem driver is closed"; fixed in 3464d60).
@pytest.mark.parametrize("driver", ["inmemory", "filesystem"])
def test_sigterm_drains_inflight_upload_then_exits_0(daemons, driver):
    """http.draintimeout: 10s. SIGTERM while a ~3 s upload is in flight: the port closes at once,
    the upload still completes (201, committed), the process exits 0 (as registry:2 does after a
    graceful Shutdown)."""
    def edit(cfg):
        if driver == "inmemory":
            cfg["storage"] = {"inmemory": {}, "delete": {"enabled": True}}

    d = new_proc(daemons, f"drain-{driver}", extra_config={"http": {"draintimeout": "10s"}}, edit=edit)
    d.start()
    data = os.urandom(15 * MiB)
    up = SlowUpload(d, "drain/x", data)
    up.start()
    assert up.halfway.wait(10) and up.is_alive(), up.error

    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    while port_open(d.port) and time.monotonic() - t0 < 2:
        time.sleep(0.02)
    closed_after = time.monotonic() - t0
    assert closed_after < 1.0, f"the port still accepted connections {closed_after:.2f}s after SIGTERM"
    assert up.is_alive(), "the upload ended before the port closed (the test is too fast to prove a drain)"

    up.join(20)
    rc = d.proc.wait(15)
    assert up.error is None, up.error
    assert up.response.status == 201, (up.response.status, up.response.body)
    assert up.response.header("Docker-Content-Digest") == sha256(data)
    assert rc == 0, f"exit status {rc}\n{d.err_text()[-2000:]}"
    assert "draining 1 in-flight requests" in d.err_text()
    if driver == "filesystem":
        assert blob_data_path(d.root, sha256(data)).read_bytes() == data
        assert read_link(layer_link(d.root, "drain/x", sha256(data))) == sha256(data)


def test_sigterm_without_draintimeout_exits_promptly(daemons):
    """draintimeout 0: an upload in flight does not hold the process; it dies of the signal,
    as registry:2 does without a drain timeout."""
    d = new_proc(daemons, "nodrain")
    d.start()
    up = SlowUpload(d, "nodrain/x", os.urandom(15 * MiB), pause=0.1)  # ~6 s; SIGTERM at ~2 s
    up.start()
    assert up.halfway.wait(10) and up.is_alive(), up.error
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(10)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, f"took {elapsed:.2f}s to exit"
    assert rc == -signal.SIGTERM, rc
    up.join(10)
    assert not up.is_alive()
    assert up.response is None or up.response.status != 201, "the upload completed though nothing drained"


def test_port_in_use_fails_startup_with_clear_message(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cfg = tmp_path / "config.yml"
        cfg.write_text(yaml.safe_dump(base_yaml(tmp_path / "data", port)))
        runs = [Run(tmp_path, "twistd", TWISTD + ["-c", str(cfg)]), Run(tmp_path, "serve", MODULE + ["serve", str(cfg)])]
        run_all(runs)
    for r in runs:
        assert r.returncode not in (0, None), r
        assert f"127.0.0.1:{port}" in r.output and "address already in use" in r.output.lower(), r
        assert "Traceback" not in r.output, r
        assert len([line for line in r.output.splitlines() if f"127.0.0.1:{port}" in line]) <= 2, r


def test_unix_socket(daemons, tmp_path):
    sock = tmp_path / "r.sock"
    if len(str(sock)) > 100:  # sun_path limit
        pytest.skip(f"socket path too long: {sock}")
    d = new_proc(daemons, "unix", extra_config={"http": {"net": "unix", "addr": str(sock)}})
    # Daemon.start waits on TCP; this one is started and waited for by hand.
    d.root.mkdir(parents=True)
    d.workdir.mkdir(parents=True, exist_ok=True)
    d.cwd.mkdir(parents=True, exist_ok=True)
    d.config = {**base_yaml(d.root, 0), "http": {"net": "unix", "addr": str(sock), "secret": "s"}}
    d.config_path.write_text(yaml.safe_dump(d.config))
    d._spawn()

    def curl(*args):
        return subprocess.run(["curl", "-sS", "--max-time", "5", "--unix-socket", str(sock), *args],
                              capture_output=True, text=True, timeout=10)

    deadline = time.monotonic() + 15
    while not sock.exists() and d.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sock.is_socket(), d.log_text()
    p = curl("-i", "http://localhost/v2/")
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.partition("\n\n")  # text mode: CRLF became LF
    assert head.startswith("HTTP/1.1 200"), p.stdout
    assert "docker-distribution-api-version: registry/2.0" in head.lower() and body == "{}"
    p = curl("-o", "/dev/null", "-w", "%{http_code} %header{location}", "-X", "POST",
             "http://localhost/v2/unix/x/blobs/uploads/")
    status, location = p.stdout.split(" ", 1)
    assert status == "202" and "/v2/unix/x/blobs/uploads/" in location, p.stdout
    assert d.stop() is not None
    assert not sock.exists(), "the socket file is left behind"


# ---------------------------------------------------------------------------------------------
# 7. Replicas on one root
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replicas(module_daemons, tmp_path_factory):
    """a, b: secret S; c: another secret. All on one storage root."""
    root = tmp_path_factory.mktemp("replica-root")
    specs = {"a": "shared-secret", "b": "shared-secret", "c": "other-secret"}
    procs = {n: new_proc(module_daemons, f"replica-{n}", root=root, extra_config={"http": {"secret": s}})
             for n, s in specs.items()}
    start_all(*procs.values())
    return procs


def _start_upload(d: Daemon, repo: str, first: bytes) -> str:
    r = d.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, (r.status, r.body)
    r = d.request("PATCH", r.header("Location"), body=first, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 202 and r.header("Range") == f"0-{len(first) - 1}", (r.status, r.body)
    return r.header("Location")


def _move(location: str, src: Daemon, dst: Daemon) -> str:
    assert location.startswith(src.url + "/"), location
    return dst.url + location[len(src.url):]


def _finish_upload(d: Daemon, location: str, first: bytes, second: bytes):
    r = d.request("PATCH", location, body=second, headers={"Content-Type": "application/octet-stream"})
    if r.status != 202:
        return r
    assert r.header("Range") == f"0-{len(first) + len(second) - 1}"
    return d.request("PUT", f"{_move(r.header('Location'), d, d)}&digest={sha256(first + second)}")


def test_upload_continues_on_replica_with_same_secret(replicas):
    a, b = replicas["a"], replicas["b"]
    first, second = os.urandom(300_000), os.urandom(200_000)
    location = _start_upload(a, "replica/ab", first)
    r = _finish_upload(b, _move(location, a, b), first, second)
    assert r.status == 201, (r.status, r.body)
    assert r.header("Docker-Content-Digest") == sha256(first + second)
    r = a.request("GET", f"/v2/replica/ab/blobs/{sha256(first + second)}")
    assert r.status == 200 and r.body == first + second


def test_upload_state_of_other_secret_is_refused(replicas):
    a, b, c = replicas["a"], replicas["b"], replicas["c"]
    first, second = os.urandom(100_000), os.urandom(1000)
    location = _start_upload(a, "replica/ac", first)
    r = c.request("PATCH", _move(location, a, c), body=second, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 404 and error_codes(r) == ["BLOB_UPLOAD_INVALID"], (r.status, r.body)
    r = c.request("PUT", f"{_move(location, a, c)}&digest={sha256(first)}")
    assert r.status == 404 and error_codes(r) == ["BLOB_UPLOAD_INVALID"], (r.status, r.body)
    # The refused attempts left the upload intact for the replicas that share the secret.
    r = _finish_upload(b, _move(location, a, b), first, second)
    assert r.status == 201 and r.header("Docker-Content-Digest") == sha256(first + second), (r.status, r.body)


@requires_go
def test_upload_state_token_interoperates_with_go_registry(daemons, tmp_path):
    """registry:2 2.8.2 with the same secret on the same root continues an upload distregistry
    started (it must verify our _state HMAC and decode its JSON), and the other way round."""
    root = tmp_path / "shared"
    ours = new_proc(daemons, "ours", root=root, extra_config={"http": {"secret": "go-secret"}})
    go = new_proc(daemons, "go", kind="go", root=root, extra_config={"http": {"secret": "go-secret"}})
    start_all(ours, go)
    for src, dst, repo in [(ours, go, "interop/to-go"), (go, ours, "interop/from-go")]:
        first, second = os.urandom(250_000), os.urandom(70_000)
        location = _start_upload(src, repo, first)
        r = _finish_upload(dst, _move(location, src, dst), first, second)
        assert r.status == 201, f"{src.kind} -> {dst.kind}: {r.status} {r.body!r}"
        assert r.header("Docker-Content-Digest") == sha256(first + second)
        for reader in (ours, go):
            r = reader.request("GET", f"/v2/{repo}/blobs/{sha256(first + second)}")
            assert r.status == 200 and r.body == first + second, (reader.kind, r.status)
