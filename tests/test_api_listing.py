"""Tags list and catalog: order, n/last pagination, relative Link headers, bad n."""

import random
from urllib.parse import parse_qsl, urlsplit

import pytest

from support.api import (
    assert_error,
    daemon_fixture,
    digest_of,
    kinds,
    parse_link,
    unique,
)

_reg, reg = daemon_fixture("reg")


def _push_tags(reg, repo, tags):
    return reg.push_oci_image(repo, *tags)


TAGS = ["v1.0", "latest", "a", "B", "1", "z_z", "a-b", "a.b", "a_b", "ab", "Z"]


@pytest.fixture(scope="module")
def tagged(_reg_daemon):
    reg = _reg_daemon
    repo = unique("tags")
    order = TAGS[:]
    random.Random(7).shuffle(order)
    _push_tags(reg, repo, order)
    return repo


def _json_ok(r):
    assert r.status == 200, r
    assert r.header("Content-Type").split(";")[0] == "application/json", r
    return r.json()


def test_tags_list_all(reg, tagged):
    body = _json_ok(reg.get(f"/v2/{tagged}/tags/list"))
    assert body["name"] == tagged
    assert sorted(body["tags"]) == sorted(TAGS)
    assert reg.get(f"/v2/{tagged}/tags/list").header("Link") is None


@kinds("distregistry")   # Go 2.8.2 lists in readdir order
def test_tags_sorted(reg, tagged):
    assert _json_ok(reg.get(f"/v2/{tagged}/tags/list"))["tags"] == sorted(TAGS)


def _walk(reg, first, key):
    """Follow rel="next" Links from *first*; return (items, links seen)."""
    items, links = [], []
    r = reg.get(first)
    while True:
        page = _json_ok(r)[key]
        assert isinstance(page, list)
        items += page
        link = r.header("Link")
        if link is None:
            return items, links
        target, rel = parse_link(link)
        assert rel == "next", link
        assert target.startswith("/v2/") or target.startswith(reg.prefix + "/v2/"), link  # relative
        links.append(target)
        assert len(links) < 200, "pagination does not end"
        r = reg.get(target, prefix=False)


@kinds("distregistry")   # Go 2.8.2 ignores n/last for tags
@pytest.mark.parametrize("n", [1, 2, 3, len(TAGS), len(TAGS) + 1])
def test_tags_pagination(reg, tagged, n):
    items, links = _walk(reg, f"/v2/{tagged}/tags/list?n={n}", "tags")
    assert items == sorted(TAGS)
    for target in links:
        parts = urlsplit(target)
        assert parts.path.endswith(f"/v2/{tagged}/tags/list"), target
        query = parse_qsl(parts.query)
        assert [k for k, _ in query] == ["last", "n"], target
        assert dict(query)["n"] == str(n)
    # a Link only when the page was full
    assert len(links) >= (len(TAGS) - 1) // n
    first = reg.get(f"/v2/{tagged}/tags/list?n={n}")
    assert len(first.json()["tags"]) == min(n, len(TAGS))
    if n > len(TAGS):
        assert first.header("Link") is None


@kinds("distregistry")
def test_tags_link_value(reg, tagged):
    r = reg.get(f"/v2/{tagged}/tags/list?n=2")
    first_two = sorted(TAGS)[:2]
    assert r.json()["tags"] == first_two
    assert r.header("Link") == f'<{reg.prefix}/v2/{tagged}/tags/list?last={first_two[1]}&n=2>; rel="next"'


@kinds("distregistry")
@pytest.mark.parametrize("last", ["a", "a-b", "b", "0", "zzz", "nonexistent"])
def test_tags_last(reg, tagged, last):
    tags = _json_ok(reg.get(f"/v2/{tagged}/tags/list?last={last}"))["tags"]
    assert tags == [t for t in sorted(TAGS) if t > last]


@kinds("distregistry")
def test_tags_n_zero(reg, tagged):
    r = reg.get(f"/v2/{tagged}/tags/list?n=0")
    assert _json_ok(r)["tags"] == []
    assert r.header("Link") is None


@kinds("distregistry")   # Go 2.8.2 ignores n
@pytest.mark.parametrize("n", ["abc", "-1", "1.5", "0x10"])
def test_tags_bad_n(reg, tagged, n):
    assert_error(reg.get(f"/v2/{tagged}/tags/list?n={n}"), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("n", ["", "99999999999999999999999"], ids=["empty", "huge"])
def test_tags_odd_n(reg, tagged, n):
    """An empty n may mean "no n"; a huge one may be clamped to tags.maxtags: either all
    tags (200) or 400 PAGINATION_NUMBER_INVALID."""
    r = reg.get(f"/v2/{tagged}/tags/list?n={n}")
    if r.status == 200:
        assert sorted(r.json()["tags"]) == sorted(TAGS)
    else:
        assert_error(r, 400, "PAGINATION_NUMBER_INVALID")


def test_tags_unknown_repo(reg):
    errors = assert_error(reg.get(f"/v2/{unique('none')}/tags/list"), 404, "NAME_UNKNOWN")
    assert errors[0]["message"]


def test_tags_repo_with_blobs_only(reg):
    repo = unique("blobonly")
    reg.push_blob(repo, b"only a blob")
    assert_error(reg.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")


def test_tags_repo_with_untagged_manifest(reg):
    repo = unique("untagged")
    reg.push_oci_image(repo)      # by digest only
    r = reg.get(f"/v2/{repo}/tags/list")
    # No tags directory yet: NAME_UNKNOWN (registry:2) or an empty list; never null.
    if r.status == 200:
        assert r.json()["tags"] == []
    else:
        assert_error(r, 404, "NAME_UNKNOWN")


@kinds("distregistry")   # Go 2.8.2 returns "tags": null here
def test_tags_never_null_after_untag(reg):
    repo = unique("untag")
    body = _push_tags(reg, repo, ["only"])
    assert reg.delete(f"/v2/{repo}/manifests/{digest_of(body)}").status == 202
    r = reg.get(f"/v2/{repo}/tags/list")
    if r.status == 200:
        assert r.json()["tags"] == []
    else:
        assert_error(r, 404, "NAME_UNKNOWN")


# --------------------------------------------------------------------------------------
# catalog


@pytest.fixture(scope="module")
def family(_reg_daemon):
    """Repos a, a/b, a-b, ab (under a unique prefix), each with a tagged manifest."""
    reg = _reg_daemon
    p = unique("cat")
    names = [f"{p}/ab", f"{p}/a-b", f"{p}/a", f"{p}/a/b", f"{p}/a/b/c", f"{p}/a0"]
    for n in names:
        _push_tags(reg, n, ["t"])
    return p


def _catalog(reg, query=""):
    return _json_ok(reg.get(f"/v2/_catalog{query}"))["repositories"]


def test_catalog_order(reg, family):
    mine = [r for r in _catalog(reg, "?n=1000") if r.startswith(family + "/")]
    p = family
    # depth-first with "/" sorting first (registry:2 on the filesystem driver)
    assert mine == [f"{p}/a", f"{p}/a/b", f"{p}/a/b/c", f"{p}/a-b", f"{p}/a0", f"{p}/ab"]


def test_catalog_excludes_repos_without_manifests(reg, family):
    lonely = unique("blobonly")
    reg.push_blob(lonely, b"x")
    reg.start_upload(unique("uploadonly"))
    repos = _catalog(reg, "?n=1000")
    assert f"{family}/a" in repos
    if not reg.is_go:   # Go 2.8.2 lists every repo with a _layers directory
        assert lonely not in repos


@pytest.mark.parametrize("n", [1, 2, 5])
def test_catalog_pagination(reg, family, n):
    everything = _catalog(reg, "?n=1000")
    items, links = _walk(reg, f"/v2/_catalog?n={n}", "repositories")
    assert items == everything
    for target in links:
        parts = urlsplit(target)
        assert parts.path == f"{reg.prefix}/v2/_catalog", target
        query = parse_qsl(parts.query)
        assert [k for k, _ in query] == ["last", "n"], target
        assert dict(query)["n"] == str(n)


def test_catalog_link_value(reg, family):
    everything = _catalog(reg, "?n=1000")
    r = reg.get("/v2/_catalog?n=2")
    assert r.json()["repositories"] == everything[:2]
    last = everything[1].replace("/", "%2F")
    link = r.header("Link")
    assert link in (f'<{reg.prefix}/v2/_catalog?last={last}&n=2>; rel="next"',
                    f'<{reg.prefix}/v2/_catalog?last={everything[1]}&n=2>; rel="next"'), link


def test_catalog_last(reg, family):
    p = family
    repos = _catalog(reg, f"?n=1000&last={p}/a-b")
    assert [r for r in repos if r.startswith(p + "/")] == [f"{p}/a0", f"{p}/ab"]
    repos = _catalog(reg, f"?n=1000&last={p}%2Fa")
    assert [r for r in repos if r.startswith(p + "/")][:2] == [f"{p}/a/b", f"{p}/a/b/c"]


def test_catalog_n_zero(reg, family):
    r = reg.get("/v2/_catalog?n=0")
    assert _json_ok(r)["repositories"] == []
    assert r.header("Link") is None


@pytest.mark.parametrize("n", ["1001", "5000", "99999999999999999999999"])
def test_catalog_n_too_big(reg, family, n):
    if n.startswith("9999"):
        reg.only("distregistry")   # Go 2.8.2: an overflowing n parses as "no n"
    assert_error(reg.get(f"/v2/_catalog?n={n}"), 400, "PAGINATION_NUMBER_INVALID")


def test_catalog_n_1000_is_fine(reg, family):
    assert isinstance(_catalog(reg, "?n=1000"), list)


@kinds("distregistry")   # Go 2.8.2 treats these as "no n"
@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "0x10"])
def test_catalog_bad_n(reg, family, n):
    assert_error(reg.get(f"/v2/_catalog?n={n}"), 400, "PAGINATION_NUMBER_INVALID")
