"""Blob upload sessions: POST/PATCH/PUT/GET/DELETE, mounts, _state tokens, Content-Range."""

import base64
import re
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from support.api import (
    assert_error,
    daemon_fixture,
    digest_of,
    fake_digest,
    kinds,
    unique,
)

_reg, reg = daemon_fixture("reg")

UUID_RE = re.compile(r"^[a-zA-Z0-9._=-]+$")


def _with(location, **params):
    """*location* with query parameters added/replaced (None removes one)."""
    parts = urlsplit(location)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for k, v in params.items():
        if v is None:
            query.pop(k, None)
        else:
            query[k] = v
    return parts._replace(query=urlencode(query)).geturl()


def _check_session(r, repo, status=202, rng="0-0"):
    assert r.status == status, r
    assert r.declared_length in (0, None) and r.body == b"", r
    uid = r.header("Docker-Upload-UUID")
    assert uid and UUID_RE.match(uid), r
    loc = r.header("Location")
    assert loc, r
    path = urlsplit(loc).path
    assert path.endswith(f"/v2/{repo}/blobs/uploads/{uid}"), r
    assert r.header("Range") == rng, r
    return loc


def _patch(reg, loc, data, content_range=None, **kw):
    headers = {"Content-Type": "application/octet-stream"}
    if content_range is not None:
        headers["Content-Range"] = content_range
    headers.update(kw.pop("headers", {}))
    return reg.at(loc, "PATCH", body=data, headers=headers, **kw)


def _status(reg, loc):
    """GET on the newest Location (Go needs its _state for a status request too)."""
    return reg.at(loc, "GET")


def _finish(reg, loc, data=b"", dgst=None, **kw):
    return reg.at(_with(loc, digest=dgst), "PUT", body=data,
                  headers={"Content-Type": "application/octet-stream"}, **kw)


@pytest.fixture
def session(reg):
    repo = unique()
    r = reg.start_upload(repo)
    return repo, _check_session(r, repo)


def test_start_upload(reg, session):
    repo, loc = session
    # Location is absolute or an absolute path; either way it is followable.
    assert loc.startswith("/") or loc.startswith("http://"), loc
    r = _status(reg, loc)
    _check_session(r, repo, status=204)


@kinds("distregistry")   # Go 2.8.2 ignores ?digest= on POST and opens a session (202)
def test_monolithic_post(reg):
    repo = unique()
    data = b"one request upload"
    dgst = digest_of(data)
    r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={dgst}", body=data,
                 headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, r
    assert urlsplit(r.header("Location")).path.endswith(f"/v2/{repo}/blobs/{dgst}"), r
    assert r.header("Docker-Content-Digest") == dgst
    assert reg.get(f"/v2/{repo}/blobs/{dgst}").body == data


@kinds("distregistry")
def test_monolithic_post_wrong_digest(reg):
    repo = unique()
    wrong = fake_digest("mono")
    r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={wrong}", body=b"data",
                 headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.get(f"/v2/{repo}/blobs/{wrong}").status == 404
    assert reg.get(f"/v2/{repo}/blobs/{digest_of(b'data')}").status == 404


def test_mount(reg):
    src, dst = unique("src"), unique("dst")
    data = b"mount me " + src.encode()
    dgst = reg.push_blob(src, data)
    r = reg.post(f"/v2/{dst}/blobs/uploads/?mount={dgst}&from={src}")
    assert r.status == 201, r
    assert urlsplit(r.header("Location")).path.endswith(f"/v2/{dst}/blobs/{dgst}"), r
    assert r.header("Docker-Content-Digest") == dgst, r
    assert r.header("Docker-Upload-UUID") is None, r
    assert r.declared_length == 0
    r = reg.get(f"/v2/{dst}/blobs/{dgst}")
    assert r.status == 200 and r.body == data, r


@pytest.mark.parametrize("case", ["absent", "bad-from", "not-in-from", "bad-digest", "no-from"])
def test_failed_mount_falls_back_to_session(reg, case):
    src, dst = unique("src"), unique("dst")
    dgst = reg.push_blob(unique("elsewhere"), b"lives elsewhere " + src.encode())
    reg.push_blob(src, b"something in src")
    query = {
        "absent": f"mount={fake_digest('m')}&from={src}",
        "bad-from": f"mount={dgst}&from=Not//A/Repo",
        "not-in-from": f"mount={dgst}&from={src}",        # the blob exists, but not in src
        "bad-digest": f"mount=sha256:zz&from={src}",
        "no-from": f"mount={dgst}",
    }[case]
    r = reg.post(f"/v2/{dst}/blobs/uploads/?{query}")
    _check_session(r, dst)
    assert reg.get(f"/v2/{dst}/blobs/{dgst}").status == 404


def test_streamed_patches_then_put(reg, session):
    repo, loc = session
    parts = [b"hello ", b"streamed ", b"world"]
    total = 0
    for part in parts:
        r = _patch(reg, loc, part)
        total += len(part)
        loc = _check_session(r, repo, rng=f"0-{total - 1}")
    r = _status(reg, loc)
    _check_session(r, repo, status=204, rng=f"0-{total - 1}")
    data = b"".join(parts)
    r = _finish(reg, loc, dgst=digest_of(data))
    assert r.status == 201, r
    assert r.header("Docker-Content-Digest") == digest_of(data)
    assert urlsplit(r.header("Location")).path.endswith(f"/v2/{repo}/blobs/{digest_of(data)}"), r
    assert reg.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


def test_patch_with_chunked_transfer_encoding(reg, session):
    repo, loc = session
    data = b"chunk one|chunk two|three"
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"chunk one|", b"chunk two|", b"three")) + b"0\r\n\r\n"
    r = _patch(reg, loc, body, headers={"Transfer-Encoding": "chunked"})
    loc = _check_session(r, repo, rng=f"0-{len(data) - 1}")
    r = _finish(reg, loc, dgst=digest_of(data))
    assert r.status == 201, r
    assert reg.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


def test_chunked_with_content_range(reg, session):
    repo, loc = session
    r = _patch(reg, loc, b"01234", "0-4")
    loc = _check_session(r, repo, rng="0-4")
    r = _patch(reg, loc, b"56789", "5-9")
    loc = _check_session(r, repo, rng="0-9")
    r = _finish(reg, loc, b"abc", dgst=digest_of(b"0123456789abc"))   # final chunk in the PUT
    assert r.status == 201, r
    assert reg.get(f"/v2/{repo}/blobs/{digest_of(b'0123456789abc')}").body == b"0123456789abc"


@kinds("distregistry")   # Go 2.8.2 ignores Content-Range
@pytest.mark.parametrize("content_range", ["10-14", "0-4", "3-7", "6-10"],
                         ids=["gap", "rewind-start", "overlap", "after-gap"])
def test_out_of_order_chunk(reg, session, content_range):
    repo, loc = session
    loc = _check_session(_patch(reg, loc, b"01234", "0-4"), repo, rng="0-4")
    r = _patch(reg, loc, b"xxxxx", content_range)
    assert_error(r, 416, "RANGE_INVALID")
    _check_session(_status(reg, loc), repo, status=204, rng="0-4")
    # the session goes on with the right range
    loc = _check_session(_patch(reg, loc, b"56789", "5-9"), repo, rng="0-9")
    assert _finish(reg, loc, dgst=digest_of(b"0123456789")).status == 201


@kinds("distregistry")   # Go 2.8.2 ignores Content-Range
def test_content_length_not_range_length(reg, session):
    repo, loc = session
    loc = _check_session(_patch(reg, loc, b"01234", "0-4"), repo, rng="0-4")
    r = _patch(reg, loc, b"567", "5-9")
    assert_error(r, 400, "SIZE_INVALID")
    _check_session(_status(reg, loc), repo, status=204, rng="0-4")


@kinds("distregistry")   # Go 2.8.2 ignores Content-Range and appends
@pytest.mark.parametrize("content_range", [
    "bytes 5-9", "bytes=5-9", "a-b", "5-", "-9", "9-5", "5-99999999999999999999999999", "5 - 9",
    "5-9/10", "-5-9", "05-09x", "0x5-0x9", "5-9,10-12",
], ids=["bytes-prefix", "bytes-eq", "letters", "open", "suffix", "reversed", "huge", "spaces",
        "total", "negative", "trailing-garbage", "hex", "list"])
def test_hostile_content_range(reg, session, content_range):
    repo, loc = session
    loc = _check_session(_patch(reg, loc, b"01234", "0-4"), repo, rng="0-4")
    r = _patch(reg, loc, b"56789", content_range)
    assert r.status in (400, 416), r
    assert r.header("Content-Type").split(";")[0] == "application/json", r
    _check_session(_status(reg, loc), repo, status=204, rng="0-4")


def test_stale_state(reg, session):
    repo, loc0 = session
    loc1 = _check_session(_patch(reg, loc0, b"first"), repo, rng="0-4")
    r = _patch(reg, loc0, b"again")           # the Location from before the first PATCH
    if reg.is_go:
        assert_error(r, 404, "BLOB_UPLOAD_INVALID")          # Go 2.8
    else:
        assert_error(r, 416, "RANGE_INVALID")                # registry:2 3.x, distregistry
    _check_session(_status(reg, loc1), repo, status=204, rng="0-4")
    r = _finish(reg, loc0, dgst=digest_of(b"first"))         # a stale PUT is refused too
    assert r.status in (404, 416), r
    r = _finish(reg, loc1, dgst=digest_of(b"first"))
    assert r.status == 201, r


def _forged_state(loc):
    state = dict(parse_qsl(urlsplit(loc).query))["_state"]
    raw = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
    # Keep the payload, break the MAC (first byte) — or the payload if there is no MAC.
    forged = bytes([raw[0] ^ 0xFF]) + raw[1:]
    return base64.urlsafe_b64encode(forged).decode()


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("case", ["missing", "garbage", "forged", "other-upload", "empty"])
def test_bad_state(reg, session, case, method):
    repo, loc = session
    other = reg.start_upload(repo).header("Location")
    bad = {
        "missing": _with(loc, _state=None),
        "garbage": _with(loc, _state="not-a-state"),
        "forged": _with(loc, _state=_forged_state(loc)),
        "other-upload": _with(loc, _state=dict(parse_qsl(urlsplit(other).query))["_state"]),
        "empty": _with(loc, _state=""),
    }[case]
    if method == "PUT":
        bad = _with(bad, digest=digest_of(b"x"))
    r = reg.at(bad, method, body=b"x" if method != "DELETE" else b"",
               headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 404, "BLOB_UPLOAD_INVALID")
    _check_session(_status(reg, loc), repo, status=204, rng="0-0")


def test_wrong_digest_keeps_session(reg, session):
    repo, loc = session
    data = b"some content"
    loc = _check_session(_patch(reg, loc, data), repo, rng=f"0-{len(data) - 1}")
    wrong = fake_digest("wrong")
    r = _finish(reg, loc, dgst=wrong)
    assert_error(r, 400, "DIGEST_INVALID")
    assert reg.get(f"/v2/{repo}/blobs/{wrong}").status == 404
    r = _finish(reg, loc, dgst=digest_of(data))
    assert r.status == 201, r
    assert reg.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


@pytest.mark.parametrize("dgst", [None, "", "sha256:abc", "nonsense"], ids=["absent", "empty", "short", "garbage"])
def test_put_without_valid_digest(reg, session, dgst):
    repo, loc = session
    data = b"digestless"
    loc = _check_session(_patch(reg, loc, data), repo, rng=f"0-{len(data) - 1}")
    r = reg.at(_with(loc, digest=dgst) if dgst is not None else loc, "PUT",
               headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 400, "DIGEST_INVALID")
    assert _finish(reg, loc, dgst=digest_of(data)).status == 201


def test_delete_upload(reg, session):
    repo, loc = session
    loc = _check_session(_patch(reg, loc, b"abc"), repo, rng="0-2")
    r = reg.at(loc, "DELETE")
    assert r.status == 204, r
    assert_error(_status(reg, loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert _patch(reg, loc, b"def").status == 404


def test_upload_is_gone_after_put(reg, session):
    repo, loc = session
    r = _finish(reg, loc, b"done", dgst=digest_of(b"done"))
    assert r.status == 201, r
    assert_error(_status(reg, loc), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_unknown_upload(reg, method):
    repo = unique()
    reg.start_upload(repo)
    r = reg.request(method, f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}")
    assert r.status == 404, r
    if method == "GET":
        # Go 2.8 checks the (here absent) _state first; distregistry looks the upload up.
        assert_error(r, 404, "BLOB_UPLOAD_INVALID" if reg.is_go else "BLOB_UPLOAD_UNKNOWN")


def test_upload_of_another_repo_is_unknown(reg, session):
    repo, loc = session
    other = unique("other")
    reg.start_upload(other)
    moved = loc.replace(f"/v2/{repo}/", f"/v2/{other}/")     # same uuid and _state, other repo
    assert moved != loc
    for method in ("GET", "PATCH", "DELETE"):
        r = reg.at(moved, method, headers={"Content-Type": "application/octet-stream"})
        errors = assert_error(r, 404)
        assert errors[0]["code"] in ("BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"), r
    _check_session(_status(reg, loc), repo, status=204)


def test_put_of_existing_content(reg):
    """Content already stored (here: in another repo) is linked and answered 201 again."""
    data = b"dedup me"
    a, b = unique("a"), unique("b")
    dgst = reg.push_blob(a, data)
    assert reg.push_blob(b, data) == dgst
    assert reg.push_blob(b, data) == dgst
    assert reg.get(f"/v2/{b}/blobs/{dgst}").body == data
