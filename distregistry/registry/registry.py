"""The registry: repositories on one storage driver, and the catalog of them."""

import functools

import attr
from zope.interface import implementer

from distregistry.errcode import ErrorCode, RegistryError
from distregistry.gc.guard import GCGuard
from distregistry.reference import validate_name
from distregistry.registry import deferred, paths
from distregistry.registry.blobs import BlobStore
from distregistry.registry.interfaces import IRegistry, IRepository
from distregistry.registry.manifests import ManifestCache, ManifestStore
from distregistry.registry.referrers import ReferrersIndex
from distregistry.registry.tags import TagStore
from distregistry.registry.uploads import HashStateCache, SessionLocks, UploadStore
from distregistry.storage.driver.base import InvalidPathError, PathNotFoundError, SkipDir, check_path


@attr.s(frozen=True, slots=True)
class Validation:
    """registry:2's ``validation`` section; the defaults are registry:2's: references
    checked, every layer URL rejected (no allow, no deny), every index child required."""

    disabled = attr.ib(default=False)
    urls_allow = attr.ib(factory=list)       # compiled regexes
    urls_deny = attr.ib(factory=list)
    index_platforms = attr.ib(default="all")  # "all" | "none" | "list"
    platformlist = attr.ib(factory=list)      # [(architecture, os)]


def less_path(a, b):
    """registry:2's lessPath: byte order with '/' sorting before every other character,
    which is the order of a depth-first walk with sorted children."""
    return a.replace("/", "\x00") < b.replace("/", "\x00")


class _PageFull(Exception):
    """Stops the catalog walk once the page is full."""


@implementer(IRepository)
class Repository:
    """Made per request; its stores are made when first used (a manifest GET needs two of five)."""

    def __init__(self, registry, name):
        self.registry = registry
        self.name = name
        self.driver = registry.driver
        self.delete_enabled = registry.delete_enabled
        self.validation = registry.validation

    @functools.cached_property
    def blobs(self):
        return BlobStore(self)

    @functools.cached_property
    def uploads(self):
        r = self.registry
        return UploadStore(self, r.hash_states, r.upload_locks, r.clock)

    @functools.cached_property
    def manifests(self):
        return ManifestStore(self)

    @functools.cached_property
    def tags(self):
        return TagStore(self)

    @functools.cached_property
    def referrers(self):
        return ReferrersIndex(self)


@implementer(IRegistry)
class Registry:
    def __init__(self, driver, *, delete_enabled=False, validation=None, clock=None, blob_cache=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.driver = driver
        self.delete_enabled = delete_enabled
        self.validation = validation if validation is not None else Validation()
        self.clock = clock
        # storage.cache.blobdescriptor (distregistry.storage.cache), None without one
        self.blob_cache = blob_cache
        # Process-wide, not per Repository: the API makes a Repository per request.
        self.hash_states = HashStateCache()
        self.upload_locks = SessionLocks()
        self.manifest_cache = ManifestCache()
        # What pushes rely on, so online GC leaves it alone; GC's cache invalidation hook.
        self.gc_guard = GCGuard(clock)
        if blob_cache is not None:
            # A cached descriptor answers stat without looking at storage: it must go with
            # what GC deletes, per repository (a blob's data goes for every repository).
            self.gc_guard.add_invalidator(
                lambda kind, repository, digest: None if repository is None else blob_cache.clear(repository, digest))

    def repository(self, name):
        validate_name(name)
        try:
            # Defence in depth: a name the grammar allows must still be a clean driver path.
            check_path(paths.repository(name))
        except InvalidPathError:
            raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name}) from None
        return Repository(self, name)

    @deferred
    async def catalog(self, n, last=None):
        found = []
        if n <= 0:
            return found
        root = paths.REPOSITORIES

        def visit(info):
            relative = info.path[len(root) + 1:]
            parent, _, base = relative.rpartition("/")
            if base.startswith("_"):
                # A repository is a directory holding _manifests; other _ dirs hold no repositories.
                if base == "_manifests" and parent and (not last or less_path(last, parent)):
                    found.append(parent)
                    if len(found) >= n:
                        raise _PageFull()
                if info.is_dir:
                    return SkipDir   # returned, not raised: two per repository

        try:
            # Each page starts at *last* instead of walking every repository before it
            # (registry:2 3.x hints the same); the visitor still checks, as a walk may
            # ignore the hint.
            await self.driver.walk(root, visit, start_after=f"{root}/{last}" if last else None)
        except (_PageFull, PathNotFoundError):
            pass
        return found
