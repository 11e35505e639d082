import pytest
import pytest_twisted
from twisted.internet import task

# ---------------------------------------------------------------------------------------
# Reactor cleanliness (storage-driver engineer). pytest-twisted never checks for a dirty
# reactor (twisted.md §8): a test that leaves a DelayedCall or an open port passes and
# the leak fires inside a later test. This autouse fixture fails such a test in its
# teardown. Module- and session-scoped fixtures are set up before it, so what they hold
# is part of the baseline; the test's own fixtures are torn down before it looks.
# ---------------------------------------------------------------------------------------

_CLEAN_GRACE = 0.5  # seconds for connections that are already closing to go away
_CLEAN_POLL = 0.02


def _reactor_internal(selectable):
    # The reactor's own wakers (threads, SIGCHLD) come and go with it, never with a test.
    return type(selectable).__module__ == "twisted.internet._signals"


def _reactor():
    # Imported late: importing the reactor while conftest loads would install the default
    # one before pytest-twisted installs the one chosen with --reactor.
    from twisted.internet import reactor

    return reactor


def _reactor_state():
    reactor = _reactor()
    calls = {c for c in reactor.getDelayedCalls() if c.active()}
    selectables = {s for s in reactor.getReaders() + reactor.getWriters() if not _reactor_internal(s)}
    return calls, selectables


@pytest.fixture(autouse=True)
def _reactor_clean():
    calls_before, selectables_before = _reactor_state()
    yield
    waited = 0.0
    while True:
        calls, selectables = _reactor_state()
        new_calls, new_selectables = calls - calls_before, selectables - selectables_before
        if not (new_calls or new_selectables) or waited >= _CLEAN_GRACE:
            break
        pytest_twisted.blockon(task.deferLater(_reactor(), _CLEAN_POLL, lambda: None))
        waited += _CLEAN_POLL
    if new_calls or new_selectables:
        report = (
            "test left the reactor dirty: "
            f"DelayedCalls {sorted(map(str, new_calls))}, readers/writers {sorted(map(repr, new_selectables))}"
        )
        # Cancel the leaked calls so they cannot fire inside the next test.
        for call in new_calls:
            call.cancel()
        pytest.fail(report, pytrace=False)


# ---------------------------------------------------------------------------------------
# Fixtures of other modules go below.
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """moto's S3 server on a free loopback port, one per session (tests take fresh buckets)."""
    try:
        from support.s3server import MotoS3
    except ImportError:
        from tests.support.s3server import MotoS3
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of this test's own on a free loopback port (stopped at teardown)."""
    try:
        from support.redisserver import RedisServer
    except ImportError:
        from tests.support.redisserver import RedisServer
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


# =============================================================================================
# End-to-end harness (owned by the e2e tests: tests/support/, tests/test_e2e_*.py).
# Keep this section at the END of the file.
#
# Fixtures:
#   daemons            function-scoped DaemonSet; daemons.start(kind, root=None, extra_config=None,
#                      env=None, name=None, cwd=None) -> Daemon; all stopped (by PID) at teardown
#   registry_factory   == daemons.start
#   distregistry       a running distregistry on a fresh root (function scope)
#   goregistry         a running Go docker-registry on a fresh root (function scope)
#   registry           indirect-parametrised kind: @pytest.mark.parametrize("registry",
#                      KIND_PARAMS, indirect=True)
#   module_daemons     module-scoped DaemonSet (for expensive shared state)
#   skopeo             session-scoped hermetic Skopeo wrapper
#   e2e_images         session-scoped generated OCI layouts (built once)
# Markers: distregistry / goregistry (which registry a case runs against), e2e.
# On a failing test the tails of all its daemons' logs are appended to the report.
# =============================================================================================
import types as _e2e_types

try:  # tests/ on sys.path (no tests/__init__.py) ...
    from support import MEASUREMENTS as _E2E_MEASUREMENTS
    from support import images as _e2e_images_mod
    from support.daemon import DaemonSet as _E2EDaemonSet
    from support.goregistry import go_available as _e2e_go_available
except ImportError:  # ... or the repo root (tests is a package)
    from tests.support import MEASUREMENTS as _E2E_MEASUREMENTS
    from tests.support import images as _e2e_images_mod
    from tests.support.daemon import DaemonSet as _E2EDaemonSet
    from tests.support.goregistry import go_available as _e2e_go_available

_E2E_DAEMONSETS = pytest.StashKey[list]()


# Hooks use specname= so they cannot collide with same-named hooks elsewhere in this file.
@pytest.hookimpl(specname="pytest_configure")
def pytest_configure_e2e_harness(config):
    config.addinivalue_line("markers", "distregistry: test case runs against distregistry")
    config.addinivalue_line("markers", "goregistry: test case runs against the Go reference registry")
    config.addinivalue_line("markers", "e2e: end-to-end test with real processes (skopeo, registries)")


@pytest.hookimpl(specname="pytest_runtest_makereport", wrapper=True)
def pytest_runtest_makereport_e2e_harness(item, call):
    rep = yield
    if rep.failed:
        sets = item.stash.get(_E2E_DAEMONSETS, [])
        text = "\n".join(s.log_report() for s in sets if s.daemons)
        if text:
            rep.sections.append(("registry daemon logs (tail)", text))
    return rep


@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_e2e_harness(terminalreporter):
    if _E2E_MEASUREMENTS:
        terminalreporter.section("e2e measurements")
        for line in _E2E_MEASUREMENTS:
            terminalreporter.write_line(line)


def _e2e_attach(item, dset):
    item.stash.setdefault(_E2E_DAEMONSETS, []).append(dset)


@pytest.fixture
def daemons(request, tmp_path):
    dset = _E2EDaemonSet(tmp_path / "daemons")
    _e2e_attach(request.node, dset)
    try:
        yield dset
    finally:
        dset.stop_all()


@pytest.fixture
def registry_factory(daemons):
    return daemons.start


@pytest.fixture
def distregistry(daemons):
    return daemons.start("distregistry")


@pytest.fixture
def goregistry(daemons):
    if not _e2e_go_available():
        pytest.skip("docker-registry (Go reference) not installed")
    return daemons.start("go")


@pytest.fixture
def registry(request, daemons):
    """Indirect parametrisation: the param is the kind ("go" or "distregistry")."""
    return daemons.start(request.param)


@pytest.fixture(scope="module")
def module_daemons(tmp_path_factory):
    dset = _E2EDaemonSet(tmp_path_factory.mktemp("module-daemons"))
    try:
        yield dset
    finally:
        dset.stop_all()


@pytest.fixture(autouse=True)
def _e2e_attach_module_daemons(request):
    # Failure reports of tests using module_daemons show those daemons' logs too.
    if "module_daemons" in request.fixturenames:
        _e2e_attach(request.node, request.getfixturevalue("module_daemons"))


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory):
    return _e2e_images_mod.Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="session")
def e2e_images(tmp_path_factory):
    """Generated once per session:
    .big    single-platform image, 4 uncompressed layers, ~55 MiB, one layer 40 MiB
    .small  single-platform image, 2 small layers
    .small2 another small image (different content) in the same layout as .small
    .multi  OCI index with linux/amd64 and linux/arm64/v8 images
    """
    m = _e2e_images_mod
    base = tmp_path_factory.mktemp("e2e-images")
    return _e2e_types.SimpleNamespace(
        big=m.build_image(base / "big", "v1", m.BIG_IMAGE_LAYERS, seed="big"),
        small=m.build_image(base / "small", "s1", m.SMALL_IMAGE_LAYERS, seed="small"),
        small2=m.build_image(base / "small", "s2", m.SMALL_IMAGE_LAYERS, seed="small2"),
        multi=m.build_index(base / "multi", "m1", seed="multi"),
        base=base,
    )
