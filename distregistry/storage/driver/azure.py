"""The ``azure`` storage driver: Azure Blob Storage over its REST API, Shared Key signed.

Files are block blobs. A writer stages its data as blocks of ``BLOCK_SIZE`` and commits the
block list on close or commit; appending (the next PATCH of an upload, on any replica) reads
the committed block list back and commits it again followed by the new blocks, so no byte is
copied or held twice. Blob GET/HEAD can be redirected to a read-only SAS URL (20 minutes, as
registry:2).
"""

import base64
import email.utils
import os
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlencode, urlsplit

from twisted.internet import task

from distregistry.storage.driver.azure_auth import blob_sas_query, shared_key_authorization
from distregistry.storage.driver.httpclient import HTTPPool, HTTPStatusError, header
from distregistry.storage.driver.objectstore import ChunkedWriter, ObjectInfo, ObjectStoreDriver, as_deferred

API_VERSION = "2021-08-06"
BLOCK_SIZE = 4 << 20  # registry:2 appends 4 MiB at a time too
LIST_PAGE = 5000  # the service's maximum
REDIRECT_EXPIRY = 20 * 60
COPY_POLL = 0.2


def _http_date(seconds):
    return email.utils.formatdate(seconds, usegmt=True)


def _parse_http_date(value):
    return email.utils.parsedate_to_datetime(value).timestamp()


class AzureDriver(ObjectStoreDriver):
    name = "azure"

    def __init__(self, accountname, accountkey, container, realm="core.windows.net", serviceurl=None,
                 rootdirectory="", reactor=None):
        super().__init__(rootdirectory, reactor)
        self._account = accountname
        self._accountkey = accountkey
        self._container = container
        service = (serviceurl or f"https://{accountname}.blob.{realm}").rstrip("/")
        self._container_url = f"{service}/{container}"
        self._container_path = urlsplit(self._container_url).path
        self._http = HTTPPool(self._reactor)

    # -- requests ----------------------------------------------------------------------

    def _url_path(self, key):
        return self._container_path + ("/" + quote(key) if key is not None else "")

    async def _call(self, method, key, query=None, headers=None, data=None, stream=False):
        """Sign and send one request to the container (*key* None) or a blob."""
        query = query or {}
        headers = dict(headers or {})
        headers["x-ms-date"] = _http_date(time.time())
        headers["x-ms-version"] = API_VERSION
        if data is not None:
            headers["Content-Length"] = str(len(data))
        path = self._url_path(key)
        headers["Authorization"] = shared_key_authorization(
            self._account, self._accountkey, method, path, query, headers)
        url = self._container_url + ("/" + quote(key) if key is not None else "")
        if query:
            url += "?" + urlencode(query, quote_via=quote)
        sent = {k: v for k, v in headers.items() if k != "Content-Length"}  # Twisted sets it from the body
        if stream:
            return await self._http.open(method, url, headers=sent), None
        return await self._http.request(method, url, headers=sent, data=data)

    # -- backend primitives --------------------------------------------------------------

    async def _start(self):
        # registry:2 creates the container when it is missing.
        response, body = await self._call("PUT", None, {"restype": "container"})
        if response.code not in (201, 409):
            raise HTTPStatusError("/", self.name, response.code, body)

    async def _head(self, key):
        response, body = await self._call("HEAD", key)
        if response.code == 404:
            return None
        if response.code != 200:
            raise self._fail(response, body, self._path(key))
        return ObjectInfo(key=key, size=int(header(response, "Content-Length", "0")),
                          modtime=_parse_http_date(header(response, "Last-Modified")))

    async def _list_page(self, prefix, delimiter, marker, limit=None):
        query = {"restype": "container", "comp": "list", "prefix": prefix, "maxresults": str(limit or LIST_PAGE)}
        if delimiter:
            query["delimiter"] = delimiter
        if marker:
            query["marker"] = marker
        response, body = await self._call("GET", None, query)
        if response.code != 200:
            raise HTTPStatusError(self._path(prefix.rstrip("/")) if prefix else "/", self.name, response.code, body)
        root = ET.fromstring(body)
        objects = []
        for blob in root.iter("Blob"):
            props = blob.find("Properties")
            objects.append(ObjectInfo(key=blob.findtext("Name"), size=int(props.findtext("Content-Length") or 0),
                                      modtime=_parse_http_date(props.findtext("Last-Modified"))))
        prefixes = [p.findtext("Name") for p in root.iter("BlobPrefix")]
        return objects, prefixes, (root.findtext("NextMarker") or None) if limit is None else None

    async def _get(self, key, path):
        response, body = await self._call("GET", key)
        if response.code != 200:
            raise self._fail(response, body, path)
        return body

    async def _put(self, key, data, path):
        response, body = await self._call("PUT", key, headers={
            "x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}, data=data)
        if response.code != 201:
            raise self._fail(response, body, path)

    async def _delete_key(self, key, path, missing_ok=False):
        response, body = await self._call("DELETE", key)
        if response.code == 404 and missing_ok:
            return
        if response.code != 202:
            raise self._fail(response, body, path)

    async def _copy(self, src, dst, path):
        response, body = await self._call("PUT", dst, headers={"x-ms-copy-source": self._container_url + "/" + quote(src)})
        if response.code != 202:
            raise self._fail(response, body, path)
        # Within one account the copy is usually done at once; otherwise it runs server-side.
        status = header(response, "x-ms-copy-status")
        while status == "pending":
            await task.deferLater(self._reactor, COPY_POLL, lambda: None)
            response, body = await self._call("HEAD", dst)
            if response.code != 200:
                raise self._fail(response, body, path)
            status = header(response, "x-ms-copy-status")
        if status not in ("success", None):
            raise HTTPStatusError(path, self.name, response.code, f"copy {status}".encode())

    async def _get_from(self, key, offset):
        headers = {"x-ms-range": f"bytes={offset}-"} if offset else {}
        response, _ = await self._call("GET", key, headers=headers, stream=True)
        return response

    async def _writer(self, key, path, existing):
        if existing is None:
            return _BlockWriter(self, key, path, 0, [])
        response, body = await self._call("GET", key, {"comp": "blocklist", "blocklisttype": "committed"})
        if response.code != 200:
            raise self._fail(response, body, path)
        blocks = [(b.findtext("Name"), int(b.findtext("Size"))) for b in ET.fromstring(body).iter("Block")]
        writer = _BlockWriter(self, key, path, existing.size, [name for name, _ in blocks])
        if sum(size for _, size in blocks) != existing.size:
            # Written in one Put Blob (put_content): it has no blocks to keep, so its bytes are
            # staged again as blocks, streamed through one block buffer.
            await writer.restage()
        return writer

    async def _put_block(self, key, block_id, data, path):
        response, body = await self._call("PUT", key, {"comp": "block", "blockid": block_id}, data=data)
        if response.code != 201:
            raise self._fail(response, body, path)

    async def _put_block_list(self, key, committed, latest, path):
        items = [f"<Committed>{b}</Committed>" for b in committed] + [f"<Latest>{b}</Latest>" for b in latest]
        xml = ('<?xml version="1.0" encoding="utf-8"?><BlockList>' + "".join(items) + "</BlockList>").encode()
        response, body = await self._call("PUT", key, {"comp": "blocklist"}, data=xml, headers={
            "Content-Type": "application/xml", "x-ms-blob-content-type": "application/octet-stream"})
        if response.code != 201:
            raise self._fail(response, body, path)

    @as_deferred
    async def redirect_url(self, method, path):
        key = self._key(path)
        if method not in ("GET", "HEAD"):
            return None
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + REDIRECT_EXPIRY))
        sas = blob_sas_query(self._account, self._accountkey, self._container, key, "r", expiry, API_VERSION)
        return f"{self._container_url}/{quote(key)}?{sas}"


class _BlockWriter(ChunkedWriter):
    def __init__(self, driver, key, path, size, committed):
        super().__init__(driver, key, path, size, BLOCK_SIZE)
        self._committed = committed  # block ids already in the blob, kept in front
        self._staged = []

    async def _send(self, chunk):
        # Every block id of a blob must have the same length: 24 random bytes, 32 base64 characters.
        block_id = base64.b64encode(os.urandom(24)).decode()
        await self._driver._put_block(self._key, block_id, chunk, self._path)
        self._staged.append(block_id)

    async def _complete(self, rest):
        if rest:
            await self._send(rest)
        await self._driver._put_block_list(self._key, self._committed, self._staged, self._path)

    async def _discard(self):
        await self._driver._delete_key(self._key, self._path, missing_ok=True)

    async def restage(self):
        self._committed = []
        reader = await self._driver._open(self._key, 0, self._path)
        try:
            while chunk := await reader.read(BLOCK_SIZE):
                self._buffer += chunk
                await self._drain()
        finally:
            reader.close()
        if self._buffer:
            await self._send(bytes(self._buffer))
            self._buffer.clear()
