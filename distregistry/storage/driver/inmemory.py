"""The ``inmemory`` storage driver: a tree of dicts in process memory.

For tests and ``storage: inmemory``. It keeps the filesystem driver's contract down to
its errors and Linux's name limits, so code tested against it behaves the same on disk.
Modification times come from the reactor's clock, so tests can drive them with
``task.Clock``. Every call completes synchronously and returns a fired Deferred.
"""

import functools

from twisted.internet import defer
from zope.interface import implementer

from distregistry.storage.driver import walk_tree
from distregistry.storage.driver.base import (
    FileInfo,
    IFileReader,
    IFileWriter,
    IStorageDriver,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriverError,
    check_path,
)

# The filesystem driver's limits on Linux.
NAME_MAX = 255
PATH_MAX = 4096


def _deferred(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return defer.maybeDeferred(method, *args, **kwargs)

    return wrapper


class _File:
    __slots__ = ("data", "modtime")

    def __init__(self, data, modtime):
        self.data = data
        self.modtime = modtime


class _Dir:
    __slots__ = ("children", "modtime")

    def __init__(self, modtime):
        self.children = {}
        self.modtime = modtime


@implementer(IStorageDriver)
class InMemoryDriver:
    name = "inmemory"

    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self._clock = reactor
        self._root = _Dir(self._clock.seconds())

    def close(self):
        return defer.succeed(None)

    # -- tree helpers ----------------------------------------------------------------

    def _parts(self, path, root_ok=False):
        check_path(path, self.name)
        if path == "/":
            if not root_ok:
                raise InvalidPathError(path, self.name)
            return []
        parts = path[1:].split("/")
        if len(path) >= PATH_MAX or any(len(p) > NAME_MAX for p in parts):
            raise InvalidPathError(path, self.name)
        return parts

    def _lookup(self, path, parts):
        node = self._root
        for name in parts:
            if not isinstance(node, _Dir) or name not in node.children:
                raise PathNotFoundError(path, self.name)
            node = node.children[name]
        return node

    def _conflict(self, path, why):
        return StorageDriverError(path, self.name, f"StorageDriverError: {self.name}: {path}: {why}")

    def _parent(self, path, parts, create):
        """The directory that holds *parts*[-1], created (with its ancestors) if asked."""
        node = self._root
        for name in parts[:-1]:
            child = node.children.get(name)
            if child is None:
                if not create:
                    raise PathNotFoundError(path, self.name)
                child = node.children[name] = _Dir(self._clock.seconds())
                node.modtime = child.modtime
            elif not isinstance(child, _Dir):
                # Looking up, a file in the way means nothing is there; creating, it conflicts.
                if not create:
                    raise PathNotFoundError(path, self.name)
                raise self._conflict(path, "Not a directory")
            node = child
        return node

    def _place(self, path, parts, node):
        """Put *node* at *path*, replacing a file there (never a directory)."""
        parent = self._parent(path, parts, create=True)
        existing = parent.children.get(parts[-1])
        if isinstance(existing, _Dir):
            raise self._conflict(path, "Is a directory")
        parent.children[parts[-1]] = node
        parent.modtime = self._clock.seconds()

    def _info(self, path, node):
        if isinstance(node, _Dir):
            return FileInfo(path=path, size=0, modtime=node.modtime, is_dir=True)
        return FileInfo(path=path, size=len(node.data), modtime=node.modtime, is_dir=False)

    def _file(self, path, parts):
        node = self._lookup(path, parts)
        if not isinstance(node, _File):
            raise PathNotFoundError(path, self.name)
        return node

    # -- IStorageDriver --------------------------------------------------------------

    @_deferred
    def get_content(self, path):
        return bytes(self._file(path, self._parts(path)).data)

    @_deferred
    def put_content(self, path, data):
        self._place(path, self._parts(path), _File(bytearray(data), self._clock.seconds()))

    @_deferred
    def reader(self, path, offset=0):
        node = self._file(path, self._parts(path))
        if not 0 <= offset <= len(node.data):
            raise InvalidOffsetError(path, self.name)
        return _MemoryReader(node, offset)

    @_deferred
    def writer(self, path, append=False):
        parts = self._parts(path)
        if append:
            node = self._file(path, parts)
        else:
            node = _File(bytearray(), self._clock.seconds())
            self._place(path, parts, node)
        return _MemoryWriter(self, path, parts, node)

    @_deferred
    def stat(self, path):
        return self._info(path, self._lookup(path, self._parts(path, root_ok=True)))

    def _children(self, path):
        try:
            node = self._lookup(path, self._parts(path, root_ok=True))
            if not isinstance(node, _Dir):
                raise PathNotFoundError(path, self.name)
        except Exception:
            return defer.fail()
        prefix = "" if path == "/" else path
        return defer.succeed(
            sorted(
                (self._info(f"{prefix}/{name}", child) for name, child in node.children.items()),
                key=lambda i: i.path,
            )
        )

    def list(self, path):
        return self._children(path).addCallback(lambda infos: [i.path for i in infos])

    @_deferred
    def move(self, source, dest):
        src_parts, dst_parts = self._parts(source), self._parts(dest)
        src_parent = self._parent(source, src_parts, create=False)
        node = src_parent.children.get(src_parts[-1])
        if node is None:
            raise PathNotFoundError(source, self.name)
        if src_parts == dst_parts:
            return
        if dst_parts[: len(src_parts)] == src_parts:
            raise self._conflict(dest, "Invalid argument")
        if isinstance(node, _Dir):
            try:
                existing = self._lookup(dest, dst_parts)
            except PathNotFoundError:
                existing = None
            if isinstance(existing, _File):
                raise self._conflict(dest, "Not a directory")
        self._place(dest, dst_parts, node)
        del src_parent.children[src_parts[-1]]
        src_parent.modtime = self._clock.seconds()

    @_deferred
    def delete(self, path):
        parts = self._parts(path)
        parent = self._parent(path, parts, create=False)
        if parent.children.pop(parts[-1], None) is None:
            raise PathNotFoundError(path, self.name)
        parent.modtime = self._clock.seconds()

    @_deferred
    def walk(self, path, visit, start_after=None):
        self._parts(path, root_ok=True)
        return defer.ensureDeferred(walk_tree(self._children, path, visit, start_after))

    def redirect_url(self, method, path):
        return defer.succeed(None)


@implementer(IFileReader)
class _MemoryReader:
    def __init__(self, node, offset):
        self._node = node
        self._pos = offset
        self._closed = False

    def read(self, n):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        chunk = bytes(self._node.data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return defer.succeed(chunk)

    def close(self):
        self._closed = True


@implementer(IFileWriter)
class _MemoryWriter:
    def __init__(self, driver, path, parts, node):
        self._driver = driver
        self._path = path
        self._parts = parts
        self._node = node
        self.size = len(node.data)
        self._state = None  # "committed", "cancelled" or "closed" once finished

    def write(self, data):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        self._node.data += data
        self._node.modtime = self._driver._clock.seconds()
        self.size += len(data)
        return defer.succeed(None)

    @_deferred
    def commit(self):
        self._finish("committed")

    @_deferred
    def close(self):
        if not self._state:
            self._finish("closed")

    @_deferred
    def cancel(self):
        self._finish("cancelled")
        try:
            parent = self._driver._parent(self._path, self._parts, create=False)
        except PathNotFoundError:
            return
        # Only remove our own file: the path may have been rewritten since.
        if parent.children.get(self._parts[-1]) is self._node:
            del parent.children[self._parts[-1]]

    def _finish(self, state):
        if self._state:
            raise ValueError(f"writer is {self._state}")
        self._state = state
