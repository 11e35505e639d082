"""What the API may ask of the registry storage layer. The API never sees a driver or a path.

All methods return Deferreds (or are ``async def``). Errors are ``RegistryError`` with
the spec's code (``distregistry.errcode``); anything else is a bug and becomes 500.
"""

import attr
from zope.interface import Attribute, Interface

# What IBlobStore.open() returns, named here so the API need not import the driver layer.
from distregistry.storage.driver.base import IFileReader, ILocalFileReader  # noqa: F401


@attr.s(frozen=True, slots=True)
class UploadStatus:
    name = attr.ib()
    uuid = attr.ib()
    size = attr.ib()
    started_at = attr.ib()   # RFC3339 UTC string, as written to ``startedat``


class IRegistry(Interface):
    def repository(name):
        """IRepository for a validated name (NAME_INVALID otherwise). Synchronous; touches no storage."""

    def catalog(n, last=None):
        """Deferred[list[str]]: up to *n* repository names after *last*, in registry:2's order
        (filesystem depth-first, '/' sorting before other characters). A repository is a
        directory with ``_manifests``."""


class IRepository(Interface):
    name = Attribute("repository name")
    blobs = Attribute("IBlobStore")
    uploads = Attribute("IUploadStore")
    manifests = Attribute("IManifestStore")
    tags = Attribute("ITagStore")
    referrers = Attribute("IReferrersIndex")


class IBlobStore(Interface):
    """Blobs linked into one repository (``_layers``)."""

    def stat(digest):
        """Deferred[Descriptor] (media type application/octet-stream); BLOB_UNKNOWN if not linked."""

    def open(digest, offset=0):
        """Deferred[IFileReader] on the blob's data from *offset*; BLOB_UNKNOWN if not linked.
        On local storage it is also an ILocalFileReader, which the API may send with sendfile."""

    def redirect_url(method, digest):
        """Deferred[str or None]: where the driver lets clients fetch it directly."""

    def delete(digest):
        """Unlink from this repository; BLOB_UNKNOWN if not linked; UNSUPPORTED if deletes are off."""

    def mount(digest, source):
        """Deferred[Descriptor or None]: link a blob linked in repository *source*; None if it is not."""


class IUploadWriter(Interface):
    size = Attribute("bytes in the upload so far")

    def write(data):
        """Deferred firing once stored (hashing as it goes); callers use it for backpressure."""

    def close():
        """Deferred: flush; the upload stays open for more PATCHes or the PUT."""

    def abort():
        """Deferred: the request broke off; close the driver writer (what reached storage stays, as
        in registry:2: status() tells the size) and forget the hash state, so commit re-hashes."""


class IUploadStore(Interface):
    def start():
        """Deferred[UploadStatus] of a new session (``_uploads/<uuid>/{data,startedat}``)."""

    def status(uuid):
        """Deferred[UploadStatus]; BLOB_UPLOAD_UNKNOWN if absent."""

    def append(uuid, offset=None):
        """Deferred[IUploadWriter] appending to the session. If *offset* is given and differs from
        the stored size: RANGE_INVALID. BLOB_UPLOAD_UNKNOWN if absent."""

    def commit(uuid, digest, size=None):
        """Deferred[Descriptor]: verify *digest* (DIGEST_INVALID if it does not match: the session
        survives for a retry; SIZE_INVALID if *size* is given and differs), move the data into
        ``blobs/``, link it into the repository, delete the session."""

    def cancel(uuid):
        """Deferred: delete the session; BLOB_UPLOAD_UNKNOWN if absent."""


class IManifestStore(Interface):
    def get(digest):
        """Deferred[Manifest] (``distregistry.manifest``): bytes as stored; MANIFEST_UNKNOWN."""

    def exists(digest):
        """Deferred[bool]."""

    def put(payload, content_type, reference=None):
        """Deferred[Manifest]: parse and validate (MANIFEST_INVALID), check references (one
        MANIFEST_BLOB_UNKNOWN per missing blob, MANIFEST_UNKNOWN-as-MANIFEST_BLOB_UNKNOWN for
        missing index children), if *reference* is a digest it must match (DIGEST_INVALID),
        store the exact bytes, link the revision, index the subject. Does not tag."""

    def delete(digest):
        """Deferred[list[str]]: unlink the revision, untag every tag pointing at it (the tags
        removed are the result, for notifications), drop it from the referrers index;
        MANIFEST_UNKNOWN if absent; UNSUPPORTED if deletes are off."""


class ITagStore(Interface):
    def resolve(tag):
        """Deferred[str digest]; MANIFEST_UNKNOWN with detail {"Tag": tag} if absent."""

    def tag(tag, digest):
        """Deferred: write ``index/<alg>/<hex>/link`` then ``current/link``."""

    def untag(tag):
        """Deferred: remove ``_manifests/tags/<tag>``; MANIFEST_UNKNOWN if absent; UNSUPPORTED if
        deletes are off."""

    def list():
        """Deferred[list[str]] sorted byte-wise; NAME_UNKNOWN {"name": repo} if the repository has
        no ``_manifests/tags``."""

    def lookup(digest):
        """Deferred[list[str]]: tags whose current link is *digest*."""


class IReferrersIndex(Interface):
    def list(subject, artifact_type=None):
        """Deferred[list[Descriptor]] of manifests whose subject is *subject* (artifact_type set,
        annotations copied), filtered by *artifact_type* if given. [] when none."""
