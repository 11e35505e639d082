"""Blobs linked into one repository (registry:2's linkedBlobStore).

A blob is visible in a repository only through its ``_layers/<alg>/<hex>/link`` file; the
data itself is global and content addressed under ``blobs/``. Link files hold the bare
digest string (no newline), exactly as registry:2 writes and parses them.
"""

from twisted.logger import Logger
from zope.interface import implementer

from distregistry import reference
from distregistry.descriptor import Descriptor
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.registry import deferred, gather, paths
from distregistry.registry.interfaces import IBlobStore
from distregistry.storage.driver.base import InvalidOffsetError, PathNotFoundError

log = Logger()

BLOB_MEDIA_TYPE = "application/octet-stream"


def checked_digest(digest):
    """Canonical *digest* for a lookup, or None if its algorithm is one we never store
    (go-digest knows sha384, we do not: nothing can match it). Malformed: DIGEST_INVALID."""
    try:
        return reference.parse_digest(digest)
    except RegistryError as error:
        if error.code is ErrorCode.UNSUPPORTED:
            return None
        raise


async def read_link(driver, path):
    """The digest a link file names, or None if it is absent or not a digest."""
    try:
        content = await driver.get_content(path)
    except PathNotFoundError:
        return None
    try:
        return reference.parse_digest(content.decode("ascii"))
    except (UnicodeDecodeError, RegistryError):
        # registry:2 fails digest.Parse on such a file too; to a reader it links nothing.
        log.warn("ignoring link file {path} with invalid content {content!r}", path=path, content=content[:100])
        return None


def write_link(driver, path, digest):
    return driver.put_content(path, digest.encode("ascii"))


async def blob_size(driver, digest):
    """Size of ``blobs/.../data``, or None if it is absent."""
    try:
        info = await driver.stat(paths.blob_data(digest))
    except PathNotFoundError:
        return None
    return None if info.is_dir else info.size


@implementer(IBlobStore)
class BlobStore:
    def __init__(self, repository):
        self._repository = repository
        self._driver = repository.driver
        self._name = repository.name

    def _unknown(self, digest):
        return RegistryError(ErrorCode.BLOB_UNKNOWN, detail=digest)

    @deferred
    async def stat(self, digest):
        canonical = checked_digest(digest)
        if canonical is None:
            raise self._unknown(digest)
        # A client told "exists" (HEAD before a push, a mount, a manifest's check) may build on
        # it: online GC keeps what was asked for within its grace period, and a delete already
        # under way finishes before we look (the cache too), so we answer "unknown" instead.
        await self._repository.registry.gc_guard.record([canonical])
        cache = self._repository.registry.blob_cache
        if cache is not None:
            cached = await cache.get(self._name, canonical)
            if cached is not None:
                return cached
        # Both read in one round trip: a manifest's references and pulled blobs are there (a
        # HEAD before pushing a new blob pays for one stat more).
        linked, size = await gather([lambda: read_link(self._driver, paths.layer_link(self._name, canonical)),
                                     lambda: blob_size(self._driver, canonical)])
        if linked != canonical or size is None:
            # size None: a link left behind by GC or a partial copy; registry:2 answers unknown too.
            raise self._unknown(digest)
        descriptor = Descriptor(media_type=BLOB_MEDIA_TYPE, digest=canonical, size=size)
        if cache is not None:
            await cache.set(self._name, descriptor)
        return descriptor

    @deferred
    async def open(self, digest, offset=0):
        descriptor = await self.stat(digest)
        try:
            return await self._driver.reader(paths.blob_data(descriptor.digest), offset)
        except InvalidOffsetError:
            raise RegistryError(ErrorCode.RANGE_INVALID, detail=descriptor.digest) from None
        except PathNotFoundError:
            raise self._unknown(descriptor.digest) from None

    @deferred
    async def redirect_url(self, method, digest):
        descriptor = await self.stat(digest)
        return await self._driver.redirect_url(method, paths.blob_data(descriptor.digest))

    @deferred
    async def delete(self, digest):
        if not self._repository.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED)
        descriptor = await self.stat(digest)
        # Only the link goes: the data may be linked elsewhere and is GC's to remove.
        try:
            await self._driver.delete(paths.layer_link(self._name, descriptor.digest))
        except PathNotFoundError:
            raise self._unknown(descriptor.digest) from None
        finally:
            # Also when the link was already gone: the entry said it was there.
            cache = self._repository.registry.blob_cache
            if cache is not None:
                await cache.clear(self._name, descriptor.digest)
        log.info("blob {digest} unlinked from {repository}", digest=descriptor.digest, repository=self._name)

    @deferred
    async def mount(self, digest, source):
        # Any reason the source cannot provide the blob means "no mount": the API falls back
        # to a normal upload session, as registry:2 does.
        try:
            source_blobs = self._repository.registry.repository(source).blobs
            descriptor = await source_blobs.stat(digest)
        except RegistryError:
            return None
        await self.link(descriptor.digest)
        log.info("blob {digest} mounted from {source} into {repository}",
                 digest=descriptor.digest, source=source, repository=self._name)
        return descriptor

    def link(self, digest):
        """Deferred: write the ``_layers`` link (used by upload commit and mount)."""
        return write_link(self._driver, paths.layer_link(self._name, digest), digest)
