"""A small blocking registry client for the scenarios: keep-alive http.client connections
with 1 MiB socket reads and writes, so the client's own cost per byte stays small (it shares
the cores with the server under test) and is the same for both servers."""

import hashlib
import http.client
import json
import os
from urllib.parse import urlsplit

IO_BLOCK = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class HTTPError(AssertionError):
    pass


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(prefix, path):
    h = hashlib.sha256(prefix)
    with open(path, "rb") as f:
        while chunk := f.read(IO_BLOCK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _file_body(prefix, path):
    yield prefix
    with open(path, "rb") as f:
        while chunk := f.read(IO_BLOCK):
            yield chunk


class Client:
    def __init__(self, host, port, timeout=120):
        self._conn = http.client.HTTPConnection(host, port, timeout=timeout, blocksize=IO_BLOCK)

    def close(self):
        self._conn.close()

    def request(self, method, path, body=None, headers=None, expect=(200,), sink=None):
        """(status, headers, body); with *sink* (a bytearray) the body is read into it and
        dropped, and its length is returned instead of the bytes."""
        headers = dict(headers or {})
        if body is None and method in ("PUT", "PATCH", "POST"):
            headers.setdefault("Content-Length", "0")
        self._conn.request(method, path, body=body, headers=headers)
        resp = self._conn.getresponse()
        if sink is None:
            data = resp.read()
        else:
            data, view = 0, memoryview(sink)
            while n := resp.readinto(view):
                data += n
        if resp.status not in expect:
            raise HTTPError(f"{method} {path} -> {resp.status} {data[:300]!r}")
        return resp.status, resp.headers, data

    @staticmethod
    def _location(headers):
        url = urlsplit(headers["Location"])
        return url.path + ("?" + url.query if url.query else "")

    def start_upload(self, repo):
        _, headers, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
        return self._location(headers)

    @staticmethod
    def _with_digest(location, digest):
        return location + ("&" if "?" in location else "?") + "digest=" + digest

    def push_bytes(self, repo, data):
        """Monolithic upload (POST, then PUT ?digest= with the body): registry:2's own flow."""
        digest = digest_of(data)
        location = self.start_upload(repo)
        self.request("PUT", self._with_digest(location, digest), body=data,
                     headers={"Content-Type": "application/octet-stream"}, expect=(201,))
        return digest

    def push_file(self, repo, prefix, path, digest):
        size = len(prefix) + os.path.getsize(path)
        location = self.start_upload(repo)
        self.request("PUT", self._with_digest(location, digest), body=_file_body(prefix, path),
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                     expect=(201,))

    def push_file_chunked(self, repo, prefix, path, digest, chunk):
        """PATCHes of *chunk* bytes with Content-Range, then an empty PUT ?digest=."""
        location = self.start_upload(repo)
        offset = 0
        with open(path, "rb") as f:
            piece = prefix + f.read(chunk - len(prefix))
            while piece:
                _, headers, _ = self.request(
                    "PATCH", location, body=piece,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(piece)),
                             "Content-Range": f"{offset}-{offset + len(piece) - 1}"},
                    expect=(202,))
                location = self._location(headers)
                offset += len(piece)
                piece = f.read(chunk)
        self.request("PUT", self._with_digest(location, digest), expect=(201,))

    def pull(self, repo, digest, buffer):
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", sink=buffer)[2]

    def put_manifest(self, repo, reference, payload, media_type=OCI_MANIFEST):
        self.request("PUT", f"/v2/{repo}/manifests/{reference}", body=payload,
                     headers={"Content-Type": media_type}, expect=(201,))

    def get_json(self, path):
        status, headers, body = self.request("GET", path)
        return json.loads(body), headers


def image_manifest(config, layer, annotation):
    """An OCI image manifest (bytes) naming *config* and *layer* ((digest, size) pairs)."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer[0],
                    "size": layer[1]}],
        "annotations": {"bench": annotation},
    }, separators=(",", ":")).encode()
