"""``auth.htpasswd``: Basic credentials checked against an htpasswd file of bcrypt entries.

Everything touching the file or bcrypt runs in the reactor's thread pool: a bcrypt compare
costs tens of milliseconds, and the mtime check is a stat() on every request."""

import os
import secrets
import threading

import bcrypt
from twisted.internet import defer, threads
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import ControllerError, IAccessController
from .records import basic_credentials, go_quote, unauthorized

log = Logger()

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
DEFAULT_COST = 10  # what `htpasswd -B` writes without -C


class HtpasswdError(ControllerError):
    """The file cannot be used (unreadable, a line without ':'): registry:2 answers 400."""


def parse(text, path):
    """user -> bcrypt hash (bytes); other hash formats are dropped with a warning."""
    users = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon:
            raise HtpasswdError(f"{path}: line {number}: expected user:hash")
        if not hashed.startswith(BCRYPT_PREFIXES):
            log.warn("htpasswd {path} line {line}: user {user!r} has a non-bcrypt hash; only bcrypt "
                     "(htpasswd -B) is accepted, this user cannot log in", path=path, line=number, user=user)
            continue
        users[user] = hashed.encode()
    return users


def _cost(hashed):
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return DEFAULT_COST


class HtpasswdFile:
    """The parsed file, re-read whenever its mtime or size changes. Thread-safe; call only
    from the thread pool."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._users = {}
        self._dummy = None

    def create_if_missing(self):
        """registry:2 3.x: a missing file is created at start-up with user "docker" and a
        random password (logged). Runs before the reactor, so blocking I/O is fine."""
        if os.path.lexists(self.path):
            return
        password = secrets.token_urlsafe(32)
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(DEFAULT_COST))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"docker:" + hashed + b"\n")
        log.warn("htpasswd file {path} was missing: created it with user \"docker\", password {password}",
                 path=self.path, password=password)

    def _refresh(self):
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise HtpasswdError(f"{self.path}: {e.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise HtpasswdError(f"{self.path}: {e}") from None
        users = parse(text, self.path)
        # Unknown users are compared against a hash of the file's usual cost, so a miss
        # costs what a wrong password costs (no user enumeration by timing).
        costs = sorted(_cost(h) for h in users.values()) or [DEFAULT_COST]
        cost = costs[len(costs) // 2]
        if self._dummy is None or _cost(self._dummy) != cost:
            self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        self._users, self._stamp = users, stamp
        log.info("htpasswd: loaded {count} users from {path}", count=len(users), path=self.path)

    def has_user(self, user):
        with self._lock:
            self._refresh()
            return user in self._users

    def check(self, user, password):
        with self._lock:
            self._refresh()
            hashed, dummy = self._users.get(user), self._dummy
        ok = bcrypt.checkpw(password.encode("utf-8"), hashed or dummy)
        return ok and hashed is not None


@implementer(IAccessController)
class HtpasswdAccessController:
    def __init__(self, config, reactor):
        self._file = HtpasswdFile(config.path)
        self._file.create_if_missing()
        self._challenge = f"Basic realm={go_quote(config.realm)}"
        self._reactor = reactor

    def authorized(self, request, records):
        credentials = basic_credentials(request)
        if credentials is None:
            # Decided without the thread pool, so an upload is refused before its body.
            return defer.fail(unauthorized(records, self._challenge))
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._check,
                                         credentials, records)

    def _check(self, credentials, records):
        user, password = credentials
        if not self._file.check(user, password):
            log.info("htpasswd: authentication failed for user {user!r}", user=user)
            raise unauthorized(records, self._challenge)
        return user
