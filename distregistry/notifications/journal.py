"""One endpoint's event queue, durable on disk: the reason a restart or ``kill -9`` loses
no event a client was answered for (registry:2 keeps this queue in memory only).

Layout in the endpoint's directory: segments ``<seq>.log`` holding one compact JSON event
per line, appended in order, and ``cursor`` (``<seq> <offset> <consumed>``): where the first
undelivered event starts. Appends are group-committed: events arriving while a write is in
flight go out together in the next write + fsync, in the notifications thread pool, so the
reactor never waits on the disk and a burst of pushes costs one fsync, not one each.

The cursor is written without fsync: a stale cursor after a crash only means events are
delivered again (at-least-once; each keeps its ``id``). Delivered segments are deleted.

One process at a time: ``open`` takes an exclusive ``flock`` on ``lock`` in the directory
(held until ``close`` or the process's end), so a worker still draining after its parent was
killed, or a second registry configured with the same directory, cannot append to, compact
or deliver from the same files.

Size bound: when the segments exceed ``maxsize``, the oldest segment goes, delivered or
not, and its undelivered events are counted as dropped: the newest events are the ones a
receiver coming back after a long outage still has a use for.
"""

import errno
import fcntl
import os
import time

from twisted.internet import defer, threads
from twisted.logger import Logger

log = Logger()

SUFFIX = ".log"
CURSOR = "cursor"
LOCK = "lock"
LOCK_POLL = 0.1
READ_CHUNK = 1 << 20


class JournalBusy(OSError):
    """Another process holds the journal's lock."""


def _segment_name(seq):
    return f"{seq:020d}{SUFFIX}"


class _Segment:
    __slots__ = ("size", "count")

    def __init__(self, size, count):
        self.size = size
        self.count = count


class Journal:
    def __init__(self, directory, maxsize, threadpool, reactor):
        self.directory = directory
        self._maxsize = maxsize
        # Several segments fit in the bound, so dropping one loses a slice, not everything.
        self._segment_size = max(64 << 10, min(4 << 20, maxsize // 8))
        self._pool = threadpool
        self._reactor = reactor
        self.on_drop = None       # called with the number of events the size bound dropped
        self._segments = {}       # seq -> _Segment, in increasing seq order
        self._next_seq = 1
        self._head = (1, 0, 0)    # (seq, offset, events consumed in seq): first undelivered
        self._read = (1, 0)       # next event to hand to the reader (at or after the head)
        self.pending = 0          # events after the head
        self._buffer = []
        self._waiters = []
        self._flushing = None
        self._data = None         # Deferred the reader waits on while nothing is unread
        self._cursor_writing = None
        self._cursor_dirty = False
        self._tail_fd = None      # touched only by the one flush in flight, in the pool
        self._lock_fd = None

    # -- start-up: runs before the reactor serves requests -------------------------------
    def open(self, lock_timeout=0.0):
        """Lock the directory and recover the queue from disk (synchronously: at start-up,
        before any request). A lock held by another process is waited for up to
        *lock_timeout* seconds, then JournalBusy (with the holder's pid)."""
        os.makedirs(self.directory, exist_ok=True)
        self._lock(lock_timeout)
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def _lock(self, timeout):
        fd = os.open(os.path.join(self.directory, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise JournalBusy(errno.EBUSY, f"in use by process {holder}") from None
                if not waiting:
                    waiting = True
                    log.info("journal {directory}: waiting up to {timeout:.0f}s for process {holder} to release it",
                             directory=self.directory, timeout=timeout, holder=holder)
                time.sleep(LOCK_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % os.getpid(), 0)   # for the messages above, in whoever waits
        self._lock_fd = fd

    def _recover(self):
        cursor = self._read_cursor()
        seqs = sorted(int(n[:-len(SUFFIX)]) for n in os.listdir(self.directory)
                      if n.endswith(SUFFIX) and n[:-len(SUFFIX)].isdigit())
        for seq in seqs:
            path = os.path.join(self.directory, _segment_name(seq))
            if cursor is not None and seq < cursor[0]:
                os.unlink(path)      # delivered before the restart
                continue
            with open(path, "rb+") as f:
                data = f.read()
                end = data.rfind(b"\n") + 1
                if end < len(data):
                    # A write the crash cut short: never fsynced, so never acknowledged.
                    log.warn("journal {path}: dropping {n} bytes of an incomplete last event", path=path,
                             n=len(data) - end)
                    f.truncate(end)
            self._segments[seq] = _Segment(end, data.count(b"\n", 0, end))
        self._next_seq = max(seqs + [cursor[0] if cursor else 0]) + 1
        first = next(iter(self._segments), self._next_seq)
        if cursor is not None and cursor[0] in self._segments and cursor[1] <= self._segments[cursor[0]].size:
            self._head = cursor
        else:
            self._head = (first, 0, 0)
        self._read = self._head[:2]
        self.pending = sum(s.count for s in self._segments.values()) - self._head[2]
        if self.pending:
            log.info("journal {directory}: {n} undelivered events recovered", directory=self.directory,
                     n=self.pending)

    def _read_cursor(self):
        try:
            with open(os.path.join(self.directory, CURSOR), "rb") as f:
                seq, offset, consumed = (int(x) for x in f.read().split())
            return seq, offset, consumed
        except FileNotFoundError:
            return None
        except ValueError:
            log.warn("journal {directory}: unreadable cursor, delivering from the oldest event again",
                     directory=self.directory)
            return None

    # -- appending --------------------------------------------------------------------------
    def append(self, line):
        """Queue one event (bytes without newline); the Deferred fires once it is on disk."""
        d = defer.Deferred()
        self._buffer.append(line + b"\n")
        self._waiters.append(d)
        if self._flushing is None:
            self._flushing = defer.ensureDeferred(self._flush())
        return d

    async def _flush(self):
        try:
            while self._buffer:
                data, waiters = b"".join(self._buffer), self._waiters
                self._buffer, self._waiters = [], []
                tail = next(reversed(self._segments), None)
                new = tail is None or self._segments[tail].size >= self._segment_size
                seq = self._next_seq if new else tail
                try:
                    size = 0 if new else self._segments[seq].size
                    await threads.deferToThreadPool(self._reactor, self._pool, self._write, seq, data, new, size)
                except Exception as e:
                    log.failure("journal {directory}: write failed", directory=self.directory)
                    for d in waiters:
                        d.errback(e)
                    continue
                if new:
                    self._segments[seq] = _Segment(0, 0)
                    self._next_seq = seq + 1
                segment = self._segments[seq]
                segment.size += len(data)
                segment.count += len(waiters)
                self.pending += len(waiters)
                self._enforce_bound()
                self._wake_reader()
                for d in waiters:
                    d.callback(None)
        finally:
            self._flushing = None

    def _write(self, seq, data, new, size):
        # In the pool; only one flush runs at a time, so the tail descriptor is ours.
        if new or self._tail_fd is None:
            if self._tail_fd is not None:
                os.close(self._tail_fd)
            self._tail_fd = os.open(os.path.join(self.directory, _segment_name(seq)),
                                    os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if new:
                self._fsync_directory()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._tail_fd, view):]
            os.fsync(self._tail_fd)
        except OSError:
            # E.g. a full disk: cut what got written, so the file stays what we account for.
            os.ftruncate(self._tail_fd, size)
            raise

    def _fsync_directory(self):
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _enforce_bound(self):
        while len(self._segments) > 1 and sum(s.size for s in self._segments.values()) > self._maxsize:
            seq = next(iter(self._segments))
            segment = self._segments.pop(seq)
            head_seq, _, consumed = self._head
            lost = segment.count - (consumed if head_seq == seq else 0)
            following = next(iter(self._segments))
            if head_seq <= seq:
                self._head = (following, 0, 0)
            if self._read[0] <= seq:
                self._read = (following, 0)
            self.pending -= lost
            log.warn("journal {directory} over {maxsize} bytes: dropped {lost} undelivered events",
                     directory=self.directory, maxsize=self._maxsize, lost=lost)
            if self.on_drop is not None:
                self.on_drop(lost)
            self._in_pool(os.unlink, os.path.join(self.directory, _segment_name(seq)))

    def _in_pool(self, f, *args):
        d = threads.deferToThreadPool(self._reactor, self._pool, f, *args)
        d.addErrback(lambda failure: log.failure("journal {directory}: {f} failed", failure,
                                                 directory=self.directory, f=f.__name__))
        return d

    # -- reading and acknowledging -----------------------------------------------------------
    def _unread_position(self):
        """The read position moved past exhausted segments; None if nothing is unread."""
        seq, offset = self._read
        for s in self._segments:
            if s < seq:
                continue
            if s > seq:
                seq, offset = s, 0
            if offset < self._segments[s].size:
                self._read = (seq, offset)
                return self._read
        return None

    def _wake_reader(self):
        d, self._data = self._data, None
        if d is not None:
            d.callback(None)

    async def read(self, limit):
        """Up to *limit* ``(position, line)`` pairs after the last read; waits for one."""
        while True:
            position = self._unread_position()
            if position is not None:
                break
            self._data = defer.Deferred()
            await self._data
        seq, offset = position
        end = self._segments[seq].size
        lines = await threads.deferToThreadPool(self._reactor, self._pool, self._read_lines, seq, offset,
                                                end, limit)
        if self._read != position:
            return []                 # the segment was dropped meanwhile
        out = []
        for line in lines:
            offset += len(line) + 1
            out.append(((seq, offset), line))
        self._read = (seq, offset)
        return out

    def _read_lines(self, seq, offset, end, limit):
        with open(os.path.join(self.directory, _segment_name(seq)), "rb") as f:
            f.seek(offset)
            data = f.read(min(end - offset, READ_CHUNK))
            if b"\n" not in data:     # one event larger than the chunk
                data += f.read(end - offset - len(data))
        return data[:data.rfind(b"\n")].split(b"\n")[:limit]

    def ack(self, position):
        """The event ending at *position* was delivered (events are acked in order)."""
        seq, offset = position
        head_seq, _, consumed = self._head
        if seq < head_seq:
            return                    # its segment was dropped while it was in flight
        self._head = (seq, offset, consumed + 1 if seq == head_seq else 1)
        self.pending -= 1
        for old in [s for s in self._segments if s < seq]:
            del self._segments[old]
            self._in_pool(os.unlink, os.path.join(self.directory, _segment_name(old)))
        self._save_cursor()

    def _save_cursor(self):
        # One write in flight; acks meanwhile are folded into the next one.
        if self._cursor_writing is not None:
            self._cursor_dirty = True
            return
        self._cursor_writing = self._in_pool(self._write_cursor, self._head)
        self._cursor_writing.addBoth(self._cursor_written)

    def _cursor_written(self, _):
        self._cursor_writing = None
        if self._cursor_dirty:
            self._cursor_dirty = False
            self._save_cursor()

    def _write_cursor(self, head):
        path = os.path.join(self.directory, CURSOR)
        with open(path + ".tmp", "wb") as f:
            f.write(b"%d %d %d\n" % head)
        os.replace(path + ".tmp", path)

    @property
    def size(self):
        return sum(s.size for s in self._segments.values())

    async def close(self):
        """Finish pending writes and the cursor (the reader must be stopped first)."""
        while self._flushing is not None or self._cursor_writing is not None:
            await (self._flushing or self._cursor_writing)
        if self._data is not None:
            self._data, d = None, self._data
            d.cancel()
        if self._tail_fd is not None:
            fd, self._tail_fd = self._tail_fd, None
            await threads.deferToThreadPool(self._reactor, self._pool, os.close, fd)
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)
