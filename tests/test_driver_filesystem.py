import errno
import hashlib
import itertools
import os
import stat
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, utils

from distregistry.storage.driver import factory, filesystem
from distregistry.storage.driver.base import InvalidPathError, PathNotFoundError, StorageDriverError
from distregistry.storage.driver.filesystem import FilesystemDriver
from driver_suite import MiB, DriverSuite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def driver_factory(tmp_path):
    roots = itertools.count()
    return lambda: FilesystemDriver(str(tmp_path / f"root{next(roots)}"), maxthreads=25)


class TestFilesystemDriver(DriverSuite):
    pass


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root"


@pytest.fixture
def fs(root):
    driver = FilesystemDriver(str(root), maxthreads=25)
    yield driver
    pytest_twisted.blockon(driver.close())


@pytest.fixture
def umask():
    """Set the process umask for one test (the driver's pool threads share it)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def test_paths_map_below_the_root(fs, root):
    await fs.put_content("/docker/registry/v2/x/link", b"sha256:abc")
    assert (root / "docker/registry/v2/x/link").read_bytes() == b"sha256:abc"
    (root / "docker/registry/v2/y").write_bytes(b"written by another registry")
    assert await fs.get_content("/docker/registry/v2/y") == b"written by another registry"


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o000, 0o666, 0o777), (0o027, 0o640, 0o750)])
async def test_modes_are_0666_and_0777_less_umask(fs, root, umask, mask, file_mode, dir_mode):
    umask(mask)
    await fs.put_content("/a/b/content", b"x")
    w = await fs.writer("/c/d/written")
    await w.write(b"y")
    await w.commit()
    await fs.put_content("/e/src", b"z")
    await fs.move("/e/src", "/f/g/moved")
    for f in ("a/b/content", "c/d/written", "f/g/moved"):
        assert stat.S_IMODE((root / f).stat().st_mode) == file_mode, f
    for d in ("a", "a/b", "c", "c/d", "f", "f/g"):
        assert stat.S_IMODE((root / d).stat().st_mode) == dir_mode, d


async def test_no_temporary_files_left(fs, root):
    for i in range(10):
        await fs.put_content(f"/t/{i % 2}", b"v%d" % i)
    (root / "dir" / "sub").mkdir(parents=True)
    with pytest.raises(StorageDriverError):
        await fs.put_content("/dir", b"cannot replace a directory")
    assert _tree(root) == ["dir", "dir/sub", "t", "t/0", "t/1"]


async def test_symlinks_out_of_the_root_are_refused(fs, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root.mkdir()
    (root / "evil").symlink_to(outside)
    (root / "evilfile").symlink_to(outside / "secret")
    calls = [
        lambda: fs.get_content("/evil/secret"),
        lambda: fs.get_content("/evilfile"),
        lambda: fs.put_content("/evil/new", b"x"),
        lambda: fs.put_content("/evil/deep/new", b"x"),
        lambda: fs.reader("/evil/secret"),
        lambda: fs.writer("/evil/secret"),
        lambda: fs.writer("/evil/secret", append=True),
        lambda: fs.stat("/evil"),
        lambda: fs.list("/evil"),
        lambda: fs.delete("/evil/secret"),
        lambda: fs.delete("/evil"),
        lambda: fs.move("/evil/secret", "/stolen"),
        lambda: fs.walk("/evil", lambda info: None),
    ]
    await fs.put_content("/mine", b"x")
    calls.append(lambda: fs.move("/mine", "/evil/planted"))
    for call in calls:
        with pytest.raises(InvalidPathError):
            await call()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


async def test_symlinks_inside_the_root_are_followed(fs, root):
    await fs.put_content("/real/file", b"x")
    (root / "alias").symlink_to(root / "real")
    assert await fs.get_content("/alias/file") == b"x"


async def test_new_directories_below_symlinks(fs, root, tmp_path):
    await fs.put_content("/real/file", b"x")
    (root / "alias").symlink_to(root / "real")
    await fs.put_content("/alias/new/deep/file", b"y")
    assert (root / "real/new/deep/file").read_bytes() == b"y"
    (root / "real/dangling").symlink_to(root / "nowhere")
    with pytest.raises(StorageDriverError):
        await fs.put_content("/real/dangling/deep/file", b"z")
    (tmp_path / "outside").mkdir()
    (root / "real/out").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidPathError):
        await fs.move("/real/file", "/real/out/deep/file")
    assert list((tmp_path / "outside").iterdir()) == []


async def test_a_symlinked_root_is_fine(tmp_path):
    (tmp_path / "disk").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "disk")
    driver = FilesystemDriver(str(tmp_path / "link"), maxthreads=25)
    await driver.put_content("/a/b", b"x")
    assert await driver.get_content("/a/b") == b"x"
    await driver.close()
    assert (tmp_path / "disk/a/b").read_bytes() == b"x"


async def test_names_outside_the_path_grammar_are_not_listed(fs, root):
    await fs.put_content("/docker/x", b"x")
    (root / "lost+found").mkdir()
    (root / "with space").write_bytes(b"")
    assert await fs.list("/") == ["/docker"]
    seen = []
    await fs.walk("/", seen.append)
    assert [i.path for i in seen] == ["/docker", "/docker/x"]


async def test_walk_reads_big_directories_in_pieces(fs, monkeypatch):
    monkeypatch.setattr(filesystem, "_WALK_PIECE", 2)
    dirs = [f"/d/{i:02d}" for i in range(7)]
    for d in dirs:
        await fs.put_content(d + "/f", b"x")

    async def walked(**kwargs):
        seen = []
        await fs.walk("/", lambda info: seen.append(info.path), **kwargs)
        return seen

    assert await walked() == ["/d"] + [p for d in dirs for p in (d, d + "/f")]
    assert await walked(start_after="/d/03") == ["/d/03/f"] + [p for d in dirs[4:] for p in (d, d + "/f")]
    assert await walked(start_after="/d/03/f") == [p for d in dirs[4:] for p in (d, d + "/f")]


async def test_a_walk_that_stops_early_does_not_stat_the_rest(fs, monkeypatch):
    for i in range(200):
        await fs.put_content(f"/d/{i:03d}", b"x")
    calls = []
    monkeypatch.setattr(filesystem, "os", _Recording(os, calls))
    monkeypatch.setattr(filesystem, "_WALK_PIECE", 10)

    def visit(info):
        if info.path == "/d/005":
            raise KeyError("enough")

    with pytest.raises(KeyError):
        await fs.walk("/", visit)
    assert sum(label == "os.stat" for label, _, _ in calls) <= 1 + 2 * 10   # "/d", then a piece or two


async def test_walk_ends_when_a_big_directory_goes_between_pieces(fs, monkeypatch):
    monkeypatch.setattr(filesystem, "_WALK_PIECE", 2)
    for i in range(6):
        await fs.put_content(f"/d/{i}/f", b"x")
    seen = []

    def visit(info):
        seen.append(info.path)
        if info.path == "/d/0":
            return fs.delete("/d")

    await fs.walk("/", visit)
    # What was listed before the delete is still visited; nothing below it is there to enter.
    assert seen == ["/d", "/d/0", "/d/1"]


async def test_open_files_keep_working_across_moves(fs):
    # An upload's data file is moved to blobs/ while a reader may hold it open.
    await fs.put_content("/up/data", b"0123456789")
    r = await fs.reader("/up/data", 5)
    await fs.move("/up/data", "/blobs/data")
    assert await r.read(100) == b"56789"
    r.close()


async def test_write_errors_are_sticky(fs, monkeypatch):
    class FullDisk:
        def __init__(self, f):
            self._f, self.writes = f, 0

        def write(self, data):
            self.writes += 1
            if self.writes > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

    monkeypatch.setattr(filesystem, "open", lambda *a, **kw: FullDisk(open(*a, **kw)), raising=False)
    w = await fs.writer("/full")
    results = await defer.DeferredList([w.write(b"a"), w.write(b"b"), w.write(b"c")], consumeErrors=True)
    assert [ok for ok, _ in results] == [True, False, False]
    with pytest.raises(OSError) as info:
        await w.commit()
    assert info.value.errno == errno.ENOSPC


async def test_append_after_a_restart(root):
    first = FilesystemDriver(str(root), maxthreads=25)
    w = await first.writer("/up/data")
    await w.write(b"part one, ")
    await w.close()
    await first.close()
    second = FilesystemDriver(str(root), maxthreads=25)
    w = await second.writer("/up/data", append=True)
    assert w.size == 10
    await w.write(b"part two")
    await w.commit()
    assert await second.get_content("/up/data") == b"part one, part two"
    await second.close()


# -- threads ------------------------------------------------------------------------------


class _Recording:
    """Stands in for a module and records the thread and arguments of every call made through it."""

    def __init__(self, real, calls):
        self._real, self._calls = real, calls

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if isinstance(attr, types.ModuleType):
            return _Recording(attr, self._calls)
        if not callable(attr) or isinstance(attr, type):
            return attr
        label = f"{self._real.__name__}.{name}"

        def call(*args, **kwargs):
            self._calls.append((label, threading.current_thread(), args))
            return attr(*args, **kwargs)

        return call


async def test_blocking_calls_never_run_on_the_reactor_thread(fs, monkeypatch):
    calls = []
    monkeypatch.setattr(filesystem, "os", _Recording(os, calls))
    builtins = _Recording(types.SimpleNamespace(__name__="builtins", open=open), calls)
    monkeypatch.setattr(filesystem, "open", builtins.open, raising=False)

    await fs.put_content("/a/b", b"content")
    assert await fs.get_content("/a/b") == b"content"
    w = await fs.writer("/a/w")
    w.write(b"1")
    w.write(b"2")
    await w.close()
    w = await fs.writer("/a/w", append=True)
    await w.write(b"3")
    await w.commit()
    w = await fs.writer("/a/cancelled")
    await w.cancel()
    r = await fs.reader("/a/w", 1)
    assert await r.read(10) == b"23"
    r.close()
    await fs.stat("/a")
    await fs.list("/a")
    await fs.walk("/", lambda info: None)
    await fs.move("/a/w", "/c/w")
    await fs.delete("/a/b")
    await fs.delete("/c")

    labels = {label for label, _, _ in calls}
    assert {"builtins.open", "os.open", "os.fstat", "os.readlink", "os.fsync", "os.replace", "os.listdir",
            "posixpath.realpath"} <= labels
    main = threading.main_thread()
    assert threading.current_thread() is main  # the reactor runs here under pytest-twisted
    # On the reactor thread only what cannot wait for the disk (nowait.py): fstat and close of
    # an open fd, the /proc magic link of one, and reads that refuse to wait for the disk.
    on_reactor = [(label, args) for label, thread, args in calls if thread is main]
    for label, args in on_reactor:
        if label == "os.readlink":
            assert args[0].startswith("/proc/self/fd/")
        elif label == "os.preadv":
            assert args[3] & os.RWF_NOWAIT
        else:
            assert label in ("os.fstat", "os.close", "os.fsencode"), label


@pytest.mark.skipif(not filesystem._NOWAIT.enabled, reason="no openat2(RESOLVE_CACHED) here")
async def test_cached_reads_and_stats_skip_the_pool(fs, root, monkeypatch, tmp_path):
    await fs.put_content("/r/link", b"sha256:" + b"0" * 64)
    await fs.put_content("/r/big", b"x" * (filesystem.NOWAIT_READ_LIMIT + 1))
    (tmp_path / "outside").write_bytes(b"secret")
    (root / "r" / "escape").symlink_to(tmp_path / "outside")
    pooled = []
    run = fs._run
    monkeypatch.setattr(fs, "_run", lambda fn, *args: pooled.append(fn.__name__) or run(fn, *args))

    assert await fs.get_content("/r/link") == b"sha256:" + b"0" * 64
    assert (await fs.stat("/r/link")).size == 71
    assert (await fs.stat("/r")).is_dir
    assert pooled == []
    # Too big to copy on the reactor, absent, or leaving the root: the pool answers.
    assert len(await fs.get_content("/r/big")) == filesystem.NOWAIT_READ_LIMIT + 1
    with pytest.raises(PathNotFoundError):
        await fs.get_content("/r/absent")
    with pytest.raises(InvalidPathError):
        await fs.get_content("/r/escape")
    assert pooled == ["_get_content"] * 3


async def test_the_pool_is_bounded_by_maxthreads(fs, monkeypatch):
    lock = threading.Lock()
    full = threading.Event()
    load = {"now": 0, "peak": 0}

    class SlowStat:
        def __getattr__(self, name):
            return getattr(os, name)

        def fstat(self, *args, **kwargs):   # what stat() calls in a pool thread
            with lock:
                load["now"] += 1
                load["peak"] = max(load["peak"], load["now"])
                if load["now"] == 25:
                    full.set()
            try:
                # Hold every call until 25 run at once; an unbounded pool would let more in.
                full.wait(5)
                time.sleep(0.005)
                return os.fstat(*args, **kwargs)
            finally:
                with lock:
                    load["now"] -= 1

    await fs.put_content("/f", b"x")
    monkeypatch.setattr(filesystem._NOWAIT, "enabled", False)   # every stat in the pool
    monkeypatch.setattr(filesystem, "os", SlowStat())
    infos = await defer.gatherResults([fs.stat("/f") for _ in range(100)])
    assert len(infos) == 100
    assert load["peak"] == 25
    assert len(fs.threadpool.threads) == 25


async def test_write_backlogs_do_not_starve_other_calls(fs, monkeypatch):
    class SlowFile:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            time.sleep(0.001)
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

    await fs.put_content("/f", b"x")
    monkeypatch.setattr(filesystem, "open", lambda *a, **kw: SlowFile(open(*a, **kw)), raising=False)
    # As many writers as the pool has threads, each with a deep backlog.
    writers = await defer.gatherResults([fs.writer(f"/w{i}") for i in range(25)])
    writes = [w.write(b"x") for _ in range(100) for w in writers]
    await fs.stat("/f")
    # The stat got a thread after a batch, long before the backlogs drained.
    assert sum(d.called for d in writes) < len(writes) / 2
    await defer.gatherResults(writes + [w.commit() for w in writers])


async def test_close_waits_for_queued_calls_then_stops_the_pool(fs, root):
    w = await fs.writer("/w")
    for _ in range(16):
        w.write(b"x" * MiB)
    committed = w.commit()
    await fs.close()
    assert committed.called
    assert (root / "w").stat().st_size == 16 * MiB
    assert all(not t.is_alive() for t in fs.threadpool.threads)
    with pytest.raises(RuntimeError, match="closed"):
        await fs.stat("/w")
    await committed


async def test_process_exits_when_the_reactor_stops_without_close(tmp_path):
    script = """
import sys
from twisted.internet import defer, reactor
from distregistry.storage.driver.filesystem import FilesystemDriver

driver = FilesystemDriver(sys.argv[1], maxthreads=25)

async def main():
    await driver.put_content("/x", b"y")
    w = await driver.writer("/w")
    w.write(b"queued and never awaited")
    reactor.stop()

reactor.callWhenRunning(lambda: defer.ensureDeferred(main()))
reactor.run()
print("exited")
"""
    d = utils.getProcessOutputAndValue(sys.executable, ["-c", script, str(tmp_path)], env=dict(os.environ), path=str(REPO))
    out, err, code = await d
    assert (code, out.strip()) == (0, b"exited"), err
    assert (tmp_path / "x").read_bytes() == b"y"


# -- factory and speed --------------------------------------------------------------------


async def test_factory_builds_filesystem(root):
    driver = factory.create("filesystem", {"rootdirectory": str(root), "maxthreads": 30})
    assert isinstance(driver, FilesystemDriver)
    assert driver.threadpool.max == 30
    await driver.put_content("/a", b"x")
    assert (root / "a").read_bytes() == b"x"
    await driver.close()


async def test_64mib_stream_in_1mib_writes(fs, root):
    chunk = os.urandom(MiB)
    expected = hashlib.sha256()
    start = time.perf_counter()
    w = await fs.writer("/big/data")
    window = []
    for i in range(64):
        block = chunk[i:] + chunk[:i]
        expected.update(block)
        window.append(w.write(block))
        if len(window) >= 8:
            await window.pop(0)
    await defer.gatherResults(window)
    await w.commit()
    elapsed = time.perf_counter() - start
    print(f"filesystem writer: 64 MiB in 1 MiB writes, fsync'd: {64 / elapsed:.0f} MiB/s")
    assert w.size == 64 * MiB
    got = hashlib.sha256()
    r = await fs.reader("/big/data")
    while data := await r.read(MiB):
        got.update(data)
    r.close()
    assert got.hexdigest() == expected.hexdigest()
