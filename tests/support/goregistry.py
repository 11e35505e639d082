"""Helpers around the Go reference registry (Debian ``docker-registry`` 2.8.2) and the on-disk
layout both implementations share (``<root>/docker/registry/v2/...``)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .daemon import GO_REGISTRY_BIN, Daemon

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def go_available() -> bool:
    return os.access(GO_REGISTRY_BIN, os.X_OK)


requires_go = pytest.mark.skipif(not go_available(), reason=f"{GO_REGISTRY_BIN} not installed")


def go_version() -> str:
    out = subprocess.run([GO_REGISTRY_BIN, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


@dataclass
class GCResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def eligible_blobs(self) -> set[str]:
        """Digests the Go GC reports as eligible for deletion."""
        return set(re.findall(r"blob eligible for deletion: (sha256:[0-9a-f]{64})", self.stdout))

    @property
    def marked(self) -> set[str]:
        return set(re.findall(r"marking (?:manifest|blob) (sha256:[0-9a-f]{64})", self.stdout))


def garbage_collect(daemon: Daemon, dry_run: bool = True, delete_untagged: bool = False) -> GCResult:
    """Run ``docker-registry garbage-collect`` with ``daemon``'s config (daemon must be stopped,
    its config.yml must exist, i.e. it was started at least once)."""
    assert not daemon.running, "stop the registry before running garbage-collect"
    cmd = [GO_REGISTRY_BIN, "garbage-collect", str(daemon.config_path)]
    if dry_run:
        cmd.append("--dry-run")
    if delete_untagged:
        cmd.append("--delete-untagged")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=daemon.cwd)
    return GCResult(p.returncode, p.stdout, p.stderr)


# ---------------------------------------------------------------------------- on-disk layout
def v2_root(root: Path) -> Path:
    return Path(root) / "docker" / "registry" / "v2"


def repo_dir(root: Path, repo: str) -> Path:
    return v2_root(root) / "repositories" / repo


def blob_data_path(root: Path, digest: str) -> Path:
    alg, hexpart = digest.split(":", 1)
    return v2_root(root) / "blobs" / alg / hexpart[:2] / hexpart / "data"


def layer_link(root: Path, repo: str, digest: str) -> Path:
    alg, hexpart = digest.split(":", 1)
    return repo_dir(root, repo) / "_layers" / alg / hexpart / "link"


def revision_link(root: Path, repo: str, digest: str) -> Path:
    alg, hexpart = digest.split(":", 1)
    return repo_dir(root, repo) / "_manifests" / "revisions" / alg / hexpart / "link"


def tag_current_link(root: Path, repo: str, tag: str) -> Path:
    return repo_dir(root, repo) / "_manifests" / "tags" / tag / "current" / "link"


def tag_index_link(root: Path, repo: str, tag: str, digest: str) -> Path:
    alg, hexpart = digest.split(":", 1)
    return repo_dir(root, repo) / "_manifests" / "tags" / tag / "index" / alg / hexpart / "link"


def read_link(path: Path) -> str:
    """Read a link file and check it is exactly a digest: 71 bytes, no newline/whitespace."""
    data = Path(path).read_bytes()
    assert len(data) == 71, f"{path}: link file is {len(data)} bytes, expected 71: {data!r}"
    text = data.decode("ascii")
    assert DIGEST_RE.match(text), f"{path}: not a bare sha256 digest: {data!r}"
    return text


def tree(root: Path) -> list[str]:
    """Sorted relative paths of all files under ``root`` (for failure messages / comparisons)."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
