"""The ``filesystem`` storage driver: driver path ``/a/b`` is ``<rootdirectory>/a/b``.

The on-disk tree is registry:2's (3.x): files written through ``<path>.<uuid>.tmp``,
fsync, rename and a directory fsync; directories created 0o777 and files 0o666 (the
umask applies), so a Go registry can share the tree.

Every call that may block runs in the driver's own bounded thread pool (``maxthreads``,
like registry:2's regulator), never on the reactor thread; small reads and stats are first
tried on the reactor thread in a way the kernel guarantees not to wait (nowait.py). Open readers and writers run
their calls one at a time, in call order, so callers may queue several.
"""

import bisect
import contextlib
import errno
import functools
import os
import queue
import random
import stat as statmod
import threading
from collections import deque

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from distregistry.storage.driver import start_hint, walk_tree
from distregistry.storage.driver.nowait import NoWait
from distregistry.storage.driver.base import (
    PATH_RE,
    FileInfo,
    IFileWriter,
    ILocalFileReader,
    IStorageDriver,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriverError,
    check_path,
)

_log = Logger()

# Linux limits, checked before any I/O so an absurd path cannot half-create a deep tree.
NAME_MAX = 255
PATH_MAX = 4096

# Calls one pool job runs for an open file before yielding its thread (16 MiB of 1 MiB writes).
_DRAIN_BATCH = 16

# Files read whole on the reactor thread when cached (link files, manifests); larger ones go
# through the pool, so the reactor never copies more than this at once.
NOWAIT_READ_LIMIT = 256 << 10
_NOWAIT = NoWait()

# errno values meaning "nothing there" when looking a path up.
_ABSENT = (errno.ENOENT, errno.ENOTDIR)
# errno values meaning "something of the wrong kind is in the way" when creating.
_CONFLICT = (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY, errno.EINVAL)

# Writes work on names relative to an fd of their parent directory: one path lookup, then
# no window in which a swapped-in symlink could redirect them; O_RDONLY so it can be fsynced.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def _deferred(method):
    """Turn a synchronous exception (e.g. InvalidPathError) into a failed Deferred."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return defer.maybeDeferred(method, *args, **kwargs)

    return wrapper


def _close_quietly(f):
    # After a failed flush, close() re-raises that same error; the fd is released anyway.
    try:
        f.close()
    except OSError:
        pass


class _ThreadPool:
    """At most *maxthreads* threads, started as needed, running jobs from one queue.

    Twisted's ThreadPool was measured at ~100 us of CPU per call here (its Team
    coordinator takes a lock per job, and was the top frame of a manifest PUT profile);
    this, a plain queue like concurrent.futures', at ~30 us. A manifest GET by tag makes
    two storage calls, a PUT seven."""

    def __init__(self, maxthreads, name):
        self.max = maxthreads
        self.name = name
        self.threads = []
        self.started = False
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()   # guards _idle and threads
        self._idle = 0                  # threads waiting for a job and not yet promised one

    def start(self):
        self.started = True

    def callInThread(self, job):
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1
                return
            if len(self.threads) >= self.max:
                return                  # a busy thread takes it when done
            thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self.threads)}")
            self.threads.append(thread)
        thread.start()

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()   # jobs catch their own errors (FilesystemDriver._run, _Serial._drain)
            with self._lock:
                self._idle += 1

    def stop(self):
        """Join every thread; callers make sure no job is queued or running."""
        for _ in self.threads:
            self._jobs.put(None)
        for thread in self.threads:
            thread.join()
        self.started = False


@contextlib.contextmanager
def _closing_fd(fd):
    try:
        yield fd
    finally:
        os.close(fd)


def _write_all(write, data):
    view = memoryview(data)
    while view:
        view = view[write(view):]


def _temporary_name(name):
    # UUID-shaped random hex, not uuid4(): os.urandom is a syscall and UUID() slow Python,
    # and O_EXCL refuses a clash anyway.
    h = f"{random.getrandbits(128):032x}"
    return f"{name}.{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}.tmp"


def _remove_vanishing(remove, name, dir_fd):
    try:
        remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass   # a concurrent delete of part of the tree is not a failure of this one


def _empty_dir(fd):
    """Remove everything in the directory open as *fd*, then close it. Never follows a
    symlink (O_NOFOLLOW), unlike shutil.rmtree by fd also no lstat and fstat per directory."""
    with _closing_fd(fd):
        with os.scandir(fd) as entries:
            children = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for name, is_dir in children:
            if not is_dir:
                _remove_vanishing(os.unlink, name, fd)
                continue
            try:
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                continue
            _empty_dir(child)
            _remove_vanishing(os.rmdir, name, fd)


@implementer(IStorageDriver)
class FilesystemDriver:
    name = "filesystem"

    def __init__(self, rootdirectory, maxthreads=100, reactor=None, managed=False):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._managed = managed
        # "/" as root becomes "" so that root + path never doubles the slash.
        self._root = os.path.abspath(rootdirectory).rstrip("/")
        self._real_root = None
        self.threadpool = _ThreadPool(maxthreads, "filesystem-driver")
        self._jobs = 0
        self._done_lock = threading.Lock()   # guards _done and _waking, shared with pool threads
        self._done = []
        self._waking = False
        self._closed = False
        self._close_waiters = []
        self._shutdown_trigger = None

    # -- thread pool bookkeeping -------------------------------------------------------

    def _hold(self):
        """Count one job (queued or running) so close() can wait for it."""
        if self._closed:
            raise RuntimeError("filesystem driver is closed")
        self._jobs += 1

    def _settle(self, outcome, d):
        """Fire *d* with a job's outcome, then release the job: the caller's callbacks run
        before close() can report the pool stopped."""
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)
        self._jobs -= 1
        self._maybe_stopped()

    def _complete(self, outcome, d):
        """From a pool thread: have *d* settled on the reactor thread. Outcomes that arrive
        before the reactor got to the first share its wake-up: one waker write (a syscall,
        and a GIL hand-off in the pool thread) per batch rather than per call."""
        with self._done_lock:
            self._done.append((outcome, d))
            if self._waking:
                return
            self._waking = True
        self._reactor.callFromThread(self._settle_done)

    def _settle_done(self):
        with self._done_lock:
            done, self._done = self._done, []
            self._waking = False
        for outcome, d in done:
            try:
                self._settle(outcome, d)
            except Exception:   # e.g. AlreadyCalledError: it must not keep the others unsettled
                _log.failure("settling a filesystem driver call")

    def _start(self):
        if not self.threadpool.started:
            self.threadpool.start()
            # Non-daemon pool threads would otherwise keep the process alive after the reactor
            # stops. A managed driver is closed by its owner instead, after the owner's graceful
            # drain (which runs in the same "before shutdown" phase and still needs the pool).
            if not self._managed:
                self._shutdown_trigger = self._reactor.addSystemEventTrigger(
                    "before", "shutdown", self._close_at_shutdown
                )

    def _call_in_pool(self, fn):
        self._start()
        self.threadpool.callInThread(fn)

    def _run(self, fn, *args):
        self._hold()
        self._start()
        d = defer.Deferred()

        def job():
            try:
                outcome = fn(*args)
            except BaseException:
                outcome = Failure()
            self._complete(outcome, d)

        self.threadpool.callInThread(job)
        return d

    def _maybe_stopped(self):
        if not self._closed or self._jobs:
            return
        if self.threadpool.started:
            # Every worker is idle by now, so joining them does not wait on I/O.
            self.threadpool.stop()
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    def _close_at_shutdown(self):
        self._shutdown_trigger = None
        return self.close()

    def close(self):
        """Deferred: refuse new calls, let queued ones finish, then stop the thread pool."""
        self._closed = True
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        d = defer.Deferred()
        self._close_waiters.append(d)
        self._maybe_stopped()
        return d

    # -- paths -----------------------------------------------------------------------

    def _full(self, path, root_ok=False):
        """The OS path of a driver path; pure string work, safe on the reactor thread."""
        check_path(path, self.name)
        if path == "/":
            if not root_ok:
                raise InvalidPathError(path, self.name)
            return self._root or "/"
        full = self._root + path
        if len(full.encode("utf-8", "surrogateescape")) >= PATH_MAX or any(
            len(part) > NAME_MAX for part in path.split("/")
        ):
            raise InvalidPathError(path, self.name)
        return full

    def _confine(self, full, path, real=None):
        """Refuse a path whose symlinks lead outside the root (runs in a pool thread);
        *real*: the path already resolved, else realpath() resolves it."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self._root or "/")
        root = self._real_root
        if real is None:
            real = os.path.realpath(full)
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            raise InvalidPathError(path, self.name, f"InvalidPathError: {self.name}: {path}: leaves the root")

    def _open_confined(self, full, path, flags):
        """os.open, then the same check on where the open file really is: one readlink of
        /proc/self/fd instead of realpath()'s lstat of every path component, which was
        the largest cost of a manifest GET (reads are the hot path), and no window between
        the check and the open. A missing path is still checked (_confine_missing), so a
        dangling symlink out of the root is refused rather than reported absent."""
        try:
            fd = os.open(full, flags | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in _ABSENT:
                self._confine_missing(full, path)
            raise
        try:
            self._confine_fd(fd, full, path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _confine_fd(self, fd, full, path):
        """_confine for an open *fd* of *full*: where it really is, by one readlink."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:   # no /proc mounted
            real = os.path.realpath(full)
        self._confine(full, path, real)

    def _open_dir(self, directory, path):
        """An fd of *directory*, checked to be inside the root."""
        fd = os.open(directory or "/", _DIR_FLAGS)
        try:
            self._confine_fd(fd, directory or "/", path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _nearest_dir(self, full, path):
        """(fd, names): an fd of the nearest directory above *full* that exists, at or below
        the root and checked to be inside it, and the names from there down to *full*, the
        first of which was not found. None if even the root is missing."""
        names = []
        parent = full
        while len(parent) > len(self._root):
            parent, _, name = parent.rpartition("/")
            names.append(name)
            try:
                fd = self._open_dir(parent, path)
            except FileNotFoundError:
                continue
            names.reverse()
            return fd, names
        return None

    def _confine_missing(self, full, path):
        """_confine for a path that is not there: the nearest directory above it that is gets
        the fd check; realpath() only if a symlink is in the way (a dangling one leaving
        the root is refused, not reported absent), a file is, or the root is missing."""
        try:
            found = self._nearest_dir(full, path)
        except OSError:   # e.g. a file where a directory should be
            found = None
        if found is not None:
            fd, names = found
            with _closing_fd(fd):
                try:
                    os.stat(names[0], dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    return
                except OSError:
                    pass
        self._confine(full, path)

    def _open_parent(self, full, path, create=False):
        """(fd, name): an fd of *full*'s parent directory, checked to be inside the root,
        and the last name of *full*. *create*: make missing directories (0o777 less the
        umask, as os.makedirs), only below a checked one."""
        parent, _, name = full.rpartition("/")
        try:
            return self._open_dir(parent, path), name
        except OSError as e:
            if not create or e.errno != errno.ENOENT:
                if e.errno in _ABSENT:
                    self._confine_missing(full, path)
                raise
        return self._make_dirs(parent, path), name

    def _make_dirs(self, directory, path):
        """An fd of *directory*, made with its missing parents."""
        found = self._nearest_dir(directory, path)
        if found is None:   # not even the root is there yet
            os.makedirs(self._root, 0o777, exist_ok=True)
            if directory == self._root:
                return self._open_dir(directory, path)
            found = self._nearest_dir(directory, path)
        fd, names = found
        # Created by name relative to the last directory known to be inside the root: below
        # one this mkdir just made, nothing can be in the way, so no open per level.
        below = ""
        try:
            for name in names:
                below = f"{below}/{name}" if below else name
                try:
                    os.mkdir(below, 0o777, dir_fd=fd)
                    continue
                except FileExistsError:
                    pass
                # Made meanwhile by a concurrent write, or something else is there: followed
                # (as before) if it is a directory inside the root.
                try:
                    child = os.open(below, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError as e:   # a dangling symlink
                    raise OSError(errno.EEXIST, os.strerror(errno.EEXIST)) from e
                os.close(fd)
                fd, below = child, ""
                self._confine_fd(fd, directory, path)
            if below:
                child = os.open(below, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_nowait(self, full, path, flags):
        """On the reactor thread: an fd for *full*, inside the root, if the kernel could open
        it without waiting for the disk (nowait.py), else None: the pool then does it and
        gives the answer, errors included."""
        if self._real_root is None or self._closed:
            return None     # the root is resolved once, by the pool (realpath may wait)
        fd = _NOWAIT.open(full, flags)
        if fd is None:
            return None
        try:
            self._confine_fd(fd, full, path)    # by /proc, which NoWait checked is there
        except (OSError, InvalidPathError):
            os.close(fd)
            return None
        return fd

    def _raise(self, exc, path, absent=_ABSENT, conflict=()):
        """Raise the driver error an OSError means, or the OSError itself."""
        if exc.errno in absent:
            raise PathNotFoundError(path, self.name) from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise InvalidPathError(path, self.name) from exc
        if exc.errno in conflict:
            raise StorageDriverError(path, self.name, f"StorageDriverError: {self.name}: {path}: {exc.strerror}") from exc
        raise exc

    # -- IStorageDriver --------------------------------------------------------------

    @_deferred
    def get_content(self, path):
        full = self._full(path)
        fd = self._open_nowait(full, path, os.O_RDONLY)
        if fd is not None:
            with _closing_fd(fd):
                data = _NOWAIT.read(fd, NOWAIT_READ_LIMIT)
            if data is not None:
                return data
        return self._run(self._get_content, full, path)

    def _get_content(self, full, path):
        try:
            with open(self._open_confined(full, path, os.O_RDONLY), "rb") as f:
                return f.read()
        except OSError as e:
            self._raise(e, path, absent=_ABSENT + (errno.EISDIR,))

    @_deferred
    def put_content(self, path, data):
        return self._run(self._put_content, self._full(path), path, bytes(data))

    def _put_content(self, full, path, data):
        # Parent checked, not the path: the rename replaces a symlink there, never follows it.
        try:
            dir_fd, name = self._open_parent(full, path, create=True)
            with _closing_fd(dir_fd):
                tmp = _temporary_name(name)
                fd = os.open(tmp, _NEW_FILE_FLAGS | os.O_EXCL, 0o666, dir_fd=dir_fd)
                try:
                    try:
                        _write_all(functools.partial(os.write, fd), data)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except BaseException:
                    try:
                        os.unlink(tmp, dir_fd=dir_fd)
                    except FileNotFoundError:
                        pass
                    raise
                os.fsync(dir_fd)
        except OSError as e:
            self._raise(e, path, absent=(), conflict=_CONFLICT)

    @_deferred
    def reader(self, path, offset=0):
        full = self._full(path)
        if offset < 0:
            raise InvalidOffsetError(path, self.name)
        d = self._run(self._open_reader, full, path, offset)
        return d.addCallback(lambda f: _FileReader(self, f, offset))

    def _open_reader(self, full, path, offset):
        try:
            fd = self._open_confined(full, path, os.O_RDONLY)
            st = os.fstat(fd)
            if statmod.S_ISDIR(st.st_mode):
                os.close(fd)
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        except OSError as e:
            self._raise(e, path, absent=_ABSENT + (errno.EISDIR,))
        f = open(fd, "rb", buffering=0)
        try:
            if offset > st.st_size:
                raise InvalidOffsetError(path, self.name)
            f.seek(offset)
        except BaseException:
            f.close()
            raise
        try:
            # Readers stream whole blobs: a doubled kernel readahead window, so sequential
            # reads (and sendfile on the API's reactor thread) wait for the disk less often.
            os.posix_fadvise(fd, offset, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass                        # advice only
        return f

    @_deferred
    def writer(self, path, append=False):
        full = self._full(path)
        d = self._run(self._open_writer, full, path, append)
        return d.addCallback(lambda opened: _FileWriter(self, full, *opened))

    def _open_writer(self, full, path, append):
        try:
            if append:
                fd = self._open_confined(full, path, os.O_WRONLY | os.O_APPEND)
                size = None
            else:
                dir_fd, name = self._open_parent(full, path, create=True)
                with _closing_fd(dir_fd):
                    flags = _NEW_FILE_FLAGS | os.O_TRUNC
                    try:
                        fd = os.open(name, flags | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
                    except OSError as e:
                        if e.errno != errno.ELOOP:
                            raise
                        # A symlink: followed, as by reads, if it stays inside the root.
                        self._confine(full, path)
                        fd = os.open(name, flags, 0o666, dir_fd=dir_fd)
                size = 0
        except OSError as e:
            self._raise(e, path, absent=_ABSENT if append else (), conflict=_CONFLICT)
        try:
            if size is None:
                size = os.fstat(fd).st_size
            # Unbuffered, and "wb" on an O_APPEND fd: no isatty, tell or seek calls to open it.
            return open(fd, "wb", buffering=0), size
        except BaseException:
            os.close(fd)
            raise

    @_deferred
    def stat(self, path):
        full = self._full(path, root_ok=True)
        fd = self._open_nowait(full, path, os.O_PATH)
        if fd is not None:
            with _closing_fd(fd):
                return self._info(path, os.fstat(fd))
        return self._run(self._stat, full, path)

    def _stat(self, full, path):
        try:
            fd = self._open_confined(full, path, os.O_PATH)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as e:
            self._raise(e, path)
        return self._info(path, st)

    @staticmethod
    def _info(path, st):
        is_dir = statmod.S_ISDIR(st.st_mode)
        return FileInfo(path=path, size=0 if is_dir else st.st_size, modtime=st.st_mtime, is_dir=is_dir)

    @_deferred
    def list(self, path):
        return self._run(self._list, self._full(path, root_ok=True), path)

    def _list(self, full, path):
        # Names only, as registry:2's List: no stat per entry (a tags list reads 10,000),
        # and listdir, not scandir: no DirEntry per name.
        prefix = "" if path == "/" else path
        with self._listing_dir(full, path) as fd:
            names = [] if fd is None else os.listdir(fd)
        return [f"{prefix}/{name}" for name in sorted(_grammatical(names))]

    def _scan(self, full, path, after, limit):
        """(FileInfos of the first *limit* children of *path*, sorted; the names of the
        rest, for _scan_more). Names the contract cannot express (e.g. ``lost+found`` at a
        mount point) are left out, being unreachable anyway. With *after*: only the
        children from that name on (a walk's start-after hint)."""
        with self._listing_dir(full, path) as fd:
            if fd is None:
                return [], []
            names = sorted(_grammatical(os.listdir(fd)))
            if after is not None:
                names = names[bisect.bisect_left(names, after):]
            return self._stat_names(fd, path, names, limit)

    def _scan_more(self, full, path, names, limit):
        """_scan's next piece: the first *limit* of *names* stat'ed, and the rest."""
        with self._listing_dir(full, path) as fd:
            if fd is None:
                return [], []
            return self._stat_names(fd, path, names, limit)

    def _stat_names(self, fd, path, names, limit):
        prefix = "" if path == "/" else path
        infos = []
        for name in names[:limit]:
            try:
                st = os.stat(name, dir_fd=fd)
            except FileNotFoundError:
                continue  # removed since the directory was read
            is_dir = statmod.S_ISDIR(st.st_mode)
            infos.append(FileInfo(path=f"{prefix}/{name}", size=0 if is_dir else st.st_size, modtime=st.st_mtime,
                                  is_dir=is_dir))
        return infos, names[limit:]

    @contextlib.contextmanager
    def _listing_dir(self, full, path):
        """The directory's fd, None for a fresh root that nothing has been written to yet."""
        try:
            # By fd: a catalog walk lists every repository directory, and realpath() per
            # directory was most of its cost (see _open_confined).
            fd = self._open_confined(full, path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            if path == "/" and e.errno == errno.ENOENT:
                yield None
                return
            self._raise(e, path)
        with _closing_fd(fd):
            yield fd

    @_deferred
    def move(self, source, dest):
        return self._run(self._move, self._full(source), source, self._full(dest), dest)

    def _move(self, src_full, source, dst_full, dest):
        # Parents checked: a rename moves or replaces a symlink, never follows it.
        try:
            src_fd, src_name = self._open_parent(src_full, source)
        except OSError as e:
            self._raise(e, source)
        with _closing_fd(src_fd):
            try:
                # Before any directory is made for the destination.
                if statmod.S_ISLNK(os.stat(src_name, dir_fd=src_fd, follow_symlinks=False).st_mode):
                    self._confine(src_full, source)
            except OSError as e:
                self._raise(e, source)
            try:
                dst_fd, dst_name = self._open_parent(dst_full, dest, create=True)
                with _closing_fd(dst_fd):
                    os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                    # registry:2 does not sync here; we do, so a committed blob survives a crash.
                    os.fsync(dst_fd)
            except OSError as e:
                self._raise(e, dest, absent=(), conflict=_CONFLICT)

    @_deferred
    def delete(self, path):
        return self._run(self._delete, self._full(path), path)

    def _delete(self, full, path):
        try:
            dir_fd, name = self._open_parent(full, path)
            with _closing_fd(dir_fd):
                # A directory (the usual case: an upload, a tag) is told by the open, no lstat.
                try:
                    fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    if statmod.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                        self._confine(full, path)   # one leaving the root is refused, as before
                    os.unlink(name, dir_fd=dir_fd)
                    return
                _empty_dir(fd)
                _remove_vanishing(os.rmdir, name, dir_fd)
        except OSError as e:
            self._raise(e, path)

    @_deferred
    def walk(self, path, visit, start_after=None):
        self._full(path, root_ok=True)
        listings = _WalkListings(self, start_hint(path, start_after))
        return defer.ensureDeferred(walk_tree(listings, path, visit, start_after, prefetch=_WALK_PREFETCH))

    def redirect_url(self, method, path):
        return defer.succeed(None)


def _grammatical(names):
    """The *names* a driver path may hold: one PATH_RE match for the whole listing (no
    name holds a '/'), name by name only when that fails."""
    if not names or PATH_RE.fullmatch("/" + "/".join(names)):
        return names
    return [name for name in names if PATH_RE.fullmatch("/" + name)]


# Sibling directories a walk asks for ahead, which _WalkListings lists in one pool job:
# 64 made a quarter of the jobs 16 did for a catalog.
_WALK_PREFETCH = 64

# FileInfos a walk's listing stats at once: a catalog page needs the next n (at most 1000
# by default) of 10,000 repository directories, not every one after ``last``.
_WALK_PIECE = 256


class _Piece(list):
    """A walk listing: FileInfos, and ``rest`` (walk_tree's protocol) when there are more."""

    rest = None


class _WalkListings:
    """``children`` for one walk_tree. The listings asked for while a pool job is listing
    (the walk asks for the next _WALK_PREFETCH sibling directories) go together in the next job,
    answered in one reactor call: a job and a thread hop per directory were most of a
    catalog's CPU. Big directories come in pieces, and children before the walk's
    start-after hint are not even stat'ed."""

    def __init__(self, driver, start_after):
        self._driver = driver
        self._hint = start_after
        self._wanted = []     # (scan function, full, path, argument, Deferred) for the next job
        self._busy = False    # a job is out

    def __call__(self, path):
        try:
            full = self._driver._full(path, root_ok=True)
        except InvalidPathError:
            return defer.fail()
        after = None
        parent = "" if path == "/" else path
        if self._hint is not None and self._hint.startswith(parent + "/"):
            after = self._hint[len(parent) + 1:].partition("/")[0]
        return self._request(self._driver._scan, full, path, after)

    def _request(self, scan, full, path, argument):
        d = defer.Deferred()
        self._wanted.append((scan, full, path, argument, d))
        if not self._busy:
            self._submit()
        return d

    def _submit(self):
        batch, self._wanted = self._wanted, []
        self._busy = True
        try:
            job = self._driver._run(self._list_all, [request[:4] for request in batch])
        except RuntimeError:   # the driver is closed
            job = defer.fail()
        job.addBoth(self._answer, batch)

    def _list_all(self, batch):
        """In a pool thread: each request's (FileInfos, names left), or the Failure it raised."""
        outcomes = []
        for scan, full, path, argument in batch:
            try:
                outcomes.append(scan(full, path, argument, _WALK_PIECE))
            except BaseException:
                outcomes.append(Failure())
        return outcomes

    def _answer(self, outcomes, batch):
        # The next batch goes out before these are answered, so the pool lists while the
        # reactor visits.
        self._busy = False
        if self._wanted:
            self._submit()
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(batch)
        for (_, full, path, _, d), outcome in zip(batch, outcomes):
            if isinstance(outcome, Failure):
                d.errback(outcome)
                continue
            infos, left = outcome
            piece = _Piece(infos)
            if left:
                piece.rest = functools.partial(self._request, self._driver._scan_more, full, path, left)
            d.callback(piece)


class _Serial:
    """Runs the blocking calls of one open file one at a time, in call order.

    One pool job drains the queue, so a backlog of writes reaches the disk back to back
    instead of waiting a reactor round trip between each; every call's Deferred still
    fires as soon as that call is done.
    """

    def __init__(self, driver):
        self._driver = driver
        self._lock = threading.Lock()  # guards _queue and _busy, shared with the draining thread
        self._queue = deque()
        self._busy = False

    @property
    def idle(self):
        with self._lock:
            return not self._busy

    def __call__(self, fn, *args):
        try:
            self._driver._hold()
        except RuntimeError:
            return defer.fail()
        d = defer.Deferred()
        with self._lock:
            self._queue.append((fn, args, d))
            start, self._busy = not self._busy, True
        if start:
            self._driver._call_in_pool(self._drain)
        return d

    def _drain(self):
        complete = self._driver._complete
        for _ in range(_DRAIN_BATCH):
            with self._lock:
                if not self._queue:
                    self._busy = False
                    return
                fn, args, d = self._queue.popleft()
            try:
                outcome = fn(*args)
            except BaseException:
                outcome = Failure()
            complete(outcome, d)
        # Still busy: go to the back of the pool's queue, so one fast stream cannot keep a
        # thread while other calls wait for one.
        self._driver._reactor.callFromThread(self._driver._call_in_pool, self._drain)


@implementer(ILocalFileReader)
class _FileReader:
    def __init__(self, driver, f, offset):
        self._file = f
        self._serial = _Serial(driver)
        self._closed = False
        self.offset = offset

    def fileno(self):
        return self._file.fileno()

    def cached(self, offset, count):
        # The first and the last byte of the range: readahead fills what lies between in order.
        fd = self._file.fileno()
        return _NOWAIT.cached(fd, offset) and (count <= 1 or _NOWAIT.cached(fd, offset + count - 1))

    def prefetch(self, offset, count):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        return self._serial(self._read_into_cache, offset, count)

    def _read_into_cache(self, offset, count):
        scratch = bytearray(min(count, 1 << 20))
        fd = self._file.fileno()
        while count > 0:
            n = os.preadv(fd, [memoryview(scratch)[:min(count, len(scratch))]], offset)
            if n <= 0:
                return
            offset += n
            count -= n

    def read(self, n):
        if self._closed:
            return defer.fail(ValueError("reader is closed"))
        return self._serial(self._file.read, n).addCallback(self._advance)

    def _advance(self, data):
        self.offset += len(data)
        return data

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self._serial.idle:
            self._file.close()  # a read-only fd: nothing to flush, does not block
        else:
            self._serial(self._file.close).addErrback(
                lambda f: _log.failure("closing a reader after its last read", f, LogLevel.error)
            )


@implementer(IFileWriter)
class _FileWriter:
    def __init__(self, driver, full, f, size):
        self.size = size
        self._full = full
        self._file = f
        self._serial = _Serial(driver)
        self._state = None  # "committed", "cancelled" or "closed" once finished
        # The first write error; touched only by this writer's pool calls, which never overlap.
        self._failure = None

    def write(self, data):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        data = bytes(data)  # the caller may reuse a mutable buffer before the write runs
        self.size += len(data)
        return self._serial(self._write, data)

    def commit(self):
        return self._finish("committed", self._sync_close)

    def close(self):
        if self._state:
            # Closing a finished writer is a no-op, but still waits for its last call.
            return defer.succeed(None) if self._serial.idle else self._serial(lambda: None)
        # registry:2 fsyncs on Close too: an upload acknowledged with 202 survives a crash.
        return self._finish("closed", self._sync_close)

    def cancel(self):
        return self._finish("cancelled", self._remove)

    def _finish(self, state, fn):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        self._state = state
        return self._serial(fn)

    def _raise_earlier_failure(self):
        if self._failure is not None:
            raise OSError(self._failure.errno, f"an earlier write failed: {self._failure.strerror}", self._full)

    def _write(self, data):
        self._raise_earlier_failure()
        try:
            _write_all(self._file.write, data)   # unbuffered: a short write is possible
        except OSError as e:
            self._failure = e
            raise

    def _sync_close(self):
        try:
            self._raise_earlier_failure()
            os.fsync(self._file.fileno())
        finally:
            _close_quietly(self._file)

    def _remove(self):
        _close_quietly(self._file)
        try:
            os.unlink(self._full)
        except FileNotFoundError:
            pass
