"""Manifests: the exact bytes stored as a blob, linked in ``_manifests/revisions`` only.

Not in ``_layers``, so ``GET /blobs/<manifest digest>`` stays BLOB_UNKNOWN as in registry:2.
"""

import collections
import re

from twisted.logger import Logger
from zope.interface import implementer

from distregistry import manifest as manifest_format
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.reference import is_digest, parse_digest
from distregistry.registry import deferred, gather, paths
from distregistry.registry.blobs import blob_size, checked_digest, read_link, write_link
from distregistry.registry.interfaces import IManifestStore
from distregistry.storage.driver.base import PathNotFoundError

log = Logger()

CHECK_CONCURRENCY = 16
_ANY = re.compile("")


@implementer(IManifestStore)
class ManifestStore:
    def __init__(self, repository):
        self._repository = repository
        self._driver = repository.driver
        self._name = repository.name

    def _unknown(self, digest):
        # registry:2's ErrManifestUnknownRevision, marshalled as the error detail.
        return RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"Name": self._name, "Revision": digest})

    async def _revision(self, digest):
        """Canonical digest if this repository's revision link names it, else None."""
        canonical = checked_digest(digest)
        if canonical is None or await read_link(self._driver, paths.revision_link(self._name, canonical)) != canonical:
            return None
        return canonical

    async def _linked(self, digest):
        """Canonical digest if its revision link and blob data are both there, else None."""
        canonical = await self._revision(digest)
        if canonical is None or await blob_size(self._driver, canonical) is None:
            return None
        return canonical

    @deferred
    async def get(self, digest):
        canonical = checked_digest(digest)
        cache = self._repository.registry.manifest_cache
        cached = cache.get(canonical) if canonical is not None else None
        if cached is not None:
            # The bytes under a digest never change, but whether this repository has the
            # manifest does: the revision link is read on every GET, as registry:2 does.
            if await self._revision(digest) is None:
                raise self._unknown(digest)
            return cached
        # The link and the bytes are read together: one storage round trip instead of two.
        linked, payload = await gather([lambda: self._revision(digest), lambda: self._payload(canonical)])
        if linked is None or payload is None:
            raise self._unknown(digest)
        m = manifest_format.load(payload)
        cache.put(canonical, m)
        return m

    async def _payload(self, canonical):
        if canonical is None:
            return None
        try:
            return await self._driver.get_content(paths.blob_data(canonical))
        except PathNotFoundError:
            return None

    @deferred
    async def exists(self, digest):
        return await self._linked(digest) is not None

    @deferred
    async def put(self, payload, content_type, reference=None):
        m = manifest_format.parse(payload, content_type)
        if reference is not None and is_digest(reference):
            if parse_digest(reference) != m.digest:
                raise RegistryError(ErrorCode.DIGEST_INVALID)
        # Before the references are checked: online GC must not delete what this manifest is
        # about to point at, nor its own bytes if they are stored already (a re-push).
        await self._repository.registry.gc_guard.record([m.digest] + [d.digest for d in m.references()])
        # Whether the bytes are stored already is looked up while the references are checked.
        _, stored = await gather([lambda: self._verify(m, self._repository.validation),
                                  lambda: blob_size(self._driver, m.digest)])
        if stored is None:
            await self._driver.put_content(paths.blob_data(m.digest), m.payload)
        await write_link(self._driver, paths.revision_link(self._name, m.digest), m.digest)
        self._repository.registry.manifest_cache.put(m.digest, m)
        if m.subject is not None:
            await self._repository.referrers.add(m)
        log.info("manifest {digest} ({media_type}) stored in {repository}",
                 digest=m.digest, media_type=m.media_type, repository=self._name)
        return m

    async def _verify(self, m, validation):
        """Collect every problem, as registry:2 does: one MANIFEST_BLOB_UNKNOWN per missing
        reference, in manifest order (descriptor sizes are not compared, as in registry:2).

        ``validation.disabled`` does what it does in registry:2 (handlers/app.go): no URL
        allow/deny lists (any http(s) URL without fragment passes) and no index completeness
        check; config and layers must still be linked here.
        """
        errors = []
        allow, deny = ([_ANY], []) if validation.disabled else (validation.urls_allow, validation.urls_deny)
        try:
            manifest_format.check_urls(m, allow, deny)
        except RegistryError as error:
            errors.append(error)

        if m.is_index:
            required = [child for child in m.manifests if _child_required(child, validation)]
            present = await gather([lambda d=d: self.exists(d.digest) for d in required], limit=CHECK_CONCURRENCY)
        else:
            required = m.blob_references()
            present = await gather([lambda d=d: self._blob_linked(d.digest) for d in required],
                                   limit=CHECK_CONCURRENCY)
        errors.extend(RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail=d.digest)
                      for d, ok in zip(required, present) if not ok)
        if errors:
            raise RegistryError.combine(errors)

    async def _blob_linked(self, digest):
        try:
            await self._repository.blobs.stat(digest)
        except RegistryError:
            return False
        return True

    @deferred
    async def delete(self, digest):
        if not self._repository.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED)
        canonical = await self._linked(digest)
        if canonical is None:
            raise self._unknown(digest)
        try:
            m = manifest_format.load(await self._driver.get_content(paths.blob_data(canonical)))
        except (RegistryError, PathNotFoundError) as error:
            # Unreadable bytes must not make a manifest undeletable; it then has no subject
            # we could know, and a stale referrers entry is skipped for its missing link.
            log.warn("deleting unreadable manifest {digest} from {repository}: {error}",
                     digest=canonical, repository=self._name, error=error)
            m = None

        try:
            await self._driver.delete(paths.revision_link(self._name, canonical))
        except PathNotFoundError:
            raise self._unknown(digest) from None
        removed = []
        for tag in await self._repository.tags.lookup(canonical):
            try:
                await self._repository.tags.untag(tag)
            except RegistryError as error:
                if error.code is not ErrorCode.MANIFEST_UNKNOWN:   # untagged meanwhile: fine
                    raise
            else:
                removed.append(tag)
        if m is not None and m.subject is not None:
            await self._repository.referrers.remove(m)
        log.info("manifest {digest} deleted from {repository}", digest=canonical, repository=self._name)
        return removed


class ManifestCache:
    """Parsed manifests by digest, least recently used out first, at most *max_bytes* of
    payload. Safe across replicas and workers because content under a digest is immutable
    and callers still check the repository's revision link in storage; a tag -> digest
    cache would not be (another replica may move the tag)."""

    def __init__(self, max_bytes=16 << 20):
        self._max = max_bytes
        self._size = 0
        self._entries = collections.OrderedDict()

    def get(self, digest):
        m = self._entries.get(digest)
        if m is not None:
            self._entries.move_to_end(digest)
        return m

    def put(self, digest, m):
        if digest in self._entries or len(m.payload) > self._max:
            return
        self._entries[digest] = m
        self._size += len(m.payload)
        while self._size > self._max:
            _, old = self._entries.popitem(last=False)
            self._size -= len(old.payload)


def _child_required(child, validation):
    """registry:2's validation.manifests.indexes: which index children must exist here
    ("list" with an empty platformlist means all of them, as in registry:2)."""
    if validation.disabled or validation.index_platforms == "none":
        return False
    if validation.index_platforms == "all" or not validation.platformlist:
        return True
    platform = child.platform or {}
    return (platform.get("architecture"), platform.get("os")) in set(map(tuple, validation.platformlist))
