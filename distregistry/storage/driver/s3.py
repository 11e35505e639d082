"""The ``s3`` storage driver: Amazon S3 and S3-compatible stores, over treq, never blocking.

Object keys are registry:2's (``s3-aws/s3.go`` ``s3Path``): ``rootdirectory`` without its
slashes, then the driver path, so ``/docker/registry/v2/...`` is the key
``<root>/docker/registry/v2/...`` and a bucket written by registry:2 is served in place.
Directories do not exist in S3: a path is a directory while some key lies below it.

Requests are signed with botocore's SigV4 signer (the signer only: no boto client, no
blocking I/O) and sent on one persistent connection pool.

Writers stream into S3 multipart uploads, one part of ``chunksize`` at a time (at most two
parts in memory: one being sent, one filling). Unlike registry:2, which leaves a multipart
upload open between PATCH requests and finds it again by listing, ``close()`` completes the
upload, so the bytes written so far are an ordinary object: ``stat`` sees the upload's real
size on every replica, and the next append starts a new multipart upload whose first part
is a server-side copy of that object (or, below S3's 5 MiB minimum part, its bytes re-sent).
Moves are server-side copies (multipart above ``multipartcopythresholdsize``) and a delete.
"""

import base64
import email.utils
import hashlib
import math
import os
import types
from datetime import datetime
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from zope.interface import implementer

from distregistry.storage.driver import walk_tree
from distregistry.storage.driver.base import (
    FileInfo,
    IFileWriter,
    IStorageDriver,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriverError,
    check_path,
)
from distregistry.storage.driver.httpio import EmptyReader, ResponseReader, TransientHTTPError, http_client, with_retries

log = Logger()

MiB = 1 << 20
MIN_PART = 5 * MiB  # S3: every part but the last is at least this big
MAX_COPY_PART = 5 * 1024 * MiB  # S3: the largest single copy (object or part)
NAME_MAX = 255  # the filesystem driver's limit, so a tree moves between drivers
KEY_MAX = 1024  # S3's key limit, in bytes
LIST_PAGE = 1000
REDIRECT_EXPIRY = 20 * 60  # registry:2's presigned URL lifetime
REQUEST_TIMEOUT = 300  # seconds until the response head; generous for 5 GiB part copies


def _local(tag):
    return tag.rpartition("}")[2]


def _children(element, name):
    return [c for c in element if _local(c.tag) == name]


def _text(element, name, default=None):
    for c in element:
        if _local(c.tag) == name:
            return c.text or ""
    return default


class S3Error(StorageDriverError):
    """An S3 error response: HTTP status and S3's error code."""

    def __init__(self, path, driver, status, code, message=""):
        self.status = status
        self.code = code
        super().__init__(path, driver, f"S3Error: {driver}: {path}: {status} {code} {message}".rstrip())


@implementer(IStorageDriver)
class S3Driver:
    name = "s3aws"

    def __init__(self, parameters, reactor=None, environ=None):
        if reactor is None:
            from twisted.internet import reactor
        if environ is None:
            environ = os.environ
        p = parameters
        self._reactor = reactor
        self._bucket = p["bucket"]
        self._region = p["region"] or "us-east-1"
        self._root = p["rootdirectory"].strip("/")
        self._chunksize = p["chunksize"]
        self._copy_chunk = p["multipartcopychunksize"]
        self._copy_concurrency = p["multipartcopymaxconcurrency"]
        self._copy_threshold = p["multipartcopythresholdsize"]
        self._log_requests = p["loglevel"] != "off"
        self._object_headers = {"x-amz-storage-class": p["storageclass"]} if p["storageclass"] != "NONE" else {}
        if p["objectacl"]:
            self._object_headers["x-amz-acl"] = p["objectacl"]
        if p["encrypt"]:
            if p["keyid"]:
                self._object_headers["x-amz-server-side-encryption"] = "aws:kms"
                self._object_headers["x-amz-server-side-encryption-aws-kms-key-id"] = p["keyid"]
            else:
                self._object_headers["x-amz-server-side-encryption"] = "AES256"
        scheme = "https" if p["secure"] else "http"
        endpoint = p["regionendpoint"]
        if endpoint:
            if "://" not in endpoint:
                endpoint = f"{scheme}://{endpoint}"
        else:
            endpoint = f"{scheme}://s3.{self._region}.amazonaws.com"
        parts = urlsplit(endpoint)
        if p["forcepathstyle"]:
            self._base = f"{parts.scheme}://{parts.netloc}/{self._bucket}"
        else:
            self._base = f"{parts.scheme}://{self._bucket}.{parts.netloc}"
        self._secure = parts.scheme == "https"
        self._credentials = self._static_credentials(p, environ)
        if self._credentials is None:
            # IAM role / instance profile / config files: botocore's chain does blocking
            # I/O, so it is asked in a thread, and again whenever its credentials refresh.
            from botocore.session import get_session

            self._chain = get_session()
        self._http, self._pool = http_client(reactor, skipverify=p["skipverify"], per_host=32)

    @staticmethod
    def _static_credentials(p, environ):
        if p["accesskey"] and p["secretkey"]:
            return Credentials(p["accesskey"], p["secretkey"], p["sessiontoken"] or None)
        key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            return Credentials(key, secret, environ.get("AWS_SESSION_TOKEN") or None)
        return None

    async def _frozen_credentials(self):
        if self._credentials is not None:
            return self._credentials
        creds = await threads.deferToThread(self._chain.get_credentials)
        if creds is None:
            raise StorageDriverError("/", self.name, f"{self.name}: no AWS credentials found")
        return await threads.deferToThread(creds.get_frozen_credentials)

    def close(self):
        return self._pool.closeCachedConnections()

    # -- keys -----------------------------------------------------------------------------

    def _key(self, path, root_ok=False):
        check_path(path, self.name)
        if path == "/":
            if not root_ok:
                raise InvalidPathError(path, self.name)
            return self._root + "/" if self._root else ""
        key = f"{self._root}{path}" if self._root else path[1:]
        if len(key) > KEY_MAX or any(len(n) > NAME_MAX for n in path[1:].split("/")):
            raise InvalidPathError(path, self.name)
        return key

    def _path(self, key):
        return "/" + key[len(self._root) + 1:] if self._root else "/" + key

    def _dir_prefix(self, path):
        key = self._key(path, root_ok=True)
        return key if path == "/" else key + "/"

    def _url(self, key, query=None):
        url = f"{self._base}/{quote(key, safe='/~')}"
        if query:
            url += "?" + "&".join(
                quote(k, safe="~") if v is None else f"{quote(k, safe='~')}={quote(str(v), safe='~')}"
                for k, v in sorted(query.items())
            )
        return url

    # -- requests -------------------------------------------------------------------------

    async def _request(self, method, path, key, query=None, headers=None, body=None, ok=(200,), stream=False):
        """Signed request; returns (response, body bytes) or, with *stream*, the unread response.
        A status outside *ok* raises S3Error (404: PathNotFoundError)."""
        url = self._url(key, query)

        async def attempt():
            aws = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body or b"")
            if self._secure:
                # Over TLS the payload needs no hash of its own (botocore's choice for S3 too).
                aws.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": False})
            S3SigV4Auth(await self._frozen_credentials(), "s3", self._region).add_auth(aws)
            h = Headers({k.encode(): [v.encode() if isinstance(v, str) else v] for k, v in aws.headers.items()})
            if self._log_requests:
                log.debug("s3 {method} {url}", method=method, url=url)
            response = await self._http.request(method, url, headers=h, data=body, timeout=REQUEST_TIMEOUT)
            if response.code >= 500 or response.code == 429:
                raise TransientHTTPError(response.code, await response.content())
            return response

        try:
            response = await with_retries(self._reactor, attempt)
        except TransientHTTPError as e:
            raise self._error(path, e.status, e.body) from None
        if response.code not in ok:
            raise self._error(path, response.code, await response.content())
        if stream:
            return response
        content = await response.content()
        if response.code == 200 and content.startswith(b"<?xml") and b"<Error>" in content[:200]:
            # CompleteMultipartUpload and copies can fail after a 200.
            raise self._error(path, 200, content)
        return response, content

    def _error(self, path, status, content):
        code, message = "", ""
        if content:
            try:
                root = ElementTree.fromstring(content)
                code, message = _text(root, "Code", ""), _text(root, "Message", "")
            except ElementTree.ParseError:
                message = content[:200].decode("utf-8", "replace")
        if status == 404 and code in ("", "NoSuchKey", "NotFound"):
            return PathNotFoundError(path, self.name)
        return S3Error(path, self.name, status, code, message)

    async def _head(self, path, key):
        """(size, modtime) of the object at *key*; PathNotFoundError if there is none."""
        response, _ = await self._request("HEAD", path, key)
        size = int(response.headers.getRawHeaders(b"content-length", [b"0"])[0])
        modified = response.headers.getRawHeaders(b"last-modified", [None])[0]
        modtime = email.utils.parsedate_to_datetime(modified.decode()).timestamp() if modified else 0.0
        return size, modtime

    async def _list_page(self, path, prefix, token=None, delimiter="/", max_keys=LIST_PAGE):
        query = {"list-type": 2, "prefix": prefix, "max-keys": max_keys}
        if delimiter:
            query["delimiter"] = delimiter
        if token:
            query["continuation-token"] = token
        _, content = await self._request("GET", path, "", query)
        root = ElementTree.fromstring(content)
        files = [
            (c_key, int(_text(c, "Size", "0")), _parse_iso(_text(c, "LastModified")))
            for c in _children(root, "Contents")
            for c_key in [_text(c, "Key")]
        ]
        dirs = [_text(c, "Prefix") for c in _children(root, "CommonPrefixes")]
        truncated = _text(root, "IsTruncated") == "true"
        return files, dirs, _text(root, "NextContinuationToken") if truncated else None

    async def _keys_below(self, path, prefix):
        """Async iterator over pages of every key below *prefix* (no delimiter)."""
        token = None
        while True:
            files, _, token = await self._list_page(path, prefix, token, delimiter=None)
            yield [f[0] for f in files]
            if token is None:
                return

    async def _has_keys_below(self, path, prefix):
        files, dirs, _ = await self._list_page(path, prefix, max_keys=1)
        return bool(files or dirs)

    # -- IStorageDriver -------------------------------------------------------------------

    def get_content(self, path):
        return defer.ensureDeferred(self._get_content(path))

    async def _get_content(self, path):
        key = self._key(path)
        _, content = await self._request("GET", path, key)
        return content

    def put_content(self, path, data):
        return defer.ensureDeferred(self._put_content(path, bytes(data)))

    async def _put_content(self, path, data):
        key = self._key(path)
        await self._request("PUT", path, key, headers={"Content-Type": "application/octet-stream",
                                                        **self._object_headers}, body=data)

    def reader(self, path, offset=0):
        return defer.ensureDeferred(self._reader(path, offset))

    async def _reader(self, path, offset):
        key = self._key(path)
        if offset < 0:
            raise InvalidOffsetError(path, self.name)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = await self._request("GET", path, key, headers=headers, ok=(200, 206), stream=True)
        except S3Error as e:
            if e.status != 416:
                raise
            # At or past the end: S3 refuses both; only the end itself is a valid offset.
            size, _ = await self._head(path, key)
            if offset == size:
                return EmptyReader()
            raise InvalidOffsetError(path, self.name) from None
        return ResponseReader(response, lambda reason: StorageDriverError(path, self.name, f"{self.name}: {path}: read failed: {reason}"))

    def writer(self, path, append=False):
        return defer.ensureDeferred(self._writer(path, append))

    async def _writer(self, path, append):
        key = self._key(path)
        if not append:
            return _S3Writer(self, path, key, size=0, buffer=bytearray(), copy_size=0, dirty=True)
        size, _ = await self._head(path, key)
        if size < MIN_PART:
            # Too small to be a part of its own: it is sent again with the new bytes.
            return _S3Writer(self, path, key, size, bytearray(await self._get_content(path)), 0, dirty=False)
        return _S3Writer(self, path, key, size, bytearray(), copy_size=size, dirty=False)

    def stat(self, path):
        return defer.ensureDeferred(self._stat(path))

    async def _stat(self, path):
        if path != "/":
            key = self._key(path)
            try:
                size, modtime = await self._head(path, key)
                return FileInfo(path=path, size=size, modtime=modtime, is_dir=False)
            except PathNotFoundError:
                pass
        if await self._has_keys_below(path, self._dir_prefix(path)):
            return FileInfo(path=path, size=0, modtime=0.0, is_dir=True)
        raise PathNotFoundError(path, self.name)

    async def _list_infos(self, path):
        prefix = self._dir_prefix(path)
        infos, token = [], None
        while True:
            files, dirs, token = await self._list_page(path, prefix, token)
            infos.extend(FileInfo(path=self._path(k), size=s, modtime=m) for k, s, m in files if k != prefix)
            infos.extend(FileInfo(path=self._path(d.rstrip("/")), is_dir=True) for d in dirs)
            if token is None:
                break
        if not infos and path != "/":
            raise PathNotFoundError(path, self.name)
        return sorted(infos, key=lambda i: i.path)

    def list(self, path):
        d = defer.maybeDeferred(self._dir_prefix, path)
        d.addCallback(lambda _: defer.ensureDeferred(self._list_infos(path)))
        return d.addCallback(lambda infos: [i.path for i in infos])

    def move(self, source, dest):
        return defer.ensureDeferred(self._move(source, dest))

    async def _move(self, source, dest):
        src_key, dst_key = self._key(source), self._key(dest)
        try:
            size, _ = await self._head(source, src_key)
        except PathNotFoundError:
            size = None
        if size is not None:
            if src_key != dst_key:
                await self._copy(source, src_key, dst_key, size)
                await self._request("DELETE", source, src_key, ok=(204, 200))
            return
        # A directory: every key below it, a page at a time.
        moved = False
        async for page in self._keys_below(source, src_key + "/"):
            for key in page:
                key_path = self._path(key)
                key_size, _ = await self._head(key_path, key)
                await self._copy(key_path, key, dst_key + key[len(src_key):], key_size)
            await self._delete_keys(source, page)
            moved = moved or bool(page)
        if not moved:
            raise PathNotFoundError(source, self.name)

    async def _copy(self, path, src_key, dst_key, size):
        source = quote(f"/{self._bucket}/{src_key}", safe="/~")
        if size <= self._copy_threshold:
            await self._request("PUT", path, dst_key, headers={"x-amz-copy-source": source, **self._object_headers})
            return
        upload_id = await self._start_multipart(path, dst_key)
        try:
            ranges = [(off, min(off + self._copy_chunk, size) - 1) for off in range(0, size, self._copy_chunk)]
            limit = defer.DeferredSemaphore(self._copy_concurrency)
            etags = await defer.gatherResults(
                [
                    limit.run(lambda n=n, r=r: defer.ensureDeferred(
                        self._copy_part(path, dst_key, upload_id, n, source, r)))
                    for n, r in enumerate(ranges, 1)
                ],
                consumeErrors=True,
            )
            await self._complete_multipart(path, dst_key, upload_id, list(enumerate(etags, 1)))
        except BaseException:
            await self._abort_multipart(path, dst_key, upload_id)
            raise

    def delete(self, path):
        return defer.ensureDeferred(self._delete(path))

    async def _delete(self, path):
        key = self._key(path)
        deleted = False
        try:
            await self._head(path, key)
            await self._request("DELETE", path, key, ok=(204, 200))
            deleted = True
        except PathNotFoundError:
            pass
        async for page in self._keys_below(path, key + "/"):
            await self._delete_keys(path, page)
            deleted = deleted or bool(page)
        if not deleted:
            raise PathNotFoundError(path, self.name)

    async def _delete_keys(self, path, keys):
        if not keys:
            return
        body = (
            "<Delete><Quiet>true</Quiet>"
            + "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
            + "</Delete>"
        ).encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        _, content = await self._request("POST", path, "", {"delete": None}, {"Content-MD5": md5}, body)
        errors = _children(ElementTree.fromstring(content), "Error")
        if errors:
            raise S3Error(path, self.name, 200, _text(errors[0], "Code", ""), _text(errors[0], "Key", ""))

    def walk(self, path, visit, start_after=None):
        d = defer.maybeDeferred(self._dir_prefix, path)
        return d.addCallback(lambda _: defer.ensureDeferred(walk_tree(self._list_infos, path, visit, start_after)))

    def redirect_url(self, method, path):
        return defer.ensureDeferred(self._redirect_url(method, path))

    async def _redirect_url(self, method, path):
        if method not in ("GET", "HEAD"):
            return None
        aws = AWSRequest(method=method, url=self._url(self._key(path)))
        S3SigV4QueryAuth(await self._frozen_credentials(), "s3", self._region, expires=REDIRECT_EXPIRY).add_auth(aws)
        return aws.url

    # -- multipart ------------------------------------------------------------------------

    async def _start_multipart(self, path, key):
        _, content = await self._request("POST", path, key, {"uploads": None},
                                         {"Content-Type": "application/octet-stream", **self._object_headers})
        return _text(ElementTree.fromstring(content), "UploadId")

    async def _upload_part(self, path, key, upload_id, number, data):
        response, _ = await self._request("PUT", path, key, {"partNumber": number, "uploadId": upload_id}, body=data)
        return response.headers.getRawHeaders(b"etag")[0].decode()

    async def _copy_part(self, path, key, upload_id, number, source, byte_range):
        _, content = await self._request(
            "PUT", path, key, {"partNumber": number, "uploadId": upload_id},
            {"x-amz-copy-source": source, "x-amz-copy-source-range": f"bytes={byte_range[0]}-{byte_range[1]}"},
        )
        return _text(ElementTree.fromstring(content), "ETag")

    async def _complete_multipart(self, path, key, upload_id, parts):
        body = (
            "<CompleteMultipartUpload>"
            + "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(e)}</ETag></Part>" for n, e in sorted(parts))
            + "</CompleteMultipartUpload>"
        ).encode()
        await self._request("POST", path, key, {"uploadId": upload_id}, body=body)

    async def _abort_multipart(self, path, key, upload_id):
        try:
            await self._request("DELETE", path, key, {"uploadId": upload_id}, ok=(204, 200, 404))
        except Exception:
            # The upload's parts stay until a bucket lifecycle rule removes them.
            log.failure("aborting multipart upload {upload_id} of {key}", upload_id=upload_id, key=key)


def _parse_iso(text):
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@implementer(IFileWriter)
class _S3Writer:
    """Buffers writes into parts of ``chunksize`` and sends each as soon as it is full, one
    part in flight while the next fills; its write Deferreds hold the caller back while two
    parts are pending. Nothing is visible at the path until ``close()`` or ``commit()``.

    *buffer* starts with the existing content when that is too small to copy as a part;
    *copy_size* bytes of the existing object are otherwise copied server-side as the first
    part(s) once a multipart upload starts. *dirty*: the object must be (re)written even
    if nothing is written (a new file)."""

    def __init__(self, driver, path, key, size, buffer, copy_size, dirty):
        self._driver = driver
        self._path = path
        self._key = key
        self.size = size
        self._buffer = buffer
        self._copy_size = copy_size
        self._dirty = dirty
        self._upload_id = None
        self._parts = []  # (number, etag), for CompleteMultipartUpload
        self._next_part = 1
        self._inflight = None
        self._error = None
        self._lock = defer.DeferredLock()
        self._state = None  # "committed", "cancelled" or "closed"

    def _serial(self, fn):
        return self._lock.run(lambda: defer.ensureDeferred(fn()))

    def write(self, data):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        data = bytes(data)  # the caller may reuse its buffer
        self.size += len(data)
        self._dirty = True
        return self._serial(lambda: self._append(data))

    async def _append(self, data):
        if self._error is not None:
            raise self._error
        self._buffer += data
        chunk = self._driver._chunksize
        while len(self._buffer) >= chunk:
            part = bytes(self._buffer[:chunk])
            del self._buffer[:chunk]
            await self._send(part)

    async def _start(self):
        d = self._driver
        self._upload_id = await d._start_multipart(self._path, self._key)
        if self._copy_size:
            # The bytes already stored become the first part(s), copied inside S3; equal
            # ranges keep each of them above the minimum part size.
            source = quote(f"/{d._bucket}/{self._key}", safe="/~")
            n = math.ceil(self._copy_size / MAX_COPY_PART)
            step = math.ceil(self._copy_size / n)
            for off in range(0, self._copy_size, step):
                number = self._take_number()
                etag = await d._copy_part(self._path, self._key, self._upload_id, number, source,
                                          (off, min(off + step, self._copy_size) - 1))
                self._parts.append((number, etag))

    def _take_number(self):
        number, self._next_part = self._next_part, self._next_part + 1
        return number

    async def _wait_inflight(self):
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight
        if self._error is not None:
            raise self._error

    async def _send(self, part):
        if self._upload_id is None:
            await self._start()
        await self._wait_inflight()
        number = self._take_number()
        d = defer.ensureDeferred(self._driver._upload_part(self._path, self._key, self._upload_id, number, part))

        def sent(etag):
            self._parts.append((number, etag))

        def failed(failure):
            self._error = failure.value

        self._inflight = d.addCallbacks(sent, failed)

    async def _flush(self):
        """Make everything written visible at the path (the end of close and commit)."""
        await self._wait_inflight()
        d = self._driver
        if self._upload_id is None and not (self._copy_size and self._buffer):
            # Nothing went out as a part: one PUT, unless this appends nothing to a big object.
            if self._dirty and not self._copy_size:
                await d._put_content(self._path, bytes(self._buffer))
            self._buffer = bytearray()
            return
        if self._buffer:
            await self._send(bytes(self._buffer))
            self._buffer = bytearray()
            await self._wait_inflight()
        await d._complete_multipart(self._path, self._key, self._upload_id, self._parts)

    async def _finish(self, state):
        if self._state:
            raise ValueError(f"writer is {self._state}")
        self._state = state
        try:
            await self._flush()
        except BaseException:
            if self._upload_id is not None:
                await self._driver._abort_multipart(self._path, self._key, self._upload_id)
            raise

    def commit(self):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        return self._serial(lambda: self._finish("committed"))

    def close(self):
        if self._state:
            return defer.succeed(None)
        return self._serial(lambda: self._finish("closed"))

    def cancel(self):
        if self._state:
            return defer.fail(ValueError(f"writer is {self._state}"))
        self._state = "cancelled"
        return self._serial(self._cancel)

    async def _cancel(self):
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight
        if self._upload_id is not None:
            await self._driver._abort_multipart(self._path, self._key, self._upload_id)
        try:
            await self._driver._request("DELETE", self._path, self._key, ok=(204, 200))
        except PathNotFoundError:
            pass
