"""The referrers index (OCI 1.1), distregistry's own: registry:2 has none.

``_referrers/<subject alg>/<subject hex>/<alg>/<hex>/descriptor.json`` holds the descriptor
of each manifest whose ``subject`` is that digest, written on manifest put and removed on
delete, so listing is one directory read per subject, never a repository scan. registry:2
skips ``_``-prefixed directories it does not know, so the index is invisible to it; a
referrer that registry:2 (its GC, say) deleted is recognised by its missing revision link.
"""

import json
import posixpath

from twisted.logger import Logger
from zope.interface import implementer

from distregistry.descriptor import Descriptor
from distregistry.errcode import RegistryError
from distregistry.registry import deferred, gather, paths
from distregistry.registry.blobs import checked_digest, read_link
from distregistry.registry.interfaces import IReferrersIndex
from distregistry.storage.driver.base import PathNotFoundError

log = Logger()

READ_CONCURRENCY = 16


@implementer(IReferrersIndex)
class ReferrersIndex:
    def __init__(self, repository):
        self._driver = repository.driver
        self._name = repository.name

    def _entry(self, manifest):
        return paths.referrer_entry(self._name, manifest.subject.digest, manifest.digest)

    @deferred
    async def add(self, manifest):
        """Index *manifest* under its subject (the caller checked it has one)."""
        # Manifest.descriptor() carries the referrers API's artifactType (else config.mediaType).
        body = json.dumps(manifest.descriptor().to_json(), sort_keys=True).encode()
        await self._driver.put_content(self._entry(manifest), body)

    @deferred
    async def remove(self, manifest):
        try:
            await self._driver.delete(posixpath.dirname(self._entry(manifest)))
        except PathNotFoundError:
            pass

    @deferred
    async def list(self, subject, artifact_type=None):
        subject = checked_digest(subject)
        if subject is None:
            return []
        root = paths.referrers_dir(self._name, subject)
        try:
            algorithms = await self._driver.list(root)
        except PathNotFoundError:
            return []
        digests = []
        for algorithm_dir in algorithms:
            algorithm = algorithm_dir.rpartition("/")[2]
            try:
                entries = await self._driver.list(algorithm_dir)
            except PathNotFoundError:
                continue
            digests.extend(f"{algorithm}:{entry.rpartition('/')[2]}" for entry in entries)
        found = await gather([lambda d=d: self._read(subject, d) for d in digests], limit=READ_CONCURRENCY)
        return sorted((descriptor for descriptor in found
                       if descriptor is not None and (artifact_type is None
                                                      or descriptor.artifact_type == artifact_type)),
                      key=lambda descriptor: descriptor.digest)

    async def _read(self, subject, digest):
        try:
            if checked_digest(digest) is None:
                return None
        except RegistryError:
            return None   # not a digest: nothing we wrote
        if await read_link(self._driver, paths.revision_link(self._name, digest)) != digest:
            return None
        try:
            body = await self._driver.get_content(paths.referrer_entry(self._name, subject, digest))
            return Descriptor.from_json(json.loads(body))
        except PathNotFoundError:
            return None
        except ValueError:
            log.warn("ignoring unreadable referrers entry {digest} of {subject} in {repository}",
                     digest=digest, subject=subject, repository=self._name)
            return None
