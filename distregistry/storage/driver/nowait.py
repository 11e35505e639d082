"""Opens and reads that never wait for the disk, so the reactor thread may make them.

Linux 5.12+ can refuse instead of blocking: openat2() with RESOLVE_CACHED resolves a path
from the dentry cache only, and preadv2() with RWF_NOWAIT reads only what the page cache
holds; both fail with EAGAIN where they would wait for I/O. A hot small read (a tag's
link file, a manifest revision link) then costs ~7 us on the reactor thread instead of
~140 us of CPU for a round trip through the driver's thread pool (GIL hand-offs, the
reactor's waker), which was a third of a manifest GET. Whatever is not cached, and every
error, is left to the pool, which gives the authoritative answer.
"""

import ctypes
import errno
import os
import stat as statmod
import sys

from twisted.logger import Logger

log = Logger()

_SYS_OPENAT2 = 437          # the same number on every Linux architecture (added in 5.6)
_AT_FDCWD = -100
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_CACHED = 0x20      # Linux 5.12


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class NoWait:
    """``open``/``read`` that return None where the kernel would have to wait; disabled
    (always None) where openat2 or RWF_NOWAIT are missing."""

    def __init__(self):
        self._syscall = None
        if sys.platform.startswith("linux") and hasattr(os, "RWF_NOWAIT"):
            try:
                self._syscall = ctypes.CDLL(None, use_errno=True).syscall
            except (OSError, AttributeError):
                pass
        self.enabled = self._syscall is not None and self._probe()
        self._probe_byte = bytearray(1)

    def _probe(self):
        fd = self._openat2(b"/", os.O_RDONLY | os.O_DIRECTORY)
        if fd is None and ctypes.get_errno() in (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG):
            log.info("openat2(RESOLVE_CACHED) unavailable: every filesystem call goes through the thread pool")
            return False
        if fd is not None:
            try:
                # Callers check where an fd really is by its /proc magic link (no waiting);
                # without /proc that check would need realpath(), which may wait.
                os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                log.info("no /proc/self/fd: every filesystem call goes through the thread pool")
                return False
            finally:
                os.close(fd)
        return True

    def _openat2(self, path, flags):
        how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_CACHED | _RESOLVE_NO_MAGICLINKS)
        fd = self._syscall(_SYS_OPENAT2, _AT_FDCWD, path, ctypes.byref(how), ctypes.sizeof(how))
        return None if fd < 0 else fd

    def open(self, full, flags):
        """An fd for *full* if every path component is in the dentry cache, else None."""
        if not self.enabled:
            return None
        return self._openat2(os.fsencode(full), flags)

    def cached(self, fd, offset):
        """Whether the byte at *offset* of *fd* is in the page cache (False when unsure)."""
        if not self.enabled:
            return False
        try:
            return os.preadv(fd, [self._probe_byte], offset, os.RWF_NOWAIT) >= 0
        except OSError:
            return False

    def read(self, fd, limit):
        """The whole regular file behind *fd* if it is at most *limit* bytes and all in the
        page cache, else None."""
        try:
            st = os.fstat(fd)
            if not statmod.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            buf = bytearray(st.st_size)
            if st.st_size and os.preadv(fd, [buf], 0, os.RWF_NOWAIT) != st.st_size:
                return None     # partly cached, or changed size under us
            return bytes(buf)
        except OSError as e:    # EAGAIN: not cached
            if e.errno == errno.EOPNOTSUPP:
                log.info("this filesystem does not support RWF_NOWAIT: reads go through the thread pool")
                self.enabled = False
            return None
