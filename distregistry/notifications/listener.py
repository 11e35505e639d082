"""registry:2's listener wrappers (notifications/listener.go): a repository whose stores
emit events when an operation succeeds. The API wraps every repository it hands to a
handler (``RegistryAPI._dispatch``), so no handler builds an event itself.

Events of writes (push, mount, delete) are awaited: the operation's Deferred fires only
once the event is in every endpoint's journal on disk, so a response the client saw means
an event that survives a crash. Pull events are not awaited: a pull is not worth a disk
flush of latency, and they reach the journal with the next batch all the same.
"""

import functools

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


def all_of(ds):
    """One Deferred for several; fails with the first failure itself (not FirstError)."""
    return defer.gatherResults(list(ds), consumeErrors=True).addErrback(lambda f: f.value.subFailure)


def _log_failure(failure, action):
    log.failure("could not record a {action} event", failure, action=action)


class _Wrapper:
    def __init__(self, inner, bridge, name):
        self._inner = inner
        self._bridge = bridge
        self._name = name

    def __getattr__(self, attribute):
        return getattr(self._inner, attribute)

    def _pulled(self, d):
        d.addErrback(_log_failure, "pull")


class ManifestListener(_Wrapper):
    async def get(self, digest, tag=None):
        """*tag*: the tag the client asked for, carried in the pull event (registry:2's WithTag)."""
        m = await self._inner.get(digest)
        self._pulled(self._bridge.manifest_pulled(self._name, m, tag))
        return m

    async def put(self, payload, content_type, reference=None, tags=()):
        """*tags*: the tags this push sets; one push event for each (none: one untagged event)."""
        m = await self._inner.put(payload, content_type, reference)
        # Written in order, awaited together: they share one journal flush.
        await all_of(self._bridge.manifest_pushed(self._name, m, tag) for tag in tags or [None])
        return m

    async def delete(self, digest):
        # registry:2 untags through its listened tag service: one delete event per tag too.
        removed_tags = await self._inner.delete(digest)
        await all_of([self._bridge.manifest_deleted(self._name, digest)] +
                   [self._bridge.tag_deleted(self._name, tag) for tag in removed_tags])
        return removed_tags


class BlobListener(_Wrapper):
    async def stat(self, digest):
        # The API stats a blob only to serve it (GET/HEAD, whatever the answer: 200, 206,
        # 304, 307, 416), which is when registry:2's ServeBlob wrapper emits its pull.
        descriptor = await self._inner.stat(digest)
        self._pulled(self._bridge.blob_pulled(self._name, descriptor))
        return descriptor

    async def delete(self, digest):
        await self._inner.delete(digest)
        await self._bridge.blob_deleted(self._name, digest)

    async def mount(self, digest, source):
        descriptor = await self._inner.mount(digest, source)
        if descriptor is not None:
            await self._bridge.blob_mounted(self._name, descriptor, source)
        return descriptor


class UploadListener(_Wrapper):
    async def commit(self, uuid, digest, size=None):
        descriptor = await self._inner.commit(uuid, digest, size)
        await self._bridge.blob_pushed(self._name, descriptor)
        return descriptor


class TagListener(_Wrapper):
    async def untag(self, tag):
        await self._inner.untag(tag)
        await self._bridge.tag_deleted(self._name, tag)


class ListenedRepository:
    """An IRepository whose manifests, blobs, uploads and tags report to *bridge*; the
    wrappers are made when first used (a request uses one or two of them)."""

    def __init__(self, repository, bridge):
        self.name = repository.name
        self._repository = repository
        self._bridge = bridge

    @functools.cached_property
    def manifests(self):
        return ManifestListener(self._repository.manifests, self._bridge, self.name)

    @functools.cached_property
    def blobs(self):
        return BlobListener(self._repository.blobs, self._bridge, self.name)

    @functools.cached_property
    def uploads(self):
        return UploadListener(self._repository.uploads, self._bridge, self.name)

    @functools.cached_property
    def tags(self):
        return TagListener(self._repository.tags, self._bridge, self.name)

    @property
    def referrers(self):
        return self._repository.referrers
