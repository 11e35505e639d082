"""End-to-end on-disk compatibility with the Go reference registry (issue 2, part 2).

The same storage root is served by docker-registry 2.8.2 and by distregistry, in both
directions; skopeo pulls must be byte-identical and tag lists / inspect output must match.
The layout distregistry writes must look exactly like Go's (link files, directory names).
"""

from __future__ import annotations

from pathlib import Path

import pytest

try:
    from support import goregistry as gr
    from support.images import file_digest, summarize_layout
except ImportError:  # tests is a package
    from tests.support import goregistry as gr
    from tests.support.images import file_digest, summarize_layout

pytestmark = [pytest.mark.e2e, gr.requires_go]


def push_fixture_images(reg, skopeo, imgs) -> None:
    """The same push sequence for every registry: big image (two tags), small images, index."""
    skopeo.copy(imgs.big.ref, reg.docker_ref("compat/big", "v1"))
    skopeo.copy(reg.docker_ref("compat/big", "v1"), reg.docker_ref("compat/big", "latest"))
    skopeo.copy(imgs.small.ref, reg.docker_ref("compat/small", "s1"))
    skopeo.copy(imgs.small2.ref, reg.docker_ref("compat/small", "s1"))  # retag: tag history
    skopeo.copy(imgs.small.ref, reg.docker_ref("compat/small", "s2"))
    skopeo.copy(imgs.multi.ref, reg.docker_ref("compat/multi", "m1"), all_images=True)


EXPECTED_TAGS = {
    "compat/big": ["latest", "v1"],
    "compat/small": ["s1", "s2"],
    "compat/multi": ["m1"],
}


def registry_view(reg, skopeo) -> dict:
    """What a client sees: tags, inspect (minus the host-specific Name), raw manifests."""
    view = {}
    for repo, tags in EXPECTED_TAGS.items():
        view[repo] = {"tags": sorted(skopeo.list_tags(reg.docker_ref(repo)))}
        for tag in tags:
            info = skopeo.inspect(reg.docker_ref(repo, tag))
            assert info.pop("Name") == f"{reg.host}/{repo}"
            info["RepoTags"] = sorted(info["RepoTags"])
            view[repo][tag] = (info, skopeo.inspect(reg.docker_ref(repo, tag), raw=True))
    return view


def assert_pulls_identical(reg, skopeo, imgs, dest: Path) -> None:
    cases = [
        ("compat/big", "v1", imgs.big, False),
        ("compat/big", "latest", imgs.big, False),
        ("compat/small", "s1", imgs.small2, False),
        ("compat/small", "s2", imgs.small, False),
        ("compat/multi", "m1", imgs.multi, True),
    ]
    for repo, tag, img, all_images in cases:
        out = dest / f"{repo.replace('/', '_')}-{tag}"
        skopeo.copy(reg.docker_ref(repo, tag), f"oci:{out}:{tag}", all_images=all_images)
        assert summarize_layout(out, tag) == img.summary(), f"{repo}:{tag} differs after pull"


def expected_layout(imgs) -> dict[str, str]:
    """Every file the pushes above must leave in the tree (relative to docker/registry/v2),
    mapped to its content for link files ('' for data files)."""
    files: dict[str, str] = {}

    def link(rel: str, digest: str) -> None:
        files[rel] = digest

    def blob(digest: str) -> None:
        h = digest[7:]
        files[f"blobs/sha256/{h[:2]}/{h}/data"] = ""

    def image(repo: str, img) -> None:
        blob(img.digest)
        link(f"repositories/{repo}/_manifests/revisions/sha256/{img.digest[7:]}/link", img.digest)
        for d in img.blobs():
            blob(d)
            link(f"repositories/{repo}/_layers/sha256/{d[7:]}/link", d)

    def tag(repo: str, name: str, current: str, history: list[str]) -> None:
        link(f"repositories/{repo}/_manifests/tags/{name}/current/link", current)
        for d in history:
            link(f"repositories/{repo}/_manifests/tags/{name}/index/sha256/{d[7:]}/link", d)

    image("compat/big", imgs.big)
    tag("compat/big", "v1", imgs.big.digest, [imgs.big.digest])
    tag("compat/big", "latest", imgs.big.digest, [imgs.big.digest])
    image("compat/small", imgs.small)
    image("compat/small", imgs.small2)
    tag("compat/small", "s1", imgs.small2.digest, [imgs.small.digest, imgs.small2.digest])
    tag("compat/small", "s2", imgs.small.digest, [imgs.small.digest])
    for child in imgs.multi.images:
        image("compat/multi", child)
    blob(imgs.multi.digest)
    link(f"repositories/compat/multi/_manifests/revisions/sha256/{imgs.multi.digest[7:]}/link", imgs.multi.digest)
    tag("compat/multi", "m1", imgs.multi.digest, [imgs.multi.digest])
    return files


def assert_go_like_layout(root: Path, imgs, who: str) -> None:
    v2 = gr.v2_root(root)
    assert v2.is_dir(), f"{who}: no docker/registry/v2 under {root}"
    actual = gr.tree(v2)
    # Empty upload directories may stay behind (Go keeps `_uploads/`), but no upload files.
    leftovers = [p for p in actual if "/_uploads/" in p]
    assert not leftovers, f"{who}: upload files left after commit: {leftovers[:10]}"
    expected = expected_layout(imgs)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing, f"{who}: missing files: {missing[:20]}"
    assert not extra, f"{who}: unexpected files (temp files? wrong names?): {extra[:20]}"
    for rel, content in expected.items():
        p = v2 / rel
        if content:
            assert gr.read_link(p) == content, f"{who}: {rel}"
        else:
            digest, _ = file_digest(p)
            assert digest == "sha256:" + p.parent.name, f"{who}: {rel} content does not match its digest"


def all_digests(imgs) -> set[str]:
    out = {imgs.multi.digest}
    for img in (imgs.big, imgs.small, imgs.small2, *imgs.multi.images):
        out |= {img.digest, *img.blobs()}
    return out


def assert_go_gc_keeps_everything(reg, imgs) -> None:
    gc = gr.garbage_collect(reg, dry_run=True)
    assert gc.returncode == 0, gc.stderr
    assert gc.eligible_blobs == set(), gc.stdout
    missing = all_digests(imgs) - gc.marked
    assert not missing, f"Go GC does not mark {sorted(missing)}\n{gc.stdout}"


@pytest.mark.goregistry
def test_harness_go_restart_on_same_root(daemons, skopeo, e2e_images, tmp_path):
    """Proves the harness (expected layout, views, GC parsing) against Go alone."""
    root = tmp_path / "shared-root"
    go = daemons.start("go", root=root, name="go-writer")
    push_fixture_images(go, skopeo, e2e_images)
    view = registry_view(go, skopeo)
    go.stop()
    assert_go_like_layout(root, e2e_images, "go")
    assert_go_gc_keeps_everything(go, e2e_images)
    go2 = daemons.start("go", root=root, name="go-reader")
    assert registry_view(go2, skopeo) == view
    assert_pulls_identical(go2, skopeo, e2e_images, tmp_path / "pulled")


@pytest.mark.distregistry
def test_go_writes_distregistry_reads(daemons, skopeo, e2e_images, tmp_path):
    root = tmp_path / "shared-root"
    go = daemons.start("go", root=root, name="go-writer")
    push_fixture_images(go, skopeo, e2e_images)
    go_view = registry_view(go, skopeo)
    go.stop()
    assert_go_like_layout(root, e2e_images, "go")  # proves expected_layout() against the reference

    dist = daemons.start("distregistry", root=root, name="dist-reader")
    assert registry_view(dist, skopeo) == go_view
    assert_pulls_identical(dist, skopeo, e2e_images, tmp_path / "pulled")


@pytest.mark.distregistry
def test_distregistry_writes_go_reads(daemons, skopeo, e2e_images, tmp_path):
    root = tmp_path / "shared-root"
    dist = daemons.start("distregistry", root=root, name="dist-writer")
    push_fixture_images(dist, skopeo, e2e_images)
    dist_view = registry_view(dist, skopeo)
    dist.stop()
    assert_go_like_layout(root, e2e_images, "distregistry")

    # Go's garbage collector understands the tree: everything is referenced, nothing eligible.
    assert_go_gc_keeps_everything(dist, e2e_images)

    go = daemons.start("go", root=root, name="go-reader")
    assert registry_view(go, skopeo) == dist_view
    assert_pulls_identical(go, skopeo, e2e_images, tmp_path / "pulled")


@pytest.mark.distregistry
def test_same_pushes_give_the_same_tree(daemons, skopeo, e2e_images):
    """Small pushes (+ a delete) into Go and into distregistry leave identical trees."""
    trees = {}
    for kind in ("go", "distregistry"):
        reg = daemons.start(kind, name=f"{kind}-tree")
        skopeo.copy(e2e_images.small.ref, reg.docker_ref("t/a", "one"))
        skopeo.copy(e2e_images.small2.ref, reg.docker_ref("t/a", "two"))
        skopeo.copy(e2e_images.small2.ref, reg.docker_ref("t/b", "two"))
        skopeo.copy(e2e_images.multi.ref, reg.docker_ref("t/a", "multi"), all_images=True)
        skopeo.delete(reg.docker_ref("t/a", "one"))  # drops revision link + tag dir
        reg.stop()
        v2 = gr.v2_root(reg.root)
        files = [p for p in gr.tree(v2) if "/_uploads/" not in p]
        trees[kind] = {p: (v2 / p).read_bytes() if p.endswith("/link") else (v2 / p).stat().st_size for p in files}
        assert not gr.revision_link(reg.root, "t/a", e2e_images.small.digest).exists()
        assert not gr.tag_current_link(reg.root, "t/a", "one").exists()
    go, dist = trees["go"], trees["distregistry"]
    assert len(go) > 20 and any(p.endswith("/current/link") for p in go), sorted(go)
    assert sorted(set(go) - set(dist)) == [], "files Go writes but distregistry does not"
    assert sorted(set(dist) - set(go)) == [], "files distregistry writes but Go does not"
    assert {p: v for p, v in dist.items() if go[p] != v} == {}


@pytest.mark.distregistry
def test_fixtures_run_both_kinds_side_by_side(goregistry, distregistry):
    """The harness itself: both fixtures running at once on free ports, same base endpoint
    answer, measurable, and stopped by PID (no process left behind)."""
    assert goregistry.port != distregistry.port
    for reg in (goregistry, distregistry):
        r = reg.request("GET", "/v2/")
        assert r.status == 200 and r.json() == {}
        assert r.header("Docker-Distribution-API-Version") == "registry/2.0"
        assert reg.vmhwm_kib() > 1000
        assert reg.log_text().strip(), f"{reg.kind} wrote no log"
        pid = reg.pid
        assert reg.stop() is not None
        assert not Path(f"/proc/{pid}").exists(), f"{reg.kind} pid {pid} still exists after stop()"
