"""Upload sessions: ``_uploads/<uuid>/{data,startedat}``, hashed while written.

Python cannot serialise a hashlib state, so instead of registry:2's ``hashstates/`` files a
process-local cache keeps ``(size, sha256 object)`` per session after each writer closes.
Commit trusts it only when its size equals the stored data's size; otherwise (the PATCH
landed on another replica, the process restarted, a request broke off) the stored data is
re-hashed by streaming it back. Go-written ``hashstates/`` directories are ignored.
"""

import hashlib
import re
import time
import uuid as uuidlib
from collections import OrderedDict

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from distregistry import reference
from distregistry.descriptor import Descriptor
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.registry import deferred, gather, paths
from distregistry.registry.blobs import BLOB_MEDIA_TYPE, blob_size
from distregistry.registry.interfaces import IUploadStore, IUploadWriter, UploadStatus
from distregistry.storage.driver.base import PathNotFoundError

log = Logger()

# registry:2 creates lowercase UUIDv4s; anything else in a URL can only be unknown (and
# must never become a path component such as "..").
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REHASH_CHUNK = 1 << 20
SUPPORTED_ALGORITHMS = ("sha256",)
EMPTY_SHA256 = "sha256:" + hashlib.sha256(b"").hexdigest()


def format_startedat(seconds):
    """``time.Now().UTC().Format(time.RFC3339)``: whole seconds, ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class HashStateCache:
    """LRU of ``(name, uuid) -> (size, hashlib object)``; bounded so abandoned sessions age out."""

    def __init__(self, capacity=10000):
        self._capacity = capacity
        self._entries = OrderedDict()

    def get(self, key):
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key, size, hasher):
        self._entries[key] = (size, hasher)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def drop(self, key):
        self._entries.pop(key, None)

    def __len__(self):
        return len(self._entries)


class SessionLocks:
    """One DeferredLock per ``(name, uuid)`` while in use: two commits (or a commit and a
    cancel) of one session in this process run one after the other, so the second finds
    the session gone instead of its data half moved away."""

    def __init__(self):
        self._locks = {}

    async def run(self, key, fn):
        lock = self._locks.setdefault(key, defer.DeferredLock())
        try:
            return await lock.run(lambda: defer.ensureDeferred(fn()))
        finally:
            if not lock.locked and not lock.waiting:
                self._locks.pop(key, None)

    def __len__(self):
        return len(self._locks)


@implementer(IUploadWriter)
class UploadWriter:
    """Appends to one session's data through a driver writer, hashing what it passes on.

    *hasher* is None when the state of the bytes already stored is not known here; then
    nothing is cached and commit re-hashes.
    """

    def __init__(self, key, cache, file_writer, hasher):
        self._key = key
        self._cache = cache
        self._writer = file_writer
        self._hasher = hasher
        self._base = file_writer.size
        self._hashed = 0
        self._failed = False

    @property
    def size(self):
        return self._writer.size

    def write(self, data):
        if self._hasher is not None:
            self._hasher.update(data)
        self._hashed += len(data)
        d = self._writer.write(data)
        d.addErrback(self._write_failed)
        return d

    def _write_failed(self, failure):
        self._failed = True
        return failure

    @deferred
    async def close(self):
        try:
            await self._writer.close()
        except Exception:
            self._cache.drop(self._key)
            raise
        size = self._writer.size
        if self._hasher is not None and not self._failed and size == self._base + self._hashed:
            self._cache.put(self._key, size, self._hasher)
        else:
            self._cache.drop(self._key)

    @deferred
    async def abort(self):
        # How much of the last write reached storage is unknown: keep what the driver stored
        # (the client learns the offset from the upload status) and let commit re-hash it.
        self._cache.drop(self._key)
        try:
            await self._writer.close()
        except Exception:
            # The request already failed; what the driver kept is what status() reports.
            log.failure("closing the writer of an aborted upload {key}", level=LogLevel.error, key=self._key)


@implementer(IUploadStore)
class UploadStore:
    def __init__(self, repository, cache, locks, clock):
        self._repository = repository
        self._driver = repository.driver
        self._name = repository.name
        self._cache = cache
        self._locks = locks
        self._clock = clock

    def _key(self, uuid):
        return (self._name, uuid)

    def _unknown(self, uuid):
        return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail=uuid)

    def _check_uuid(self, uuid):
        if not isinstance(uuid, str) or not UUID_RE.match(uuid):
            raise self._unknown(uuid)

    async def _started_at(self, uuid):
        self._check_uuid(uuid)
        try:
            content = await self._driver.get_content(paths.upload_startedat(self._name, uuid))
        except PathNotFoundError:
            # Also the case of registry:2's orphan left by cancel (hashstates without startedat).
            raise self._unknown(uuid) from None
        return content.decode("utf-8", "replace")

    async def _data_size(self, uuid):
        try:
            info = await self._driver.stat(paths.upload_data(self._name, uuid))
        except PathNotFoundError:
            # registry:2's writer creates the file on first open; until then it is empty.
            return 0
        return info.size

    @deferred
    async def start(self):
        uuid = str(uuidlib.uuid4())
        started_at = format_startedat(self._clock.seconds())
        # No empty data file: as registry:2's, it appears with the first append (two fewer
        # fsyncs and one storage call fewer per upload; an absent one reads as empty).
        await self._driver.put_content(paths.upload_startedat(self._name, uuid), started_at.encode("ascii"))
        self._cache.put(self._key(uuid), 0, hashlib.sha256())
        log.info("upload {uuid} started in {repository}", uuid=uuid, repository=self._name)
        return UploadStatus(name=self._name, uuid=uuid, size=0, started_at=started_at)

    @deferred
    async def status(self, uuid):
        started_at = await self._started_at(uuid)
        size = await self._data_size(uuid)
        return UploadStatus(name=self._name, uuid=uuid, size=size, started_at=started_at)

    @deferred
    async def append(self, uuid, offset=None):
        self._check_uuid(uuid)
        data = paths.upload_data(self._name, uuid)
        # The session check and the open for append are independent: one round trip for
        # both. Opening for append creates nothing, so an unknown session is left as it was.
        started = defer.ensureDeferred(self._started_at(uuid))
        appending = self._driver.writer(data, append=True)
        try:
            await started
        except BaseException:
            appending.addCallbacks(self._close_unused, lambda failure: None)
            raise
        try:
            file_writer = await appending
        except PathNotFoundError:
            if offset:
                raise RegistryError(ErrorCode.RANGE_INVALID) from None
            file_writer = await self._driver.writer(data)
        if offset is not None and offset != file_writer.size:
            await self._close_unused(file_writer)
            raise RegistryError(ErrorCode.RANGE_INVALID)
        entry = self._cache.get(self._key(uuid))
        hasher = entry[1].copy() if entry is not None and entry[0] == file_writer.size else None
        return UploadWriter(self._key(uuid), self._cache, file_writer, hasher)

    @staticmethod
    def _close_unused(file_writer):
        d = file_writer.close()
        d.addErrback(lambda failure: log.failure("closing an unused upload writer", failure, LogLevel.error))
        return d

    async def _rehash(self, uuid, algorithm):
        hasher = hashlib.new(algorithm)
        size = 0
        try:
            reader = await self._driver.reader(paths.upload_data(self._name, uuid))
        except PathNotFoundError:
            return hasher, 0
        try:
            while True:
                chunk = await reader.read(REHASH_CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                size += len(chunk)
        finally:
            reader.close()
        return hasher, size

    @deferred
    async def commit(self, uuid, digest, size=None):
        if digest is None:
            raise RegistryError(ErrorCode.DIGEST_INVALID, detail="digest missing")   # registry:2's text
        digest = reference.parse_digest(digest)
        algorithm = digest.partition(":")[0]
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise RegistryError(ErrorCode.UNSUPPORTED, detail=f"unsupported digest algorithm: {algorithm}")
        return await self._locks.run(self._key(uuid), lambda: self._commit(uuid, digest, algorithm, size))

    async def _commit(self, uuid, digest, algorithm, size):
        _, stored = await gather([lambda: self._started_at(uuid), lambda: self._data_size(uuid)])
        if size is not None and size != stored:
            raise RegistryError(ErrorCode.SIZE_INVALID, detail={"size": size, "stored": stored})

        entry = self._cache.get(self._key(uuid))
        if entry is not None and entry[0] == stored:
            computed = "sha256:" + entry[1].hexdigest()
        else:
            hasher, hashed = await self._rehash(uuid, algorithm)
            if hashed != stored:
                # Appended to while we read: the client has not finished, whatever it asked.
                raise RegistryError(ErrorCode.SIZE_INVALID, detail={"size": hashed, "stored": stored})
            computed = f"{algorithm}:{hasher.hexdigest()}"
            self._cache.put(self._key(uuid), stored, hasher)
        if computed != digest:
            # The session is left as it is, so a retry with the right digest commits
            # (registry:2's cancel fails here too, with the same effect).
            log.info("upload {uuid} in {repository}: digest {provided} does not match content {computed}",
                     uuid=uuid, repository=self._name, provided=digest, computed=computed)
            raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"Digest": digest, "Reason": {}})

        # Before the existence check in _move_into_place: an online GC deleting this digest
        # finishes first, so the check cannot see data that is about to go.
        await self._repository.registry.gc_guard.record([digest])
        await self._move_into_place(uuid, digest)
        # The link only after the data is durable in place (the move fsyncs); the session,
        # its data gone, may go at the same time.
        await gather([lambda: self._repository.blobs.link(digest), lambda: self._delete_session(uuid)])
        self._cache.drop(self._key(uuid))
        log.info("upload {uuid} committed as {digest} ({size} bytes) in {repository}",
                 uuid=uuid, digest=digest, size=stored, repository=self._name)
        return Descriptor(media_type=BLOB_MEDIA_TYPE, digest=digest, size=stored)

    async def _delete_session(self, uuid):
        try:
            await self._driver.delete(paths.upload_dir(self._name, uuid))
        except PathNotFoundError:
            pass

    async def _move_into_place(self, uuid, digest):
        blob = paths.blob_data(digest)
        # No existence check first: content addressed, so replacing a copy already there
        # changes nothing, and a new blob (the usual case) costs one storage call less.
        try:
            await self._driver.move(paths.upload_data(self._name, uuid), blob)
        except PathNotFoundError:
            # Our data is gone: a commit of this same session on another replica moved it, or
            # the session never got a data file (only possible for the empty blob).
            if await blob_size(self._driver, digest) is not None:
                return
            if digest == EMPTY_SHA256:
                await self._driver.put_content(blob, b"")
                return
            raise self._unknown(uuid) from None

    @deferred
    async def cancel(self, uuid):
        await self._locks.run(self._key(uuid), lambda: self._cancel(uuid))

    async def _cancel(self, uuid):
        await self._started_at(uuid)
        self._cache.drop(self._key(uuid))
        try:
            await self._driver.delete(paths.upload_dir(self._name, uuid))
        except PathNotFoundError:
            raise self._unknown(uuid) from None
        log.info("upload {uuid} cancelled in {repository}", uuid=uuid, repository=self._name)

