"""The Debian package (debian/), built once by scripts/build-deb and exercised on this machine
as root: lintian, ``apt-get install ./distregistry_*.deb``, the unit's ExecStart run as the
service user (PID 1 need not be systemd), push and pull with skopeo, an upgrade that keeps
the edited conffile and the data, then ``apt-get purge`` leaving nothing behind.

The upgrade goes from a copy of the built .deb re-versioned lower (``<version>~pre``) to the
build itself: the same payload, but dpkg runs the whole upgrade path (prerm upgrade, unpack
over the old files, conffile merge, postinst configure <old-version>), and the one slow
build is not done twice.

Needs root (it installs a package and creates a system user). It refuses to run when a
distregistry package is already installed, and purges what it installed in any case.
"""

from __future__ import annotations

import fcntl
import grp
import marshal
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

try:
    from support import report
    from support.daemon import free_port
    from support.images import SMALL_IMAGE_LAYERS, Skopeo, build_image, summarize_layout
except ImportError:
    from tests.support import report
    from tests.support.daemon import free_port
    from tests.support.images import SMALL_IMAGE_LAYERS, Skopeo, build_image, summarize_layout

pytestmark = [
    pytest.mark.deb,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a .deb and a system user: needs root"),
]

REPO = Path(__file__).resolve().parents[1]
PKG = "distregistry"
USER = "distregistry"
CONFIG = Path("/etc/distregistry/config.yml")
DATA = Path("/var/lib/distregistry")
VENV = Path("/opt/venvs/distregistry")
UNIT = Path("/lib/systemd/system/distregistry.service")
# dpkg and apt with Debian's python3 first: maintainer scripts and triggers must not pick up
# a python3 from the caller's PATH (pyenv, a venv).
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
CLEAN_STOP = 128 + signal.SIGTERM
LOCK = Path("/run/lock/distregistry-deb-test.lock")


def run(*cmd, check=True, timeout=300, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, env=CLEAN_ENV, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} exited {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def pkg_status() -> str:
    """dpkg's status of the package ("install ok installed", "deinstall ok config-files"), or ""."""
    p = run("dpkg-query", "-W", "-f=${Status}", PKG, check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def pkg_version() -> str:
    return run("dpkg-query", "-W", "-f=${Version}", PKG).stdout.strip()


def user_exists() -> bool:
    try:
        pwd.getpwnam(USER)
        return True
    except KeyError:
        return False


def group_exists() -> bool:
    try:
        grp.getgrnam(USER)
        return True
    except KeyError:
        return False


def user_pids() -> list[int]:
    if not user_exists():
        return []
    uid = pwd.getpwnam(USER).pw_uid
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                pass
    return pids


def purge() -> None:
    if pkg_status():
        run("apt-get", "purge", "-y", "-q", PKG)


@pytest.fixture(scope="module")
def deb_lock():
    # Two runs of this module at once (two checkouts on one machine) would install and purge
    # the same package under each other.
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory, deb_lock):
    """scripts/build-deb, once: the .deb and .changes (the README's build command)."""
    for tool in ("dpkg-buildpackage", "dh_virtualenv", "lintian", "skopeo", "apt-get", "runuser"):
        assert shutil.which(tool, path=CLEAN_ENV["PATH"]), f"{tool} missing: scripts/test installs it"
    out = tmp_path_factory.mktemp("deb")
    t0 = time.monotonic()
    p = subprocess.run([str(REPO / "scripts/build-deb"), str(out)], capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - t0
    assert p.returncode == 0, f"build failed ({seconds:.0f} s)\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    debs = sorted(out.glob("distregistry_*.deb"))
    assert len(debs) == 1, debs
    report(f"deb: built in {seconds:.0f} s: {debs[0].name}, {debs[0].stat().st_size / 1e6:.1f} MB")
    return debs[0], next(out.glob("distregistry_*.changes"))


@pytest.fixture
def clean_machine(deb_lock):
    """No distregistry installed before; nothing of it (package, processes) after."""
    if pkg_status():
        pytest.fail(f"a {PKG} package is already installed ({pkg_status()}); this test installs and purges it")
    assert not user_exists(), f"a {USER} user exists without the package"
    try:
        yield
    finally:
        for pid in user_pids():
            os.kill(pid, signal.SIGKILL)
        purge()


def test_lintian(built):
    deb, changes = built
    t0 = time.monotonic()
    p = run("lintian", "--fail-on", "none", "--show-overrides", str(changes), timeout=600)
    report(f"deb: lintian {time.monotonic() - t0:.0f} s")
    lines = p.stdout.splitlines()
    # Errors and warnings not overridden (with a reason) in debian/distregistry.lintian-overrides,
    # and overrides that no longer match anything (reported only as info).
    unexplained = [line for line in lines if line[:2] in ("E:", "W:") or "unused-override" in line]
    assert not unexplained, "lintian:\n" + "\n".join(unexplained)
    assert any(line.startswith("O:") for line in lines), p.stdout


def test_package_contents(built):
    deb, _ = built
    control = run("dpkg-deb", "-f", str(deb)).stdout
    assert "Architecture: amd64" in control
    assert "python3 (>= 3.11), python3 (<< 3.12)" in control
    files = run("dpkg-deb", "-c", str(deb)).stdout
    assert "./etc/distregistry/config.yml" in files
    assert "./lib/systemd/system/distregistry.service" in files
    assert "site-packages/twisted/plugins/distregistry_plugin.py" in files
    # Written by postinst, owned by no package; Twisted's own twisted/plugins/__init__.py
    # comes from Twisted's wheel, never from distregistry's.
    assert "dropin.cache" not in files
    assert "distregistry/__pycache__/cli.cpython-311.pyc" in files
    assert "./usr/share/man/man1/distregistry.1.gz" in files
    assert run("dpkg-deb", "-I", str(deb), "conffiles").stdout.split() == ["/etc/distregistry/config.yml"]


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            key, value = line.split("=", 1)
            settings.setdefault(key, value)
    return settings


class Service:
    """The unit's ExecStart, run the way systemd would: as User= in WorkingDirectory=, with
    a minimal environment, stdout/stderr to a log file (the journal's stand-in)."""

    def __init__(self, log: Path, env: dict[str, str] | None = None):
        unit = unit_settings()
        assert unit["User"] == USER
        self.argv = shlex.split(unit["ExecStart"])
        self.cwd = unit["WorkingDirectory"]
        self.log = log
        self.env = {"PATH": CLEAN_ENV["PATH"], "LANG": "C.UTF-8", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, port: int) -> "Service":
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                ["runuser", "-u", USER, "--", *self.argv], cwd=self.cwd, env=self.env, stdout=logf, stderr=logf
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert self.proc.poll() is None, f"service exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"service not ready:\n{self.log.read_text()[-4000:]}"
            time.sleep(0.2)

    def stop(self) -> int:
        """SIGTERM to the daemon itself, as systemd sends it; runuser then exits with the
        daemon's status. (Signalled, runuser would kill the daemon and itself instead.)
        twistd shuts down cleanly, then re-raises the signal: runuser reports 128 + 15,
        which systemd counts as a clean stop."""
        for pid in user_pids():
            os.kill(pid, signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while user_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not user_pids(), f"processes of {USER} left after SIGTERM: {user_pids()}"
        return rc


def test_install_run_upgrade_purge(built, clean_machine, tmp_path):
    deb, _ = built
    version = run("dpkg-deb", "-f", str(deb), "Version").stdout.strip()

    # ---- version N: the same payload re-versioned below the build
    older = tmp_path / f"distregistry_{version}~pre_amd64.deb"
    tree = tmp_path / "older"
    run("dpkg-deb", "-R", str(deb), str(tree))
    control = tree / "DEBIAN/control"
    control.write_text(control.read_text().replace(f"Version: {version}\n", f"Version: {version}~pre\n"))
    run("dpkg-deb", "--root-owner-group", "-b", str(tree), str(older))

    t0 = time.monotonic()
    run("apt-get", "install", "-y", "-q", f"./{older.name}", cwd=tmp_path)
    report(f"deb: apt-get install {time.monotonic() - t0:.0f} s")
    assert pkg_status() == "install ok installed" and pkg_version() == f"{version}~pre"

    # postinst: the user, its data directory, the plugin cache (root's, beside the plugins)
    user = pwd.getpwnam(USER)
    assert user.pw_dir == str(DATA) and user.pw_shell == "/usr/sbin/nologin"
    assert user.pw_uid < 1000, "not a system user"
    st = DATA.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (user.pw_uid, user.pw_gid, 0o750)
    caches = list(VENV.glob("lib/python3*/site-packages/twisted/plugins/dropin.cache"))
    assert len(caches) == 1 and caches[0].stat().st_uid == 0
    assert b"distregistry" in caches[0].read_bytes()
    # The shipped bytecode is valid whatever the files' mtimes (hash-checked, flags 0b11)
    # and names the installed sources, so tracebacks show their lines.
    site = VENV / "lib/python3.11/site-packages"
    pyc = (site / "distregistry/__pycache__/cli.cpython-311.pyc").read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b11
    assert marshal.loads(pyc[16:]).co_filename == str(site / "distregistry/cli.py")
    assert CONFIG.read_text() == (REPO / "debian/config.yml").read_text()
    assert str(CONFIG) in run("dpkg-query", "-W", "-f=${Conffiles}", PKG).stdout
    if Path("/run/systemd/system").is_dir():
        # Under systemd the postinst started the unit (on 127.0.0.1:5000); this test runs
        # its ExecStart itself, so that one is stopped.
        run("systemctl", "stop", "distregistry.service")
    else:
        # PID 1 is not systemd: the postinst skipped the start, nothing runs yet.
        assert not user_pids()

    # The CLI on PATH and the shipped config are valid
    check = run("distregistry", "config", "check", str(CONFIG))
    # It prints the effective configuration under a header naming the file.
    assert check.stdout.startswith(f"# {CONFIG}: ok"), check.stdout[:200]

    # systemd's own check of the unit, where the tool exists
    if shutil.which("systemd-analyze", path=CLEAN_ENV["PATH"]):
        v = run("systemd-analyze", "verify", str(UNIT), check=False)
        complaints = [line for line in (v.stdout + v.stderr).splitlines() if "distregistry" in line]
        assert v.returncode == 0 and not complaints, v.stdout + v.stderr

    # ---- run it as the service would, push and pull
    port = free_port()
    images = tmp_path / "images"
    img = build_image(images / "layout", "v1", SMALL_IMAGE_LAYERS, seed="deb")
    skopeo = Skopeo(tmp_path / "skopeo")
    log = tmp_path / "service.log"
    # The shipped file listens on 127.0.0.1:5000; the test takes a free loopback port, the
    # way an admin would with a drop-in (Environment=REGISTRY_HTTP_ADDR=...).
    service = Service(log, env={"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}).start(port)
    try:
        assert user_pids(), "no process runs as the service user"
        skopeo.copy(img.ref, f"docker://127.0.0.1:{port}/deb/app:v1")
        skopeo.copy(f"docker://127.0.0.1:{port}/deb/app:v1", f"oci:{tmp_path / 'pulled'}:v1")
        assert summarize_layout(tmp_path / "pulled", "v1") == img.summary()
    finally:
        rc = service.stop()
    text = log.read_text()
    assert rc == CLEAN_STOP and 'msg="Server Shut Down."' in text, (rc, text[-3000:])
    assert "Unable to write to plugin cache" not in text, text[-3000:]
    assert not (DATA / "twistd.pid").exists()
    repo_dir = DATA / "docker/registry/v2/repositories/deb/app"
    assert repo_dir.is_dir()
    assert all(p.stat().st_uid == user.pw_uid for p in (DATA / "docker").rglob("*"))

    # ---- the admin edits the conffile: the port moves into the file
    edited = yaml.safe_load(CONFIG.read_text())
    edited["http"]["addr"] = f"127.0.0.1:{port}"
    edited["log"]["fields"]["site"] = "upgrade-test"
    edited_text = "# edited by the admin\n" + yaml.safe_dump(edited, sort_keys=False)
    CONFIG.write_text(edited_text)

    # ---- upgrade to version N+1 (the build itself)
    run("apt-get", "install", "-y", "-q", f"./{deb.name}", cwd=deb.parent)
    assert pkg_status() == "install ok installed" and pkg_version() == version
    assert CONFIG.read_text() == edited_text, "the conffile edit was lost on upgrade"
    assert not Path(f"{CONFIG}.dpkg-new").exists() and not Path(f"{CONFIG}.dpkg-old").exists()
    assert repo_dir.is_dir()
    assert len(list(VENV.glob("lib/python3*/site-packages/twisted/plugins/dropin.cache"))) == 1

    # The upgraded package serves the old data on the edited config (no env override now)
    service = Service(log).start(port)
    try:
        skopeo.copy(f"docker://127.0.0.1:{port}/deb/app:v1", f"oci:{tmp_path / 'pulled2'}:v1")
        assert summarize_layout(tmp_path / "pulled2", "v1") == img.summary()
    finally:
        assert service.stop() == CLEAN_STOP
    assert "site=upgrade-test" in log.read_text()

    # ---- purge: nothing of the package is left
    owned = [Path(p) for p in run("dpkg-query", "-L", PKG).stdout.splitlines() if p.strip()]
    run("apt-get", "purge", "-y", "-q", PKG)
    assert pkg_status() == ""
    assert not user_exists() and not group_exists()
    for path in (CONFIG.parent, DATA, VENV, UNIT, Path("/usr/bin/distregistry"), Path("/usr/share/doc/distregistry"),
                 Path("/etc/systemd/system/multi-user.target.wants/distregistry.service")):
        assert not os.path.lexists(path), f"{path} left after purge"
    left = [p for p in owned if os.path.lexists(p) and not p.is_dir()]
    assert not left, f"files left after purge: {left[:20]}"
