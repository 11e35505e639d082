"""``distregistry garbage-collect`` end to end: trees with shared layers, an index, untagged
manifests and referrers written by distregistry; dry run == real run; kept images pull
byte-identical afterwards; and side by side with Debian's ``docker-registry garbage-collect``."""

from __future__ import annotations

import shutil

import pytest
import yaml

try:
    from support import goregistry as gr
    from support import gc as gch
    from support.images import SMALL_IMAGE_LAYERS, FileSpec, build_image, build_index, layer, summarize_layout
except ImportError:  # tests is a package
    from tests.support import goregistry as gr
    from tests.support import gc as gch
    from tests.support.images import SMALL_IMAGE_LAYERS, FileSpec, build_image, build_index, layer, summarize_layout

pytestmark = pytest.mark.e2e

THREE_LAYERS = SMALL_IMAGE_LAYERS + (layer(FileSpec("opt", kind="dir"), FileSpec("opt/extra.bin", 32 * 1024)),)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    base = tmp_path_factory.mktemp("gc-images")
    # a1 and a2 share their first two layers; c is unrelated; m is a two-platform index.
    return {
        "a1": build_image(base / "app", "a1", THREE_LAYERS, seed="a"),
        "a2": build_image(base / "app", "a2", SMALL_IMAGE_LAYERS, seed="a"),
        "c": build_image(base / "other", "c", SMALL_IMAGE_LAYERS, seed="c"),
        "d": build_image(base / "other", "d", SMALL_IMAGE_LAYERS, seed="d"),
        "m": build_index(base / "multi", "m1", seed="m"),
    }


def descriptor(img) -> dict:
    return {"mediaType": img.manifest.media_type if hasattr(img, "manifest") else img.index.media_type,
            "digest": img.digest, "size": (img.manifest if hasattr(img, "manifest") else img.index).size}


def blobs_of(img) -> set[str]:
    return {img.digest, *img.blobs()}


def diff(before: dict, after: dict) -> dict:
    return {k: before[k] - after[k] for k in before}


def test_offline_gc_dry_run_matches_real_run_and_kept_images_pull(daemons, skopeo, images, tmp_path):
    reg = daemons.start("distregistry")
    a1, a2, c, m = images["a1"], images["a2"], images["c"], images["m"]
    skopeo.copy(a1.ref, reg.docker_ref("gc/app", "v1"))
    skopeo.copy(a2.ref, reg.docker_ref("gc/app", "old"))
    assert reg.request("DELETE", "/v2/gc/app/manifests/old").status == 202        # a2 is now untagged
    skopeo.copy(c.ref, reg.docker_ref("gc/app", "gone"))
    assert reg.request("DELETE", f"/v2/gc/app/manifests/{c.digest}").status == 202  # c's revision goes
    skopeo.copy(m.ref, reg.docker_ref("gc/multi", "m1"), all_images=True)
    sig1 = gch.push_referrer(reg, "gc/app", descriptor(a1), "a1")        # signs a kept image
    sig4 = gch.push_referrer(reg, "gc/app", {"mediaType": gch.MT_OCI_MANIFEST, "digest": sig1,
                                             "size": len(reg.request("GET", f"/v2/gc/app/manifests/{sig1}",
                                                                     headers={"Accept": gch.MT_OCI_MANIFEST}).body)},
                             "sig1")                                       # signs the signature
    sig2 = gch.push_referrer(reg, "gc/app", descriptor(a2), "a2")        # signs an untagged image
    sig3 = gch.push_referrer(reg, "gc/multi", descriptor(m), "m")        # signs an index
    reg.stop()
    root = reg.root

    # Plain mark and sweep: only what no revision reaches (c) goes.
    start = gch.state(root)
    dry = gch.run_gc(reg.config_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert gch.state(root) == start, "a dry run deleted something"
    listed = gch.eligible(dry.stdout)
    assert listed["blobs"] == blobs_of(c) - blobs_of(a1) - blobs_of(a2)
    assert listed["manifests"] == set()
    assert listed["layers"] == {("gc/app", d) for d in listed["blobs"] - {c.digest}}
    assert f"gc/app: marking manifest {a1.digest} " in dry.stdout.splitlines()
    assert f"{len(listed['blobs'])} blobs and 0 manifests eligible for deletion" in dry.stdout
    real = gch.run_gc(reg.config_path)
    assert real.returncode == 0, real.stderr
    assert gch.eligible(real.stdout) == listed
    assert diff(start, gch.state(root)) == listed
    assert "Deleting blob: /docker/registry/v2/blobs/sha256/" in real.stdout
    assert "freed " in real.stdout

    # --delete-untagged: a2 and its signature go; a1's signatures (and theirs), the index's
    # children and the index's signature stay (registry:2 deletes all of those).
    start = gch.state(root)
    dry = gch.run_gc(reg.config_path, "--dry-run", "--delete-untagged")
    assert dry.returncode == 0, dry.stderr
    assert gch.state(root) == start
    listed = gch.eligible(dry.stdout)
    assert listed["manifests"] == {("gc/app", a2.digest), ("gc/app", sig2)}
    assert {a2.digest, sig2, a2.config.digest} <= listed["blobs"]
    assert not listed["blobs"] & (blobs_of(a1) | {sig1, sig3, sig4} | {i.digest for i in m.images})
    real = gch.run_gc(reg.config_path, "--delete-untagged")
    assert real.returncode == 0, real.stderr
    assert gch.eligible(real.stdout) == listed
    assert diff(start, gch.state(root)) == listed

    # A second run finds nothing left to do.
    again = gch.run_gc(reg.config_path, "--delete-untagged", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "0 blobs and 0 manifests eligible for deletion" in again.stdout
    assert "marking" not in again.stdout

    reg.start()
    for ref, img, all_images in ((reg.docker_ref("gc/app", "v1"), a1, False),
                                 (reg.docker_ref("gc/multi", "m1"), m, True)):
        dest = tmp_path / "pulled" / img.tag
        skopeo.copy(ref, f"oci:{dest}:{img.tag}", all_images=all_images)
        assert summarize_layout(dest, img.tag) == img.summary()
    for repo, digest in (("gc/app", sig1), ("gc/app", sig4), ("gc/multi", sig3)):
        r = reg.request("GET", f"/v2/{repo}/manifests/{digest}", headers={"Accept": gch.MT_OCI_MANIFEST})
        assert r.status == 200, (repo, digest, r.status)
    for digest in (a2.digest, sig2):
        assert reg.request("GET", f"/v2/gc/app/manifests/{digest}",
                           headers={"Accept": gch.MT_OCI_MANIFEST}).status == 404
    referrers = reg.request("GET", f"/v2/gc/app/referrers/{a1.digest}").json()["manifests"]
    assert [d["digest"] for d in referrers] == [sig1]


def _our_config(path, root):
    path.write_text(yaml.safe_dump({"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}}}))
    return path


def _go_config(path, root):
    path.write_text(yaml.safe_dump({"version": 0.1, "log": {"level": "error"},
                                    "storage": {"filesystem": {"rootdirectory": str(root)}}}))
    return path


def _go_gc(config, *flags):
    import subprocess

    p = subprocess.run([gr.GO_REGISTRY_BIN, "garbage-collect", *flags, str(config)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p


@gr.requires_go
def test_same_deleted_set_as_docker_registry_on_its_own_tree(daemons, skopeo, images, tmp_path):
    go = daemons.start("go")
    a1, a2, c, m = images["a1"], images["a2"], images["c"], images["m"]
    skopeo.copy(a1.ref, go.docker_ref("app", "v1"))
    skopeo.copy(a2.ref, go.docker_ref("app", "t"))
    skopeo.copy(c.ref, go.docker_ref("app", "t"))            # a2 untagged (its tag moved)
    d = images["d"]
    skopeo.copy(d.ref, go.docker_ref("gone", "x"))
    assert go.request("DELETE", f"/v2/gone/manifests/{d.digest}").status == 202
    skopeo.copy(m.ref, go.docker_ref("multi", "m1"), all_images=True)
    go.stop()

    cases = [
        ("plain", (), False),
        # 2.8.2's --delete-untagged deletes index children (distribution#3004, fixed in 3.x):
        # compared on the tree without the index, where 2.8.2 is right.
        ("untagged", ("--delete-untagged",), True),
    ]
    for label, flags, drop_index in cases:
        trees = {}
        for who in ("go", "ours"):
            root = tmp_path / label / who
            shutil.copytree(go.root, root, symlinks=True)
            if drop_index:
                shutil.rmtree(gr.repo_dir(root, "multi"))
            trees[who] = root
        start = gch.state(trees["go"])
        assert gch.state(trees["ours"]) == start
        files = set(gr.tree(trees["go"]))
        go_out = _go_gc(_go_config(tmp_path / label / "go.yml", trees["go"]), *flags)
        ours = gch.run_gc(_our_config(tmp_path / label / "ours.yml", trees["ours"]), *flags)
        assert ours.returncode == 0, ours.stderr
        go_deleted = diff(start, gch.state(trees["go"]))
        our_deleted = diff(start, gch.state(trees["ours"]))
        assert our_deleted["blobs"] == go_deleted["blobs"], label
        assert our_deleted["manifests"] == go_deleted["manifests"], label
        assert our_deleted["blobs"], f"{label}: the tree had garbage"
        # File by file (tag history entries included), all but the layer links.
        without_links = lambda paths: {p for p in paths if "/_layers/" not in p}   # noqa: E731
        assert (without_links(files - set(gr.tree(trees["ours"])))
                == without_links(files - set(gr.tree(trees["go"])))), label
        # Where we differ on purpose: 2.8.2 leaves layer links of deleted blobs behind, 3.x
        # (and we) delete the links no kept manifest references.
        assert go_deleted["layers"] == set()
        assert {d for _, d in our_deleted["layers"]} <= our_deleted["blobs"]
        # Both list the same eligible blobs.
        assert gch.eligible(ours.stdout)["blobs"] == gr.GCResult(0, go_out.stdout, "").eligible_blobs
    assert ("app", a2.digest) in diff(gch.state(go.root), gch.state(tmp_path / "untagged" / "ours"))["manifests"]
