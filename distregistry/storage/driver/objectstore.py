"""The driver contract on a flat object store (gcs, azure): keys instead of files.

A driver path ``/a/b`` is the key ``<rootdirectory>/a/b``, as in registry:2, so a bucket or
container registry:2 wrote is served in place. Directories exist only as key prefixes: a
directory is there while something is below it (so, unlike the filesystem, a directory whose
last file went away is gone too), and, as in registry:2, nothing stops a key below another key
(the registry's layout never makes one).

A backend subclass provides the primitives (``_head``, ``_list_page``, ``_get``, ``_put``,
``_delete_key``, ``_copy``, ``_get_from``, ``_writer``) and its ``_http`` (an HTTPPool); :class:`ChunkedWriter` is the writer
buffering one chunk at a time.
"""

import functools

import attr
from twisted.internet import defer
from zope.interface import implementer

from distregistry.storage.driver import walk_tree
from distregistry.storage.driver.base import (
    PATH_RE,
    FileInfo,
    IFileWriter,
    IStorageDriver,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriverError,
    check_path,
)
from distregistry.storage.driver.httpclient import HTTPStatusError, drain, header
from distregistry.storage.driver.httpio import EmptyReader, ResponseReader

NAME_MAX = 255
# GCS object names and Azure blob names: at most 1024 (bytes, resp. characters; ours are ASCII).
KEY_MAX = 1024
# Requests one tree operation (delete, move of a directory) keeps in flight.
TREE_CONCURRENCY = 16


def as_deferred(method):
    """An ``async def`` method returning a Deferred (errors, synchronous or not, fail it)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return defer.ensureDeferred(method(*args, **kwargs))

    return wrapper


async def gather(awaitables):
    """Results of coroutines/Deferreds run at once; the first failure is raised as itself."""
    try:
        return await defer.gatherResults([defer.ensureDeferred(a) for a in awaitables], consumeErrors=True)
    except defer.FirstError as e:
        e.subFailure.raiseException()


@attr.s(frozen=True, slots=True)
class ObjectInfo:
    key = attr.ib()
    size = attr.ib()
    modtime = attr.ib()  # POSIX seconds


@implementer(IStorageDriver)
class ObjectStoreDriver:
    name = ""

    def __init__(self, rootdirectory, reactor):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        root = (rootdirectory or "").strip("/")
        self._root = root + "/" if root else ""
        self._started = None

    # -- backend hooks ---------------------------------------------------------------

    async def _start(self):
        """Run once before the first request (e.g. create the container)."""

    async def _head(self, key):
        """ObjectInfo, or None if there is no object with exactly this key."""
        raise NotImplementedError

    async def _list_page(self, prefix, delimiter, marker, limit=None):
        """(list[ObjectInfo], list[str] common prefixes, next marker or None) of keys starting
        with *prefix*; with *delimiter* ``/``, what lies deeper comes as common prefixes."""
        raise NotImplementedError

    async def _get_from(self, key, offset):
        """The response to a GET of *key* from byte *offset* on, its body unread."""
        raise NotImplementedError

    def _fail(self, response, body, path):
        """The driver error for an unexpected answer about *path*."""
        if response.code == 404:
            return PathNotFoundError(path, self.name)
        return HTTPStatusError(path, self.name, response.code, body or b"")

    async def _open(self, key, offset, path):
        response = await self._get_from(key, offset)
        if response.code == 206:
            # gcp-storage-emulator answers an empty 206 ("bytes N-(N-1)/N") where 416 is due.
            total = int((header(response, "Content-Range") or "/0").rpartition("/")[2] or 0)
            if offset >= total:
                await drain(response)
                if offset == total:
                    return EmptyReader()
                raise InvalidOffsetError(path, self.name)
        if response.code in (200, 206):
            return ResponseReader(response, lambda e: StorageDriverError(
                path, self.name, f"StorageDriverError: {self.name}: {path}: reading broke off: {e}"))
        await drain(response)
        if response.code == 416:
            info = await self._head(key)
            if info is not None and info.size == offset:
                return EmptyReader()
            raise InvalidOffsetError(path, self.name)
        raise self._fail(response, b"", path)

    # -- paths -----------------------------------------------------------------------

    def _key(self, path, root_ok=False):
        check_path(path, self.name)
        if path == "/":
            if not root_ok:
                raise InvalidPathError(path, self.name)
            return self._root
        key = self._root + path[1:]
        if len(key) > KEY_MAX or any(len(part) > NAME_MAX for part in path.split("/")):
            raise InvalidPathError(path, self.name)
        return key

    def _dir_prefix(self, path):
        key = self._key(path, root_ok=True)
        return key if path == "/" else key + "/"

    def _path(self, key):
        return "/" + key[len(self._root):]

    def _conflict(self, path, why):
        return StorageDriverError(path, self.name, f"StorageDriverError: {self.name}: {path}: {why}")

    async def _ready(self):
        if self._started is None:
            self._started = defer.ensureDeferred(self._start())
            self._started.addErrback(self._start_failed)
        await self._started

    def _start_failed(self, failure):
        self._started = None  # the next call tries again
        return failure

    # -- listing helpers -------------------------------------------------------------

    async def _list_all(self, prefix, delimiter=None):
        objects, prefixes, marker = [], [], None
        while True:
            objs, prefs, marker = await self._list_page(prefix, delimiter, marker)
            objects += objs
            prefixes += prefs
            if not marker:
                return objects, prefixes

    async def _has_children(self, prefix):
        objs, prefs, _ = await self._list_page(prefix, "/", None, limit=1)
        return any(o.key != prefix for o in objs) or bool(prefs)

    async def _children(self, path):
        prefix = self._dir_prefix(path)
        await self._ready()
        objects, prefixes = await self._list_all(prefix, "/")
        infos = {}
        for p in prefixes:
            child = self._path(p.rstrip("/"))
            infos[child] = FileInfo(path=child, size=0, modtime=0.0, is_dir=True)
        for o in objects:
            if o.key == prefix:
                continue  # a "directory marker" some tools write; not a file of ours
            child = self._path(o.key)
            infos.setdefault(child, FileInfo(path=child, size=o.size, modtime=o.modtime, is_dir=False))
        if not infos and path != "/":
            raise PathNotFoundError(path, self.name)
        # Names the contract cannot express (written by other tools) are unreachable anyway.
        return sorted((i for i in infos.values() if PATH_RE.fullmatch(i.path)), key=lambda i: i.path)

    async def _each(self, keys, fn):
        """Run ``fn(key)`` for every key, TREE_CONCURRENCY at a time."""
        sem = defer.DeferredSemaphore(TREE_CONCURRENCY)
        await gather([sem.run(lambda k=k: defer.ensureDeferred(fn(k))) for k in keys])

    # -- IStorageDriver --------------------------------------------------------------

    def close(self):
        return self._http.close()

    @as_deferred
    async def get_content(self, path):
        key = self._key(path)
        await self._ready()
        return await self._get(key, path)

    @as_deferred
    async def put_content(self, path, data):
        key = self._key(path)
        data = bytes(data)
        await self._ready()
        await self._put(key, data, path)

    @as_deferred
    async def reader(self, path, offset=0):
        key = self._key(path)
        if offset < 0:
            raise InvalidOffsetError(path, self.name)
        await self._ready()
        return await self._open(key, offset, path)

    @as_deferred
    async def writer(self, path, append=False):
        key = self._key(path)
        await self._ready()
        if append:
            info = await self._head(key)
            if info is None:
                raise PathNotFoundError(path, self.name)
            return await self._writer(key, path, info)
        return await self._writer(key, path, None)

    @as_deferred
    async def stat(self, path):
        key = self._key(path, root_ok=True)
        await self._ready()
        if path != "/":
            info = await self._head(key)
            if info is not None:
                return FileInfo(path=path, size=info.size, modtime=info.modtime, is_dir=False)
        prefix = self._dir_prefix(path)
        objs, prefs, _ = await self._list_page(prefix, "/", None, limit=1)
        objs = [o for o in objs if o.key != prefix]
        if not objs and not prefs:
            raise PathNotFoundError(path, self.name)
        # A prefix has no time of its own; its newest file listed is a fair stand-in.
        return FileInfo(path=path, size=0, modtime=max((o.modtime for o in objs), default=0.0), is_dir=True)

    @as_deferred
    async def list(self, path):
        return [info.path for info in await self._children(path)]

    @as_deferred
    async def move(self, source, dest):
        src, dst = self._key(source), self._key(dest)
        await self._ready()
        if await self._head(src) is not None:
            if src == dst:
                return
            await self._copy(src, dst, source)
            await self._delete_key(src, source)
            return
        objects, _ = await self._list_all(src + "/")
        if not objects:
            raise PathNotFoundError(source, self.name)
        if src == dst:
            return
        if dst.startswith(src + "/"):
            raise self._conflict(dest, "Invalid argument")
        await self._each([o.key for o in objects], lambda k: self._copy(k, dst + k[len(src):], source))
        await self._each([o.key for o in objects], lambda k: self._delete_key(k, source, missing_ok=True))

    @as_deferred
    async def delete(self, path):
        key = self._key(path)
        await self._ready()
        if await self._head(key) is not None:
            try:
                await self._delete_key(key, path)
                return
            except PathNotFoundError:
                pass  # deleted concurrently; there may still be a tree below it
        objects, _ = await self._list_all(key + "/")
        if not objects:
            raise PathNotFoundError(path, self.name)
        await self._each([o.key for o in objects], lambda k: self._delete_key(k, path, missing_ok=True))

    @as_deferred
    async def walk(self, path, visit, start_after=None):
        self._key(path, root_ok=True)
        await walk_tree(lambda p: defer.ensureDeferred(self._children(p)), path, visit, start_after)


@implementer(IFileWriter)
class ChunkedWriter:
    """A writer that sends its data in pieces of *chunksize* bytes, holding at most the piece
    being filled (plus what callers queue without waiting for their Deferreds).

    Subclasses implement ``_send(chunk)`` (a full chunk), ``_complete(rest)`` (the last,
    possibly empty, piece: make everything visible at the path) and ``_discard()``. Calls run
    one at a time in call order; after a failed send every later call fails too, since the
    data behind it would land at the wrong offset.
    """

    def __init__(self, driver, key, path, size, chunksize):
        self.size = size
        self._driver = driver
        self._key = key
        self._path = path
        self._chunksize = chunksize
        self._buffer = bytearray()
        self._lock = defer.DeferredLock()
        self._state = None  # "committed", "cancelled" or "closed" once finished
        self._failed = None

    def _serial(self, fn):
        return self._lock.run(lambda: defer.ensureDeferred(fn()))

    def write(self, data):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        self._buffer += data  # a copy: the caller may reuse its buffer
        self.size += len(data)
        return self._serial(self._drain)

    async def _drain(self):
        if self._failed is not None:
            raise StorageDriverError(self._path, self._driver.name,
                                     f"StorageDriverError: {self._driver.name}: {self._path}: an earlier write failed: {self._failed}")
        while len(self._buffer) >= self._chunksize:
            chunk = bytes(self._buffer[: self._chunksize])
            del self._buffer[: self._chunksize]
            try:
                await self._send(chunk)
            except Exception as e:
                self._failed = e
                raise

    async def _finish(self):
        await self._drain()
        rest = bytes(self._buffer)
        self._buffer.clear()
        await self._complete(rest)

    def commit(self):
        return self._end("committed", self._finish)

    def close(self):
        if self._state:
            # A no-op on a finished writer, but it still waits for the last call.
            return self._serial(lambda: defer.succeed(None))
        return self._end("closed", self._finish)

    def cancel(self):
        return self._end("cancelled", self._discard)

    def _end(self, state, fn):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        self._state = state
        return self._serial(fn)
