"""Where Location headers point: default, http.prefix, http.host, http.relativeurls."""

from urllib.parse import urlsplit

from support.api import (
    OCI_MANIFEST,
    daemon_fixture,
    digest_of,
    unique,
)

HOST = "https://reg.example.com"

_plain, plain = daemon_fixture("plain")
_prefixed, prefixed = daemon_fixture("prefixed", {"http": {"prefix": "/reg/"}})
_hosted, hosted = daemon_fixture("hosted", {"http": {"host": HOST}})
_relative, relative = daemon_fixture("relative", {"http": {"relativeurls": True}})


def _locations(reg):
    """Drive an upload + manifest push; return the Location of each step (as sent)."""
    repo = unique()
    data = b"locate me " + repo.encode()
    post = reg.start_upload(repo)
    start = post.header("Location")
    patch = reg.at(start, "PATCH", body=data, headers={"Content-Type": "application/octet-stream"})
    assert patch.status == 202, patch
    chunk = patch.header("Location")
    status = reg.at(chunk, "GET")
    assert status.status == 204, status
    dgst = digest_of(data)
    put = reg.at(chunk + f"&digest={dgst}", "PUT")
    assert put.status == 201, put
    body = reg.oci_image(repo)
    m = reg.put_manifest(repo, "v1", body, OCI_MANIFEST)
    assert m.status == 201, m
    src = unique("src")
    mdgst = reg.push_blob(src, b"mount " + src.encode())
    mount = reg.post(f"/v2/{repo}/blobs/uploads/?mount={mdgst}&from={src}")
    assert mount.status == 201, mount
    return repo, {
        "upload": (start, f"/v2/{repo}/blobs/uploads/"),
        "chunk": (chunk, f"/v2/{repo}/blobs/uploads/"),
        "status": (status.header("Location"), f"/v2/{repo}/blobs/uploads/"),
        "blob": (put.header("Location"), f"/v2/{repo}/blobs/{dgst}"),
        "manifest": (m.header("Location"), f"/v2/{repo}/manifests/{digest_of(body)}"),
        "mount": (mount.header("Location"), f"/v2/{repo}/blobs/{mdgst}"),
    }


def test_default_locations(plain):
    _, locs = _locations(plain)
    for step, (loc, path) in locs.items():
        parts = urlsplit(loc)
        if parts.scheme:      # absolute: built from the request's Host
            assert (parts.scheme, parts.netloc) == ("http", f"127.0.0.1:{plain.port}"), (step, loc)
        assert parts.path.startswith(path), (step, loc)


def test_prefix(prefixed):
    reg = prefixed
    assert reg.prefix == "/reg"
    assert reg.get("/v2/").json() == {}
    # nothing is served outside the prefix
    r = reg.get("/v2/", prefix=False, check=False)
    assert r.status == 404, r
    repo, locs = _locations(reg)
    for step, (loc, path) in locs.items():
        assert urlsplit(loc).path.startswith("/reg" + path), (step, loc)
    assert reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    # the pagination Link carries the prefix too
    link = reg.get(f"/v2/_catalog?n=1").header("Link")
    assert link.startswith("</reg/v2/_catalog?"), link


def test_host(hosted):
    _, locs = _locations(hosted)
    for step, (loc, path) in locs.items():
        assert loc.startswith(HOST + path), (step, loc)


def test_host_wins_over_forwarded_headers(hosted):
    r = hosted.post(f"/v2/{unique()}/blobs/uploads/",
                    headers={"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example.net"})
    assert r.header("Location").startswith(HOST + "/v2/"), r


def test_relative_urls(relative):
    _, locs = _locations(relative)
    for step, (loc, path) in locs.items():
        assert loc.startswith(path), (step, loc)
