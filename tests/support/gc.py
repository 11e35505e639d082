"""Helpers for the garbage-collection tests: run distregistry's command, push referrers over
the raw API, and compare storage trees before and after."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .daemon import REPO_ROOT, Daemon
from .goregistry import v2_root

MT_EMPTY = "application/vnd.oci.empty.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = r"sha256:[0-9a-f]{64}"


def run_gc(config_path: Path, *flags: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``distregistry garbage-collect FLAGS CONFIG`` from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    cmd = [sys.executable, "-m", "distregistry", "garbage-collect", *flags, str(config_path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def eligible(stdout: str) -> dict[str, set]:
    """What a run's output lists: blob digests, (repo, manifest digest), (repo, layer link)."""
    return {
        "blobs": set(re.findall(rf"^blob eligible for deletion: ({DIGEST})$", stdout, re.M)),
        "manifests": set(re.findall(rf"^manifest eligible for deletion: \{{(\S+) ({DIGEST})[ \]]", stdout, re.M)),
        "layers": set(re.findall(rf"^(\S+): layer link eligible for deletion: ({DIGEST})$", stdout, re.M)),
    }


def stored_blobs(root: Path) -> set[str]:
    base = v2_root(root) / "blobs" / "sha256"
    return {"sha256:" + p.parent.name for p in base.glob("*/*/data")} if base.exists() else set()


def revisions(root: Path) -> set[tuple[str, str]]:
    repos = v2_root(root) / "repositories"
    out = set()
    for link in repos.rglob("_manifests/revisions/sha256/*/link"):
        repo = str(link.parents[4].relative_to(repos))
        out.add((repo, "sha256:" + link.parent.name))
    return out


def layer_links(root: Path) -> set[tuple[str, str]]:
    repos = v2_root(root) / "repositories"
    out = set()
    for link in repos.rglob("_layers/sha256/*/link"):
        out.add((str(link.parents[3].relative_to(repos)), "sha256:" + link.parent.name))
    return out


def state(root: Path) -> dict[str, set]:
    return {"blobs": stored_blobs(root), "manifests": revisions(root), "layers": layer_links(root)}


def upload_blob(daemon: Daemon, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = daemon.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, (r.status, r.body)
    sep = "&" if "?" in r.header("Location") else "?"
    r = daemon.request("PUT", f"{r.header('Location')}{sep}digest={digest}", body=data,
                       headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    assert r.status == 201, (r.status, r.body)
    return digest


def push_referrer(daemon: Daemon, repo: str, subject: dict, name: str, tag: str | None = None) -> str:
    """An OCI artifact (a "signature") whose ``subject`` is *subject* (mediaType/digest/size)."""
    empty = upload_blob(daemon, repo, b"{}")
    payload_bytes = f"signature {name}".encode()
    payload = upload_blob(daemon, repo, payload_bytes)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": MT_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sig.v1", "digest": payload, "size": len(payload_bytes)}],
        "subject": subject,
    }, sort_keys=True).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    r = daemon.request("PUT", f"/v2/{repo}/manifests/{tag or digest}", body=manifest,
                       headers={"Content-Type": MT_OCI_MANIFEST, "Content-Length": str(len(manifest))})
    assert r.status == 201, (r.status, r.body)
    return digest
