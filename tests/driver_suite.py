"""The storage driver conformance suite, shared by every driver (like registry:2's
storage/driver/testsuites).

A driver's test module subclasses :class:`DriverSuite` and provides a ``driver_factory``
fixture: a callable returning a new, empty, started driver. The suite closes each driver
it makes. Nothing here knows which driver it tests.
"""

import hashlib
import random

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from distregistry.storage.driver.base import (
    IFileReader,
    IFileWriter,
    IStorageDriver,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    SkipDir,
    StorageDriverError,
)

MiB = 1 << 20

INVALID_PATHS = [
    "",
    "a",
    "123.abc",
    "../x",
    "/../x",
    "/a/../b",
    "/./a",
    "//a",
    "/a//b",
    "/a/",
    "/a b",
    "/a\x00b",
    "/a\n",
    "/caf\u00e9",
    "/" + "n" * 256,  # one name longer than NAME_MAX
    "/abcdefgh" * 500,  # 4500 characters: longer than PATH_MAX
]

VALID_PATHS = [
    "/a",
    "/2",
    "/a.a",
    "/0-9/abcdefg",
    "/abc/1.2.3.4.5-6_zyx/123.z/4",
    "/docker/docker-registry",
    "/abc./abc",
    "/.abc",
    "/a--b",
    "/_.abc",
    "/Docker/docker-registry",
    "/" + "n" * 200,
]


def _calls(path):
    """Every driver method, called with *path* as its path argument."""
    return {
        "get_content": lambda d: d.get_content(path),
        "put_content": lambda d: d.put_content(path, b"x"),
        "reader": lambda d: d.reader(path),
        "writer": lambda d: d.writer(path),
        "writer-append": lambda d: d.writer(path, append=True),
        "stat": lambda d: d.stat(path),
        "list": lambda d: d.list(path),
        "move-source": lambda d: d.move(path, "/dest"),
        "move-dest": lambda d: d.move("/source", path),
        "delete": lambda d: d.delete(path),
        "walk": lambda d: d.walk(path, lambda info: None),
    }


METHODS = sorted(_calls("/x"))


async def _failure(d):
    """The exception a Deferred fails with (the test fails if it succeeds)."""
    try:
        await d
    except Exception as e:
        return e
    pytest.fail("expected the call to fail")


async def _read_all(driver, path, offset=0, chunk=64 * 1024):
    r = await driver.reader(path, offset)
    try:
        parts = []
        while True:
            data = await r.read(chunk)
            if not data:
                return b"".join(parts)
            parts.append(data)
    finally:
        r.close()


def _raise_skipdir():
    raise SkipDir()


async def _walk(driver, path, visit=None):
    seen = []

    def record(info):
        seen.append(info)
        return visit(info) if visit else None

    await driver.walk(path, record)
    return seen


class DriverSuite:
    #: drivers that can hand out direct URLs set this to True
    redirects = False
    #: object stores (s3, gcs, azure) have no directories: a key may lie below another key,
    #: and a key may sit where other keys have it as a prefix, as in registry:2's drivers
    object_store = False

    async def _assert_emptied(self, driver, path):
        """*path* lost its last entry: an empty directory, or gone where directories are only
        key prefixes."""
        if self.object_store:
            assert isinstance(await _failure(driver.list(path)), PathNotFoundError)
        else:
            assert await driver.list(path) == []

    @pytest.fixture
    def driver(self, driver_factory):
        d = driver_factory()
        yield d
        pytest_twisted.blockon(d.close())

    # -- basics -------------------------------------------------------------------------

    def test_provides_interface(self, driver):
        assert IStorageDriver.providedBy(driver)
        assert driver.name

    async def test_put_get_roundtrip(self, driver):
        data = bytes(range(256)) * 4  # not UTF-8
        await driver.put_content("/a/b/c", data)
        assert await driver.get_content("/a/b/c") == data

    async def test_empty_content(self, driver):
        await driver.put_content("/empty", b"")
        assert await driver.get_content("/empty") == b""
        assert (await driver.stat("/empty")).size == 0

    async def test_valid_paths(self, driver):
        for i, path in enumerate(VALID_PATHS):
            await driver.put_content(path, str(i).encode())
        for i, path in enumerate(VALID_PATHS):
            assert await driver.get_content(path) == str(i).encode()

    async def test_overwrite_replaces_whole_content(self, driver):
        await driver.put_content("/f", b"a much longer first version")
        await driver.put_content("/f", b"short")
        assert await driver.get_content("/f") == b"short"

    async def test_get_missing(self, driver):
        e = await _failure(driver.get_content("/missing"))
        assert isinstance(e, PathNotFoundError)
        assert e.path == "/missing"
        assert driver.name in str(e)

    async def test_get_below_a_file_is_missing(self, driver):
        await driver.put_content("/file", b"x")
        assert isinstance(await _failure(driver.get_content("/file/below")), PathNotFoundError)

    async def test_get_directory_is_missing(self, driver):
        await driver.put_content("/dir/file", b"x")
        assert isinstance(await _failure(driver.get_content("/dir")), PathNotFoundError)
        assert isinstance(await _failure(driver.reader("/dir")), PathNotFoundError)

    async def test_put_content_below_a_file_fails(self, driver):
        await driver.put_content("/file", b"x")
        if self.object_store:
            await driver.put_content("/file/below", b"y")
            assert (await driver.get_content("/file"), await driver.get_content("/file/below")) == (b"x", b"y")
            return
        e = await _failure(driver.put_content("/file/below", b"y"))
        assert isinstance(e, StorageDriverError) and not isinstance(e, PathNotFoundError)
        assert await driver.get_content("/file") == b"x"

    async def test_put_content_over_a_directory_fails(self, driver):
        await driver.put_content("/dir/file", b"x")
        if self.object_store:
            await driver.put_content("/dir", b"y")
            assert (await driver.get_content("/dir"), await driver.get_content("/dir/file")) == (b"y", b"x")
            return
        e = await _failure(driver.put_content("/dir", b"y"))
        assert isinstance(e, StorageDriverError) and not isinstance(e, PathNotFoundError)
        assert await driver.get_content("/dir/file") == b"x"

    async def test_redirect_url(self, driver):
        await driver.put_content("/blob", b"x")
        url = await driver.redirect_url("GET", "/blob")
        if self.redirects:
            assert isinstance(url, str) and url
        else:
            assert url is None

    # -- invalid paths --------------------------------------------------------------------

    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize("path", INVALID_PATHS, ids=repr)
    async def test_invalid_path(self, driver, method, path):
        d = _calls(path)[method](driver)
        assert isinstance(d, defer.Deferred)  # never a synchronous raise
        e = await _failure(d)
        assert isinstance(e, InvalidPathError), e
        assert driver.name in str(e)
        # Nothing was created on the way to the refusal.
        assert await driver.list("/") == []

    @pytest.mark.parametrize("method", [m for m in METHODS if m not in ("stat", "list", "walk")])
    async def test_root_is_not_a_file_path(self, driver, method):
        assert isinstance(await _failure(_calls("/")[method](driver)), InvalidPathError)

    # -- stat -------------------------------------------------------------------------------

    async def test_stat_file(self, driver):
        before = reactor.seconds()
        await driver.put_content("/d/file", b"12345")
        info = await driver.stat("/d/file")
        assert (info.path, info.size, info.is_dir) == ("/d/file", 5, False)
        # Filesystems round timestamps; a minute's slack still catches a wrong clock.
        assert before - 60 <= info.modtime <= reactor.seconds() + 60

    async def test_stat_dir(self, driver):
        await driver.put_content("/d/sub/file", b"12345")
        info = await driver.stat("/d/sub")
        assert (info.path, info.size, info.is_dir) == ("/d/sub", 0, True)

    async def test_stat_missing(self, driver):
        assert isinstance(await _failure(driver.stat("/nothing")), PathNotFoundError)
        await driver.put_content("/file", b"x")
        assert isinstance(await _failure(driver.stat("/file/below")), PathNotFoundError)

    async def test_stat_root(self, driver):
        # The storage health check stats "/": either a directory or "not found" is fine.
        try:
            info = await driver.stat("/")
        except PathNotFoundError:
            return
        assert info.is_dir and info.path == "/"

    async def test_stat_tracks_size_of_overwrites(self, driver):
        await driver.put_content("/f", b"1234567890")
        await driver.put_content("/f", b"123")
        assert (await driver.stat("/f")).size == 3

    # -- list -------------------------------------------------------------------------------

    async def test_list_empty_root(self, driver):
        assert await driver.list("/") == []

    async def test_list_sorted_full_paths_direct_children(self, driver):
        names = ["b", "a", "a-b", "ab", "A", "_x", "a.b", "0"]
        for name in names:
            await driver.put_content(f"/top/{name}", b"x")
        await driver.put_content("/top/dir/deeper/file", b"x")
        assert await driver.list("/top") == sorted([f"/top/{n}" for n in names] + ["/top/dir"])
        assert await driver.list("/") == ["/top"]
        assert await driver.list("/top/dir") == ["/top/dir/deeper"]

    async def test_list_missing(self, driver):
        e = await _failure(driver.list("/nothing"))
        assert isinstance(e, PathNotFoundError)
        assert driver.name in str(e)

    async def test_list_of_a_file_is_missing(self, driver):
        await driver.put_content("/file", b"x")
        assert isinstance(await _failure(driver.list("/file")), PathNotFoundError)

    async def test_list_many(self, driver):
        paths = sorted(f"/many/{random.randbytes(6).hex()}" for _ in range(50))
        await defer.gatherResults([driver.put_content(p, b"x") for p in paths])
        assert await driver.list("/many") == paths

    # -- move -------------------------------------------------------------------------------

    async def test_move(self, driver):
        await driver.put_content("/src/file", b"content")
        await driver.move("/src/file", "/dst/file")
        assert await driver.get_content("/dst/file") == b"content"
        assert isinstance(await _failure(driver.get_content("/src/file")), PathNotFoundError)

    async def test_move_replaces_dest(self, driver):
        await driver.put_content("/src", b"new")
        await driver.put_content("/dst", b"old and longer")
        await driver.move("/src", "/dst")
        assert await driver.get_content("/dst") == b"new"
        assert isinstance(await _failure(driver.stat("/src")), PathNotFoundError)

    async def test_move_missing_source_keeps_dest(self, driver):
        await driver.put_content("/dst", b"keep")
        e = await _failure(driver.move("/src", "/dst"))
        assert isinstance(e, PathNotFoundError)
        assert e.path == "/src"
        assert await driver.get_content("/dst") == b"keep"
        assert await driver.list("/") == ["/dst"]

    async def test_move_into_new_directories(self, driver):
        await driver.put_content("/uploads/u1/data", b"blob")
        await driver.move("/uploads/u1/data", "/blobs/sha256/ab/abcdef/data")
        assert await driver.get_content("/blobs/sha256/ab/abcdef/data") == b"blob"
        await self._assert_emptied(driver, "/uploads/u1")

    async def test_move_below_a_file_fails(self, driver):
        await driver.put_content("/notadir", b"x")
        assert isinstance(await _failure(driver.move("/notadir/foo", "/notadir/bar")), PathNotFoundError)
        await driver.put_content("/src", b"y")
        if self.object_store:
            await driver.move("/src", "/notadir/bar")
            assert (await driver.get_content("/notadir"), await driver.get_content("/notadir/bar")) == (b"x", b"y")
            return
        e = await _failure(driver.move("/src", "/notadir/bar"))
        assert isinstance(e, StorageDriverError) and not isinstance(e, PathNotFoundError)
        assert await driver.get_content("/src") == b"y"

    async def test_move_to_itself(self, driver):
        await driver.put_content("/same", b"x")
        await driver.move("/same", "/same")
        assert await driver.get_content("/same") == b"x"

    async def test_move_directory(self, driver):
        await driver.put_content("/old/a/file", b"x")
        await driver.move("/old/a", "/new/a")
        assert await driver.get_content("/new/a/file") == b"x"
        await self._assert_emptied(driver, "/old")

    # -- delete -----------------------------------------------------------------------------

    async def test_delete_file(self, driver):
        await driver.put_content("/d/file", b"x")
        await driver.put_content("/d/other", b"y")
        await driver.delete("/d/file")
        assert isinstance(await _failure(driver.get_content("/d/file")), PathNotFoundError)
        assert await driver.list("/d") == ["/d/other"]

    async def test_delete_tree(self, driver):
        for p in ("/t/a", "/t/b/c", "/t/b/d/e", "/tt/keep", "/t-x/keep"):
            await driver.put_content(p, b"x")
        await driver.delete("/t")
        assert await driver.list("/") == ["/t-x", "/tt"]
        assert isinstance(await _failure(driver.stat("/t/b/d/e")), PathNotFoundError)

    async def test_delete_only_deletes_subpaths(self, driver):
        await driver.put_content("/p/name", b"x")
        await driver.put_content("/p/namesuffix", b"y")
        await driver.delete("/p/name")
        assert await driver.get_content("/p/namesuffix") == b"y"

    async def test_delete_missing(self, driver):
        e = await _failure(driver.delete("/missing"))
        assert isinstance(e, PathNotFoundError)
        assert driver.name in str(e)

    # -- walk -------------------------------------------------------------------------------

    async def test_walk_order_is_registry2_catalog_order(self, driver):
        for p in ("/ab/y", "/a-b/x", "/a/b/c", "/a/z", "/b"):
            await driver.put_content(p, b"x")
        seen = await _walk(driver, "/")
        assert [(i.path, i.is_dir) for i in seen] == [
            ("/a", True),
            ("/a/b", True),
            ("/a/b/c", False),
            ("/a/z", False),
            ("/a-b", True),
            ("/a-b/x", False),
            ("/ab", True),
            ("/ab/y", False),
            ("/b", False),
        ]

    async def test_walk_subtree_and_file_sizes(self, driver):
        await driver.put_content("/r/x/f", b"12345")
        await driver.put_content("/other", b"x")
        seen = await _walk(driver, "/r")
        assert [(i.path, i.size) for i in seen] == [("/r/x", 0), ("/r/x/f", 5)]

    async def test_walk_skipdir_raised(self, driver):
        for p in ("/a/b/c", "/a/d", "/b/c"):
            await driver.put_content(p, b"x")

        def visit(info):
            if info.path == "/a":
                raise SkipDir()

        assert [i.path for i in await _walk(driver, "/", visit)] == ["/a", "/b", "/b/c"]

    async def test_walk_skipdir_returned_or_deferred(self, driver):
        for p in ("/a/x", "/b/x", "/c/x"):
            await driver.put_content(p, b"x")

        def visit(info):
            if info.path == "/a":
                return SkipDir
            if info.path == "/b":
                return task.deferLater(reactor, 0, _raise_skipdir)
            return None

        assert [i.path for i in await _walk(driver, "/", visit)] == ["/a", "/b", "/c", "/c/x"]

    async def test_walk_skipdir_on_a_file_continues(self, driver):
        for p in ("/d/a", "/d/b", "/d/c"):
            await driver.put_content(p, b"x")

        def visit(info):
            if info.path == "/d/a":
                raise SkipDir()

        assert [i.path for i in await _walk(driver, "/d", visit)] == ["/d/a", "/d/b", "/d/c"]

    async def test_walk_waits_for_visitor_deferreds(self, driver):
        for p in ("/a", "/b", "/c"):
            await driver.put_content(p, b"x")
        events = []

        def visit(info):
            events.append(("start", info.path))
            return task.deferLater(reactor, 0.001, events.append, ("end", info.path))

        await driver.walk("/", visit)
        assert events == [(kind, p) for p in ("/a", "/b", "/c") for kind in ("start", "end")]

    async def test_walk_visitor_error_stops(self, driver):
        for p in ("/a", "/b", "/c"):
            await driver.put_content(p, b"x")
        seen = []

        def visit(info):
            seen.append(info.path)
            if info.path == "/b":
                raise KeyError("boom")

        assert isinstance(await _failure(driver.walk("/", visit)), KeyError)
        assert seen == ["/a", "/b"]

    async def test_walk_missing_and_empty(self, driver):
        assert isinstance(await _failure(driver.walk("/missing", lambda i: None)), PathNotFoundError)
        assert await _walk(driver, "/") == []
        await driver.put_content("/file", b"x")
        assert isinstance(await _failure(driver.walk("/file", lambda i: None)), PathNotFoundError)

    async def test_walk_tolerates_deletes_by_the_visitor(self, driver):
        for p in ("/a/x", "/b/x", "/c/x"):
            await driver.put_content(p, b"x")

        def visit(info):
            if info.path == "/a":
                return driver.delete("/b")

        # "/b" was listed before it went; its subtree is no longer there to enter.
        assert [i.path for i in await _walk(driver, "/", visit)] == ["/a", "/a/x", "/b", "/c", "/c/x"]

    async def test_walk_start_after(self, driver):
        # registry:2's WithStartAfterHint cases (its S3/GCS walk tests), in our walk order
        for p in ("/file1", "/folder1-suffix/file1", "/folder1/file1", "/folder2/file1",
                  "/folder3/subfolder1/subfolder1/file1", "/folder3/subfolder2/subfolder1/file1", "/folder4/file1"):
            await driver.put_content(p, b"x")

        async def walked(path, hint):
            seen = []
            await driver.walk(path, lambda info: seen.append(info.path), start_after=hint)
            return seen

        folder3 = ["/folder3/subfolder1", "/folder3/subfolder1/subfolder1", "/folder3/subfolder1/subfolder1/file1",
                   "/folder3/subfolder2", "/folder3/subfolder2/subfolder1", "/folder3/subfolder2/subfolder1/file1"]
        everything = await walked("/", None)
        assert everything[everything.index("/folder3") + 1:] == folder3 + ["/folder4", "/folder4/file1"]
        # The hint's ancestors are entered, not visited.
        assert await walked("/", "/folder3/subfolder1/subfolder1/file1") == folder3[3:] + ["/folder4", "/folder4/file1"]
        assert await walked("/folder3", "/folder3/subfolder1/subfolder1/file1") == folder3[3:]
        # A hint naming a directory: its subtree sorts after it.
        assert await walked("/", "/folder3") == folder3 + ["/folder4", "/folder4/file1"]
        assert await walked("/", "/folder1") == everything[everything.index("/folder1/file1"):]
        assert await walked("/", "/file1") == everything[1:]
        assert await walked("/folder3", "/folder3/notafolder/notafile") == folder3
        assert await walked("/folder3", "/folder3/t") == []
        # A hint that is not below the walked path, or the path itself, starts nothing later.
        assert await walked("/folder3", "/folder2") == folder3
        assert await walked("/folder3", "/folder3") == folder3
        assert await walked("/", "/folder9") == []

    async def test_walk_start_after_with_skipdir(self, driver):
        for p in ("/a/x", "/b/x", "/b/y/z", "/c/x"):
            await driver.put_content(p, b"x")
        seen = []

        def visit(info):
            seen.append(info.path)
            if info.path == "/b/y":
                raise SkipDir()

        await driver.walk("/", visit, start_after="/b/x")
        assert seen == ["/b/y", "/c", "/c/x"]

    # -- reader -----------------------------------------------------------------------------

    async def test_reader_offsets(self, driver):
        data = random.randbytes(10000)
        await driver.put_content("/r", data)
        assert await _read_all(driver, "/r") == data
        assert await _read_all(driver, "/r", 4321) == data[4321:]
        assert await _read_all(driver, "/r", len(data)) == b""
        e = await _failure(driver.reader("/r", len(data) + 1))
        assert isinstance(e, InvalidOffsetError)
        assert isinstance(await _failure(driver.reader("/r", -1)), InvalidOffsetError)

    async def test_reader_reads_up_to_n(self, driver):
        await driver.put_content("/r", b"0123456789")
        r = await driver.reader("/r", 2)
        assert IFileReader.providedBy(r)
        assert await r.read(3) == b"234"
        assert await r.read(100) == b"56789"
        assert await r.read(100) == b""
        assert await r.read(100) == b""
        r.close()
        r.close()

    async def test_reader_queued_reads_are_in_order(self, driver):
        data = random.randbytes(64 * 1024)
        await driver.put_content("/r", data)
        r = await driver.reader("/r")
        chunks = await defer.gatherResults([r.read(4096) for _ in range(17)])
        r.close()
        assert b"".join(chunks) == data

    async def test_reader_missing(self, driver):
        assert isinstance(await _failure(driver.reader("/missing")), PathNotFoundError)

    async def test_concurrent_readers(self, driver):
        data = random.randbytes(256 * 1024)
        await driver.put_content("/r", data)
        results = await defer.gatherResults(
            [defer.ensureDeferred(_read_all(driver, "/r", off, 7000)) for off in range(0, 200000, 25000)]
        )
        assert results == [data[off:] for off in range(0, 200000, 25000)]

    # -- writer -----------------------------------------------------------------------------

    async def test_writer_queued_writes_then_commit(self, driver):
        w = await driver.writer("/w/data")
        assert IFileWriter.providedBy(w) and w.size == 0
        chunks = [bytes([i]) * (1000 + i) for i in range(100)]
        pending = []
        for n, chunk in enumerate(chunks, 1):
            pending.append(w.write(chunk))
            assert w.size == sum(map(len, chunks[:n]))  # counted as queued
        await w.commit()
        await defer.gatherResults(pending)
        assert await driver.get_content("/w/data") == b"".join(chunks)
        assert (await driver.stat("/w/data")).size == w.size

    async def test_writer_truncates_existing(self, driver):
        await driver.put_content("/w", b"old content that is long")
        w = await driver.writer("/w")
        await w.write(b"new")
        await w.commit()
        assert await driver.get_content("/w") == b"new"

    async def test_writer_close_keeps_and_append_continues(self, driver):
        w = await driver.writer("/up/data")
        w.write(b"hello ")
        await w.close()
        assert await driver.get_content("/up/data") == b"hello "
        w = await driver.writer("/up/data", append=True)
        assert w.size == 6
        w.write(b"world")
        assert w.size == 11
        await w.close()
        w = await driver.writer("/up/data", append=True)
        assert w.size == 11
        await w.write(b"!")
        await w.commit()
        assert await driver.get_content("/up/data") == b"hello world!"

    async def test_writer_zero_bytes_then_append(self, driver):
        w = await driver.writer("/z")
        await w.commit()
        assert await driver.get_content("/z") == b""
        w = await driver.writer("/z", append=True)
        assert w.size == 0
        await w.write(b"abc")
        await w.commit()
        assert await driver.get_content("/z") == b"abc"

    async def test_writer_append_missing(self, driver):
        assert isinstance(await _failure(driver.writer("/none", append=True)), PathNotFoundError)
        assert await driver.list("/") == []

    async def test_writer_cancel_removes(self, driver):
        w = await driver.writer("/c/data")
        for _ in range(10):
            w.write(b"x" * 1000)
        await w.cancel()
        assert isinstance(await _failure(driver.stat("/c/data")), PathNotFoundError)

    async def test_writer_cancel_after_append_removes(self, driver):
        await driver.put_content("/c", b"existing")
        w = await driver.writer("/c", append=True)
        await w.write(b"more")
        await w.cancel()
        assert isinstance(await _failure(driver.stat("/c")), PathNotFoundError)

    async def test_writer_finished_refuses_more(self, driver):
        w = await driver.writer("/f")
        await w.write(b"x")
        await w.commit()
        assert isinstance(await _failure(w.write(b"y")), ValueError)
        assert isinstance(await _failure(w.commit()), ValueError)
        assert isinstance(await _failure(w.cancel()), ValueError)
        await w.close()  # closing a finished writer is a harmless no-op
        assert await driver.get_content("/f") == b"x"
        w = await driver.writer("/g")
        await w.close()
        await w.close()
        assert isinstance(await _failure(w.write(b"y")), ValueError)

    async def test_writer_below_a_file_fails(self, driver):
        await driver.put_content("/file", b"x")
        if self.object_store:
            w = await driver.writer("/file/data")
            await w.write(b"y")
            await w.commit()
            assert await driver.get_content("/file/data") == b"y"
            return
        e = await _failure(driver.writer("/file/data"))
        assert isinstance(e, StorageDriverError) and not isinstance(e, PathNotFoundError)

    async def test_writer_accepts_buffers_the_caller_reuses(self, driver):
        w = await driver.writer("/buf")
        buf = bytearray(b"first")
        d = w.write(buf)
        buf[:] = b"XXXXX"
        await d
        await w.write(memoryview(b"second"))
        await w.commit()
        assert await driver.get_content("/buf") == b"firstsecond"

    async def test_concurrent_writers_different_paths(self, driver):
        writers = await defer.gatherResults([driver.writer(f"/cw/{i}/data") for i in range(10)])
        pending = []
        for round_ in range(20):
            for i, w in enumerate(writers):
                pending.append(w.write(f"{i}:{round_};".encode()))
        await defer.gatherResults(pending + [w.commit() for w in writers])
        for i in range(10):
            expected = "".join(f"{i}:{r};" for r in range(20)).encode()
            assert await driver.get_content(f"/cw/{i}/data") == expected

    async def test_large_stream_roundtrip(self, driver):
        size = 32 * MiB
        data = random.randbytes(size)
        w = await driver.writer("/large/data")
        window = []
        for off in range(0, size, MiB):
            window.append(w.write(data[off : off + MiB]))
            if len(window) >= 4:  # bounded backlog, as an upload with backpressure would keep
                await window.pop(0)
        await defer.gatherResults(window)
        await w.commit()
        assert w.size == size
        assert (await driver.stat("/large/data")).size == size
        h = hashlib.sha256()
        r = await driver.reader("/large/data")
        while chunk := await r.read(MiB):
            h.update(chunk)
        r.close()
        assert h.hexdigest() == hashlib.sha256(data).hexdigest()

    # -- put_content atomicity ----------------------------------------------------------------

    async def test_put_content_leaves_no_temporary_files(self, driver):
        for i in range(20):
            await driver.put_content(f"/atomic/{i % 3}/link", b"sha256:" + bytes([48 + i]) * 64)
        seen = await _walk(driver, "/")
        assert sorted(i.path for i in seen if not i.is_dir) == [f"/atomic/{i}/link" for i in range(3)]

    async def test_concurrent_put_content_same_path(self, driver):
        versions = [bytes([65 + i]) * (MiB // 4) for i in range(8)]
        await defer.gatherResults([driver.put_content("/race", v) for v in versions])
        assert await driver.get_content("/race") in versions
        assert await driver.list("/") == ["/race"]
