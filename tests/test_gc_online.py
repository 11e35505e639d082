"""Online GC under load: several clients push, re-tag and delete images for at least 60 s
while ``storage.maintenance.gc`` runs every 2 s. Afterwards every image pushed and not
deleted pulls byte-identical, and the blobs left on disk are exactly those of the kept
images (the space of the deleted ones is reclaimed)."""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import datetime

import pytest

try:
    from support import gc as gch
    from support import report
    from support.images import (CREATED, MT_OCI_CONFIG, MT_OCI_MANIFEST, FileSpec, Image, OCILayout,
                                canonical_json, layer, summarize_layout)
except ImportError:  # tests is a package
    from tests.support import gc as gch
    from tests.support import report
    from tests.support.images import (CREATED, MT_OCI_CONFIG, MT_OCI_MANIFEST, FileSpec, Image, OCILayout,
                                      canonical_json, layer, summarize_layout)

pytestmark = pytest.mark.e2e

DURATION = 60.0
WORKERS = 3
POOL = 64
GRACE = 5
INTERVAL = 2
BASE = layer(FileSpec("etc", kind="dir"), FileSpec("etc/base.bin", 96 * 1024))


def pool_image(layout, i: int) -> Image:
    """Image *i* of the pool: a base layer every image shares, a layer shared with its
    neighbour (i // 2), and one of its own, so deletes leave layers other images still use."""
    lay = OCILayout(layout)
    layers = [lay.add_tar_layer(BASE, "base"),
              lay.add_tar_layer(layer(FileSpec("pair.bin", 64 * 1024)), f"pair{i // 2}"),
              lay.add_tar_layer(layer(FileSpec("own.bin", 32 * 1024)), f"own{i}")]
    config_bytes = canonical_json({"architecture": "amd64", "os": "linux", "created": CREATED,
                                   "config": {"Labels": {"pool": str(i)}},
                                   "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]}})
    config = lay.add_bytes(config_bytes, MT_OCI_CONFIG)
    manifest_bytes = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                                     "config": config.to_json(), "layers": [d.to_json() for d in layers]})
    manifest = lay.add_bytes(manifest_bytes, MT_OCI_MANIFEST)
    tag = f"p{i}"
    lay.tag(manifest, tag)
    return Image(layout, tag, manifest, config, layers, manifest_bytes, config_bytes)


class Worker(threading.Thread):
    """One client on its own repository, keeping a model of what its tags should be."""

    def __init__(self, k, reg, skopeo, pool, deadline):
        super().__init__(name=f"gc-stress-{k}", daemon=True)
        self.repo = f"stress/w{k}"
        self.reg, self.skopeo, self.pool, self.deadline = reg, skopeo, pool, deadline
        self.rng = random.Random(k)
        self.tags = {}          # tag -> pool index
        self.pushes = []        # (start, end) wall-clock seconds of every push and re-tag
        self.counts = {"push": 0, "retag": 0, "delete": 0}
        self.error = None
        self._n = 0

    def _new_tag(self):
        self._n += 1
        return f"t{self._n}"

    def step(self):
        action = self.rng.choices(["push", "retag", "delete"], [4, 1, 4])[0] if self.tags else "push"
        if action == "push":
            i = self.rng.randrange(len(self.pool))
            tag = self._new_tag()
            start = time.time()
            self.skopeo.copy(self.pool[i].ref, self.reg.docker_ref(self.repo, tag))
            self.pushes.append((start, time.time()))
            self.tags[tag] = i
        elif action == "retag":
            old = self.rng.choice(sorted(self.tags))
            tag = self._new_tag()
            start = time.time()
            self.skopeo.copy(self.reg.docker_ref(self.repo, old), self.reg.docker_ref(self.repo, tag))
            self.pushes.append((start, time.time()))
            self.tags[tag] = self.tags[old]
        else:
            old = self.rng.choice(sorted(self.tags))
            self.skopeo.delete(self.reg.docker_ref(self.repo, old))
            # Deleting a manifest untags every tag pointing at it.
            gone = self.tags[old]
            self.tags = {t: i for t, i in self.tags.items() if i != gone}
        self.counts[action] += 1

    def run(self):
        try:
            while time.time() < self.deadline:
                self.step()
        except BaseException as error:   # reported by the test, not lost in the thread
            self.error = error


_LINE = re.compile(r'time="([^"]+)" level=info msg="garbage collection run (\d+) (started|finished[^"]*)"')


def gc_runs(log_text):
    """{run: [start, end or None, message]} from the daemon's log."""
    runs = {}
    for when, run, what in _LINE.findall(log_text):
        t = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        entry = runs.setdefault(int(run), [None, None, ""])
        if what == "started":
            entry[0] = t
        else:
            entry[1], entry[2] = t, what
    return runs


def test_online_gc_under_concurrent_pushes(daemons, skopeo, tmp_path):
    pool = [pool_image(tmp_path / "pool", i) for i in range(POOL)]
    reg = daemons.start("distregistry", extra_config={
        "storage": {"maintenance": {"gc": {"enabled": True, "interval": f"{INTERVAL}s",
                                           "graceperiod": f"{GRACE}s"}}}})
    began = time.time()
    workers = [Worker(k, reg, skopeo, pool, began + DURATION) for k in range(WORKERS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(DURATION + 300)
    ended = time.time()
    for w in workers:
        assert w.error is None, f"{w.repo}: {w.error!r}\n{reg.log_tail(40)}"
    assert ended - began >= DURATION

    runs = gc_runs(reg.log_text())
    during = {n: r for n, r in runs.items() if r[0] is not None and r[0] < ended}
    pushes = [p for w in workers for p in w.pushes]
    overlapping = sum(1 for start, end, _ in during.values()
                      if end is not None and any(s < end and e > start for s, e in pushes))
    deleted = sum(int(m.group(1)) for *_, what in during.values()
                  for m in [re.search(r"(\d+) blobs deleted", what)] if m)
    counts = {k: sum(w.counts[k] for w in workers) for k in ("push", "retag", "delete")}
    report(f"online GC stress: {ended - began:.0f} s, {WORKERS} clients, {counts['push']} pushes, "
           f"{counts['retag']} re-tags, {counts['delete']} deletes; {len(during)} GC runs, "
           f"{overlapping} overlapped pushes, {deleted} blobs deleted while serving")
    assert len(during) >= 10
    assert overlapping >= 5
    assert deleted > 0, "GC never reclaimed anything while the clients ran"
    assert "garbage collection run failed" not in reg.log_text()

    # Every kept image pulls byte-identical (one pull per distinct image; every tag resolves).
    for w in workers:
        pulled = set()
        for tag, i in sorted(w.tags.items()):
            r = reg.request("HEAD", f"/v2/{w.repo}/manifests/{tag}", headers={"Accept": MT_OCI_MANIFEST})
            assert r.status == 200 and r.header("Docker-Content-Digest") == pool[i].digest, (w.repo, tag)
            if i in pulled:
                continue
            pulled.add(i)
            dest = tmp_path / "pulled" / w.repo.replace("/", "_") / tag
            skopeo.copy(reg.docker_ref(w.repo, tag), f"oci:{dest}:{tag}")
            assert summarize_layout(dest, tag) == pool[i].summary(), (w.repo, tag)

    # Reclaimed: once the grace period has passed, a run leaves exactly the kept images' blobs.
    settle = time.time() + GRACE + 0.5
    deadline = settle + 60
    while True:
        finished = [r for r in gc_runs(reg.log_text()).values() if r[0] and r[0] > settle and r[1]]
        if finished or time.time() > deadline:
            break
        time.sleep(0.5)
    assert finished, "no GC run after the grace period"
    kept = {d for w in workers for i in set(w.tags.values()) for d in (pool[i].digest, *pool[i].blobs())}
    assert gch.stored_blobs(reg.root) == kept
