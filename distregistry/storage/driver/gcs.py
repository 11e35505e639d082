"""The ``gcs`` storage driver: Google Cloud Storage over its JSON API.

A writer streams into a resumable upload in pieces of ``chunksize`` (a multiple of 256 KiB,
as the API requires), holding one piece at a time. Close and commit both finish the upload,
so what was written is a readable object at once and survives the process. Appending (the
next PATCH of an upload, on any replica) uploads the new bytes as a part object beside the
file and composes the two server-side, then removes the part; appending to an empty file
just replaces it.

Credentials: ``keyfile`` or ``credentials`` (a service account) sign short self-signed JWTs
locally with google-auth (no token request, nothing blocking); ``STORAGE_EMULATOR_HOST`` (as
Google's client libraries) points the driver at an emulator without credentials.
"""

import hashlib
import json
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, urlencode, urlsplit

from distregistry.storage.driver.base import StorageDriverError
from distregistry.storage.driver.httpclient import HTTPPool, HTTPStatusError, header
from distregistry.storage.driver.objectstore import ChunkedWriter, ObjectInfo, ObjectStoreDriver, as_deferred

GCS_ENDPOINT = "https://storage.googleapis.com"
JWT_AUDIENCE = "https://storage.googleapis.com/"
DEFAULT_CHUNK_SIZE = 16 << 20  # registry:2's default
CHUNK_UNIT = 256 << 10
LIST_PAGE = 1000
DEFAULT_MAX_CONCURRENCY = 50  # registry:2's default
# Renew a self-signed token this long before it expires (they last an hour).
TOKEN_MARGIN = 300
REDIRECT_EXPIRY = 20 * 60  # registry:2's
SIGNING_ALGORITHM = "GOOG4-RSA-SHA256"


def _parse_time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class _JWTToken:
    """Self-signed service-account JWTs (google-auth signs locally; no network)."""

    def __init__(self, info):
        from google.auth import jwt

        self._credentials = jwt.Credentials.from_service_account_info(info, audience=JWT_AUDIENCE)
        self._expires = 0.0

    def signed_url(self, base, bucket, key, method, expires):
        """A V4 signed URL ("Signed URL creation, V4 signing process"): the canonical request
        and string to sign are the documented ones; the RSA signature is google-auth's signer."""
        now = time.gmtime()
        stamp, day = time.strftime("%Y%m%dT%H%M%SZ", now), time.strftime("%Y%m%d", now)
        scope = f"{day}/auto/storage/goog4_request"
        host = urlsplit(base).netloc
        resource = f"/{quote(bucket, safe='')}/{quote(key, safe='/')}"
        params = {
            "X-Goog-Algorithm": SIGNING_ALGORITHM,
            "X-Goog-Credential": f"{self._credentials.signer_email}/{scope}",
            "X-Goog-Date": stamp,
            "X-Goog-Expires": str(expires),
            "X-Goog-SignedHeaders": "host",
        }
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()))
        canonical = "\n".join([method, resource, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join([SIGNING_ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = self._credentials.signer.sign(to_sign.encode()).hex()
        return f"{base}{resource}?{query}&X-Goog-Signature={signature}"

    def header(self):
        if time.time() > self._expires - TOKEN_MARGIN:
            self._credentials.refresh(None)  # signs a new JWT with the key; no request is made
            expiry = self._credentials.expiry
            # google-auth's expiry is UTC, naive in some versions.
            self._expires = expiry.replace(tzinfo=expiry.tzinfo or timezone.utc).timestamp()
        token = self._credentials.token
        return "Bearer " + (token.decode("ascii") if isinstance(token, bytes) else token)


class GCSDriver(ObjectStoreDriver):
    name = "gcs"

    def __init__(self, bucket, token=None, rootdirectory="", chunksize=DEFAULT_CHUNK_SIZE, endpoint=None,
                 maxconcurrency=DEFAULT_MAX_CONCURRENCY, reactor=None):
        super().__init__(rootdirectory, reactor)
        self._bucket = bucket
        self._token = token
        self._chunksize = chunksize
        base = self._base = (endpoint or GCS_ENDPOINT).rstrip("/")
        self._objects = f"{base}/storage/v1/b/{quote(bucket, safe='')}/o"
        self._uploads = f"{base}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        # Emulators (gcp-storage-emulator) answer HTTP/1.0 and close every connection, which
        # Twisted's pool does not notice before reusing one; so no pooling for them.
        self._http = HTTPPool(self._reactor, persistent=endpoint is None, max_concurrency=maxconcurrency)

    # -- requests ----------------------------------------------------------------------

    def _object_url(self, key, suffix=""):
        return f"{self._objects}/{quote(key, safe='')}{suffix}"

    async def _call(self, method, url, query=None, headers=None, data=None, stream=False):
        headers = dict(headers or {})
        if self._token is not None:
            headers["Authorization"] = self._token.header()
        if query:
            url += "?" + urlencode(query)
        if stream:
            return await self._http.open(method, url, headers=headers), None
        return await self._http.request(method, url, headers=headers, data=data)

    # -- backend primitives --------------------------------------------------------------

    async def _head(self, key):
        response, body = await self._call("GET", self._object_url(key), {"fields": "name,size,updated"})
        if response.code == 404:
            return None
        if response.code != 200:
            raise self._fail(response, body, self._path(key))
        meta = json.loads(body)
        return ObjectInfo(key=key, size=int(meta["size"]), modtime=_parse_time(meta["updated"]))

    async def _list_page(self, prefix, delimiter, marker, limit=None):
        query = {"prefix": prefix, "maxResults": str(limit or LIST_PAGE)}
        if delimiter:
            query["delimiter"] = delimiter
        if marker:
            query["pageToken"] = marker
        response, body = await self._call("GET", self._objects, query)
        if response.code != 200:
            raise HTTPStatusError(self._path(prefix.rstrip("/")) if prefix else "/", self.name, response.code, body)
        listing = json.loads(body)
        objects = [ObjectInfo(key=o["name"], size=int(o["size"]), modtime=_parse_time(o["updated"]))
                   for o in listing.get("items") or []]
        return objects, listing.get("prefixes") or [], listing.get("nextPageToken") if limit is None else None

    async def _get(self, key, path):
        response, body = await self._call("GET", self._object_url(key), {"alt": "media"})
        if response.code != 200:
            raise self._fail(response, body, path)
        return body

    async def _put(self, key, data, path):
        if not data:
            # gcp-storage-emulator fails an empty media upload; an empty resumable one works everywhere.
            await self._put_chunk(await self._start_upload(key, path), b"", 0, 0, path)
            return
        response, body = await self._call("POST", self._uploads, {"uploadType": "media", "name": key},
                                          headers={"Content-Type": "application/octet-stream"}, data=data)
        if response.code != 200:
            raise self._fail(response, body, path)

    async def _delete_key(self, key, path, missing_ok=False):
        response, body = await self._call("DELETE", self._object_url(key))
        if response.code == 404 and missing_ok:
            return
        if response.code not in (200, 204):
            raise self._fail(response, body, path)

    async def _copy(self, src, dst, path):
        # rewriteTo copies any size server-side, in as many calls as the service asks for.
        url = self._object_url(src, f"/rewriteTo/b/{quote(self._bucket, safe='')}/o/{quote(dst, safe='')}")
        query = {}
        while True:
            response, body = await self._call("POST", url, query, headers={"Content-Type": "application/json"},
                                              data=b"{}")
            if response.code != 200:
                raise self._fail(response, body, path)
            result = json.loads(body)
            if result.get("done", True):
                return
            query = {"rewriteToken": result["rewriteToken"]}

    async def _compose(self, dst, sources, path):
        payload = {"sourceObjects": [{"name": s} for s in sources],
                   "destination": {"contentType": "application/octet-stream"}}
        response, body = await self._call("POST", self._object_url(dst, "/compose"),
                                          headers={"Content-Type": "application/json"},
                                          data=json.dumps(payload).encode())
        if response.code != 200:
            raise self._fail(response, body, path)

    async def _get_from(self, key, offset):
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response, _ = await self._call("GET", self._object_url(key), {"alt": "media"}, headers=headers, stream=True)
        return response

    async def _writer(self, key, path, existing):
        if existing is None or existing.size == 0:
            return _ResumableWriter(self, key, path, 0, key)
        part = f"{key}.{uuid.uuid4()}.tmp"
        return _ResumableWriter(self, key, path, existing.size, part)

    async def _start_upload(self, key, path):
        response, body = await self._call("POST", self._uploads, {"uploadType": "resumable", "name": key},
                                          headers={"Content-Type": "application/json",
                                                   "X-Upload-Content-Type": "application/octet-stream"},
                                          data=b"{}")
        location = header(response, "Location")
        if response.code != 200 or not location:
            raise self._fail(response, body, path)
        return location

    async def _put_chunk(self, session, chunk, start, total, path):
        """Send *chunk* at offset *start*; *total* (the final size) on the last one. Returns once
        the service holds every byte of it (re-sending what it says it did not keep)."""
        while True:
            end = start + len(chunk) - 1
            span = f"{start}-{end}" if chunk else "*"
            response, body = await self._call("PUT", session, headers={
                "Content-Range": f"bytes {span}/{'*' if total is None else total}"}, data=chunk)
            if total is not None and response.code in (200, 201):
                return
            if response.code != 308:
                raise self._fail(response, body, path)
            kept = header(response, "Range")
            persisted = int(kept.rpartition("-")[2]) + 1 if kept else 0
            if persisted >= start + len(chunk):
                if total is None:
                    return
                raise StorageDriverError(path, self.name, f"StorageDriverError: gcs: {path}: upload not finalized")
            if persisted < start:
                # Bytes of earlier pieces are gone from the session, and from here too.
                raise StorageDriverError(path, self.name,
                                         f"StorageDriverError: gcs: {path}: upload lost bytes {persisted}-{start - 1}")
            chunk, start = chunk[persisted - start:], persisted

    async def _cancel_upload(self, session):
        # 499 is the documented answer; the object is deleted next whatever the session says.
        await self._call("DELETE", session)

    @as_deferred
    async def redirect_url(self, method, path):
        key = self._key(path)
        if method not in ("GET", "HEAD") or self._token is None:
            return None  # signing needs the service account's key (as in registry:2)
        return self._token.signed_url(self._base, self._bucket, key, method, REDIRECT_EXPIRY)


class _ResumableWriter(ChunkedWriter):
    def __init__(self, driver, key, path, size, target):
        super().__init__(driver, key, path, size, driver._chunksize)
        self._target = target  # the object this writer's bytes go to (a part if appending)
        self._session = None
        self._sent = 0

    async def _send(self, chunk):
        if self._session is None:
            self._session = await self._driver._start_upload(self._target, self._path)
        await self._driver._put_chunk(self._session, chunk, self._sent, None, self._path)
        self._sent += len(chunk)

    async def _complete(self, rest):
        if self._session is None:
            await self._driver._put(self._target, rest, self._path)
        else:
            await self._driver._put_chunk(self._session, rest, self._sent, self._sent + len(rest), self._path)
        if self._target != self._key:
            try:
                await self._driver._compose(self._key, [self._key, self._target], self._path)
            finally:
                await self._driver._delete_key(self._target, self._path, missing_ok=True)

    async def _discard(self):
        if self._session is not None:
            await self._driver._cancel_upload(self._session)
        await self._driver._delete_key(self._key, self._path, missing_ok=True)
        if self._target != self._key:
            await self._driver._delete_key(self._target, self._path, missing_ok=True)


def from_parameters(parameters, reactor, environ):
    # The config read ``keyfile`` or ``credentials`` into one service-account dict.
    info = parameters.get("credentials")
    token = _JWTToken(info) if info else None
    endpoint = environ.get("STORAGE_EMULATOR_HOST")
    if endpoint and "://" not in endpoint:
        endpoint = "http://" + endpoint
    return GCSDriver(parameters["bucket"], token=token, rootdirectory=parameters.get("rootdirectory", ""),
                     chunksize=parameters.get("chunksize", DEFAULT_CHUNK_SIZE), endpoint=endpoint,
                     maxconcurrency=parameters.get("maxconcurrency", DEFAULT_MAX_CONCURRENCY), reactor=reactor)

