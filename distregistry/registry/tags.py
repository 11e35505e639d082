"""Tags: ``_manifests/tags/<tag>/current/link`` plus the history in ``index/<alg>/<hex>/link``."""

from twisted.logger import Logger
from zope.interface import implementer

from distregistry import reference
from distregistry.errcode import ErrorCode, RegistryError
from distregistry.registry import deferred, gather, paths
from distregistry.registry.blobs import read_link, write_link
from distregistry.registry.interfaces import ITagStore
from distregistry.storage.driver.base import PathNotFoundError

log = Logger()

LOOKUP_CONCURRENCY = 64   # registry:2's STORAGE_TAGSTORE_LOOKUP_CONCURRENCY default


@implementer(ITagStore)
class TagStore:
    def __init__(self, repository):
        self._repository = repository
        self._driver = repository.driver
        self._name = repository.name

    def _unknown(self, tag):
        return RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"Tag": tag})

    @deferred
    async def resolve(self, tag):
        if not reference.is_tag(tag):
            raise self._unknown(tag)
        digest = await read_link(self._driver, paths.tag_current_link(self._name, tag))
        if digest is None:
            raise self._unknown(tag)
        return digest

    @deferred
    async def tag(self, tag, digest):
        reference.validate_tag(tag)
        digest = reference.parse_digest(digest)
        # History first, then the pointer: a crash in between leaves the old tag intact.
        await write_link(self._driver, paths.tag_index_link(self._name, tag, digest), digest)
        await write_link(self._driver, paths.tag_current_link(self._name, tag), digest)
        log.info("tag {tag} -> {digest} in {repository}", tag=tag, digest=digest, repository=self._name)

    @deferred
    async def untag(self, tag):
        if not self._repository.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED)
        if not reference.is_tag(tag):
            raise self._unknown(tag)
        try:
            await self._driver.delete(paths.tag_dir(self._name, tag))
        except PathNotFoundError:
            raise self._unknown(tag) from None
        log.info("tag {tag} removed from {repository}", tag=tag, repository=self._name)

    @deferred
    async def list(self):
        try:
            entries = await self._driver.list(paths.tags_dir(self._name))
        except PathNotFoundError:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": self._name}) from None
        # Entries are <tags dir>/<tag>. Driver paths are ASCII, so code point order is
        # registry:2's byte order.
        start = len(paths.tags_dir(self._name)) + 1
        return sorted([entry[start:] for entry in entries])

    @deferred
    async def lookup(self, digest):
        try:
            tags = await self.list()
        except RegistryError as error:
            if error.code is not ErrorCode.NAME_UNKNOWN:
                raise
            return []
        current = await gather(
            [lambda tag=tag: read_link(self._driver, paths.tag_current_link(self._name, tag)) for tag in tags],
            limit=LOOKUP_CONCURRENCY)
        return [tag for tag, target in zip(tags, current) if target == digest]
