"""Deterministic OCI image layouts on disk (for ``skopeo copy oci:<dir>:<tag> ...``) and a thin
skopeo wrapper.

Layers are *uncompressed* tars (``application/vnd.oci.image.layer.v1.tar``) with real tar
content; the config's ``rootfs.diff_ids`` are therefore the layer digests.  Big files are never
held in memory: tar data is generated from a seeded PRNG, hashed and written in chunks.

    img = build_image(tmp / "layout", "v1", BIG_IMAGE_LAYERS, seed=1)
    img.ref                    # "oci:/.../layout:v1"
    summarize_layout(tmp / "pulled", "v1") == img.summary()
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"

CHUNK = 1 << 20
MiB = 1 << 20
FIXED_MTIME = 1_700_000_000  # deterministic tar headers
CREATED = "2024-01-01T00:00:00Z"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------- data streams
class PRNGReader(io.RawIOBase):
    """A readable stream of ``size`` deterministic pseudo-random bytes (seeded), produced in
    1 MiB blocks so memory use stays flat."""

    def __init__(self, seed: int | str, size: int):
        self._rng = random.Random(seed)
        self._left = size
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left <= 0:
            return 0
        if self._pos >= len(self._buf):
            self._buf = self._rng.randbytes(min(CHUNK, self._left))
            self._pos = 0
        n = min(len(b), len(self._buf) - self._pos, self._left)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        self._left -= n
        return n


def counter_stream(seed: int | str, size: int, block_size: int = CHUNK) -> Iterator[bytes]:
    """Deterministic stream of ``size`` bytes: one random ``block_size`` block, repeated with
    the block counter (8 bytes, big endian) overwriting its first 8 bytes.  Cheap to produce at
    GB/s, every block is distinct, nothing is kept besides the one block."""
    block = random.Random(seed).randbytes(block_size)
    tail = block[8:]
    i = 0
    left = size
    while left > 0:
        chunk = i.to_bytes(8, "big") + tail
        if left < block_size:
            chunk = chunk[:left]
        yield chunk
        left -= len(chunk)
        i += 1


def stream_digest(chunks: Iterable[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c)
        n += len(c)
    return "sha256:" + h.hexdigest(), n


def file_digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            c = f.read(CHUNK)
            if not c:
                break
            h.update(c)
            n += len(c)
    return "sha256:" + h.hexdigest(), n


# ---------------------------------------------------------------------------- layout writer
@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict | None = None

    def to_json(self) -> dict:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = dict(self.platform)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


class _HashingWriter(io.RawIOBase):
    def __init__(self, f):
        self._f = f
        self._h = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._h.update(b)
        self._f.write(b)
        n = len(b)
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class OCILayout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.blobs = self.path / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        if not (self.path / "index.json").exists():
            self._write_index([])

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.split(":", 1)[1]

    def add_bytes(self, data: bytes, media_type: str) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        p = self.blob_path(digest)
        if not p.exists():
            p.write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def add_tar_layer(self, files: Sequence["FileSpec"], seed: int | str) -> Descriptor:
        """Write a tar layer from ``files``, streamed through sha256 into the blob dir."""
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb", buffering=CHUNK) as f:
                hw = _HashingWriter(f)
                with tarfile.open(fileobj=hw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for i, spec in enumerate(files):
                        spec.add_to(tar, f"{seed}/{i}")
                # tarfile pads to a record; hw saw every byte
            digest = hw.digest
            os.replace(tmp, self.blob_path(digest))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return Descriptor(MT_OCI_LAYER_TAR, digest, hw.size)

    def _read_index(self) -> dict:
        return json.loads((self.path / "index.json").read_text())

    def _write_index(self, manifests: list[dict]) -> None:
        idx = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": manifests}
        (self.path / "index.json").write_bytes(canonical_json(idx))

    def tag(self, desc: Descriptor, tag: str) -> None:
        """Point ``tag`` (ref.name annotation in index.json) at ``desc``."""
        manifests = [
            m for m in self._read_index()["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag
        ]
        entry = Descriptor(desc.media_type, desc.digest, desc.size, desc.platform, {REF_NAME: tag})
        manifests.append(entry.to_json())
        self._write_index(manifests)


@dataclass(frozen=True)
class FileSpec:
    """One tar member: a regular file of ``size`` random bytes, a directory, or a symlink."""

    name: str
    size: int = 0
    kind: str = "file"  # file | dir | symlink
    target: str = ""
    mode: int = 0o644

    def add_to(self, tar: tarfile.TarFile, seed: str) -> None:
        ti = tarfile.TarInfo(self.name)
        ti.mtime = FIXED_MTIME
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        if self.kind == "dir":
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tar.addfile(ti)
        elif self.kind == "symlink":
            ti.type = tarfile.SYMTYPE
            ti.linkname = self.target
            ti.mode = 0o777
            tar.addfile(ti)
        else:
            ti.mode = self.mode
            ti.size = self.size
            tar.addfile(ti, io.BufferedReader(PRNGReader(f"{seed}/{self.name}", self.size), CHUNK))


def layer(*files: FileSpec) -> tuple[FileSpec, ...]:
    return tuple(files)


def files(prefix: str, count: int, size: int) -> list[FileSpec]:
    return [FileSpec(f"{prefix}/f{i:03d}.bin", size) for i in range(count)]


# A multi-layer image: 4 layers, ~56 MiB total, one layer of ~40 MiB.
BIG_IMAGE_LAYERS: tuple[tuple[FileSpec, ...], ...] = (
    layer(
        FileSpec("etc", kind="dir"),
        FileSpec("etc/os-release", 120),
        FileSpec("bin", kind="dir"),
        FileSpec("bin/sh", 4096, mode=0o755),
        FileSpec("usr/bin/sh", kind="symlink", target="/bin/sh"),
    ),
    layer(FileSpec("opt", kind="dir"), FileSpec("opt/big.bin", 40 * MiB)),
    layer(FileSpec("data", kind="dir"), *files("data", 12, 1 * MiB)),
    layer(FileSpec("app", kind="dir"), *files("app", 30, 100 * 1024), FileSpec("app/empty", 0)),
)

# Small images (a few hundred KiB) for tests that do not need volume.
SMALL_IMAGE_LAYERS: tuple[tuple[FileSpec, ...], ...] = (
    layer(FileSpec("etc", kind="dir"), FileSpec("etc/hostname", 16)),
    layer(FileSpec("srv", kind="dir"), *files("srv", 4, 64 * 1024)),
)


@dataclass
class Image:
    layout: Path
    tag: str
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    manifest_bytes: bytes
    config_bytes: bytes

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> dict[str, int]:
        return {d.digest: d.size for d in [self.config, *self.layers]}

    def summary(self) -> dict:
        return summarize_layout(self.layout, self.tag)


@dataclass
class IndexImage:
    layout: Path
    tag: str
    index: Descriptor
    index_bytes: bytes
    images: list[Image] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"

    @property
    def digest(self) -> str:
        return self.index.digest

    def summary(self) -> dict:
        return summarize_layout(self.layout, self.tag)


def _write_image(
    lay: OCILayout,
    layer_specs: Sequence[Sequence[FileSpec]],
    seed: int | str,
    arch: str,
    os_name: str,
    variant: str | None,
) -> tuple[Descriptor, Descriptor, list[Descriptor], bytes, bytes]:
    layers = [lay.add_tar_layer(spec, f"{seed}/{arch}/L{i}") for i, spec in enumerate(layer_specs)]
    config: dict[str, Any] = {
        "architecture": arch,
        "os": os_name,
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.example.seed": str(seed)},
        },
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]},
        "history": [{"created": CREATED, "created_by": f"distregistry-e2e layer {i}"} for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    config_bytes = canonical_json(config)
    cfg = lay.add_bytes(config_bytes, MT_OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": cfg.to_json(),
        "layers": [d.to_json() for d in layers],
        "annotations": {"org.opencontainers.image.created": CREATED},
    }
    manifest_bytes = canonical_json(manifest)
    man = lay.add_bytes(manifest_bytes, MT_OCI_MANIFEST)
    return man, cfg, layers, manifest_bytes, config_bytes


def build_image(
    layout: Path,
    tag: str,
    layer_specs: Sequence[Sequence[FileSpec]] = SMALL_IMAGE_LAYERS,
    seed: int | str = 0,
    arch: str = "amd64",
    os_name: str = "linux",
) -> Image:
    """Write a single-platform OCI image into the layout at ``layout`` and tag it ``tag``."""
    lay = OCILayout(layout)
    man, cfg, layers, mb, cb = _write_image(lay, layer_specs, seed, arch, os_name, None)
    lay.tag(man, tag)
    return Image(Path(layout), tag, man, cfg, layers, mb, cb)


def build_index(
    layout: Path,
    tag: str,
    platforms: Sequence[tuple[str, str, str | None]] = (("linux", "amd64", None), ("linux", "arm64", "v8")),
    layer_specs: Sequence[Sequence[FileSpec]] = SMALL_IMAGE_LAYERS,
    seed: int | str = 0,
) -> IndexImage:
    """Write a multi-arch OCI image index (one image per platform) and tag it ``tag``."""
    lay = OCILayout(layout)
    images = []
    entries = []
    for os_name, arch, variant in platforms:
        man, cfg, layers, mb, cb = _write_image(lay, layer_specs, seed, arch, os_name, variant)
        images.append(Image(Path(layout), "", man, cfg, layers, mb, cb))
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant
        entries.append(Descriptor(MT_OCI_MANIFEST, man.digest, man.size, platform).to_json())
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
    index_bytes = canonical_json(index)
    idx = lay.add_bytes(index_bytes, MT_OCI_INDEX)
    lay.tag(idx, tag)
    return IndexImage(Path(layout), tag, idx, index_bytes, images)


# ---------------------------------------------------------------------------- layout reader
def summarize_layout(layout: Path, tag: str, verify: bool = True) -> dict:
    """Resolve ``tag`` in an OCI layout and walk everything reachable from it.

    Returns ``{"top": (mediaType, digest, size), "manifests": {digest: (mediaType, size)},
    "blobs": {digest: size}}``.  With ``verify`` every blob file is re-hashed (streamed) and its
    size checked against the descriptor, so a corrupted pull cannot compare equal.
    """
    layout = Path(layout)
    idx = json.loads((layout / "index.json").read_text())
    tops = [m for m in idx["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    assert len(tops) == 1, f"{layout}: tag {tag!r} resolves to {len(tops)} entries: {idx}"
    top = tops[0]
    summary: dict[str, Any] = {
        "top": (top["mediaType"], top["digest"], top["size"]),
        "manifests": {},
        "blobs": {},
    }

    def check(desc: dict) -> Path:
        p = layout / "blobs" / desc["digest"].replace(":", "/", 1)
        assert p.is_file(), f"{layout}: blob {desc['digest']} missing"
        if verify:
            digest, size = file_digest(p)
            assert digest == desc["digest"], f"{p}: content hashes to {digest}"
            assert size == desc["size"], f"{p}: size {size} != descriptor size {desc['size']}"
        return p

    def walk(desc: dict) -> None:
        p = check(desc)
        summary["manifests"][desc["digest"]] = (desc["mediaType"], desc["size"])
        doc = json.loads(p.read_bytes())
        if desc["mediaType"] == MT_OCI_INDEX:
            for child in doc["manifests"]:
                walk(child)
        else:
            for blob in [doc["config"], *doc["layers"]]:
                check(blob)
                summary["blobs"][blob["digest"]] = blob["size"]

    walk(top)
    return summary


# ---------------------------------------------------------------------------- skopeo
SKOPEO = "/usr/bin/skopeo"


class SkopeoError(AssertionError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess):
        self.args_ = args
        self.proc = proc
        super().__init__(
            f"skopeo exited {proc.returncode}: {' '.join(args)}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}\n--- stdout ---\n{proc.stdout[-2000:]!s}"
        )


class Skopeo:
    """skopeo with a private policy/registries/auth configuration, always talking plain HTTP
    to 127.0.0.1 (``--tls-verify=false`` variants)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy = self.workdir / "policy.json"
        self.policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        self.registries_conf = self.workdir / "registries.conf"
        self.registries_conf.write_text('unqualified-search-registries = []\n')
        self.authfile = self.workdir / "auth.json"
        self.authfile.write_text('{"auths":{}}')
        self.calls: list[tuple[list[str], float]] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.registries_conf)
        env["REGISTRY_AUTH_FILE"] = str(self.authfile)
        env["TMPDIR"] = str(self.workdir)
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(k, None)
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 180, text: bool = True
    ) -> subprocess.CompletedProcess:
        """Run skopeo (``text=False``: stdout is bytes, e.g. for ``--raw``)."""
        import time

        cmd = [SKOPEO, "--policy", str(self.policy), *args]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=self.env())
        if text:
            p.stdout = p.stdout.decode(errors="replace")
        p.stderr = p.stderr.decode(errors="replace")
        self.calls.append((cmd, time.monotonic() - t0))
        if check and p.returncode != 0:
            raise SkopeoError(cmd, p)
        return p

    def copy(self, src: str, dst: str, *extra: str, all_images: bool = False, timeout: float = 180):
        """``skopeo copy`` preserving digests; oci: destinations keep uncompressed layers."""
        args = ["copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false"]
        if dst.startswith("oci:"):
            args.append("--dest-oci-accept-uncompressed-layers")
            Path(dst[4:].rsplit(":", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
        if all_images:
            args.append("--all")
        return self.run(*args, *extra, src, dst, timeout=timeout)

    def inspect(self, ref: str, *extra: str, raw: bool = False, config: bool = False, check: bool = True):
        args = ["inspect", "--tls-verify=false", *extra]
        if raw:
            args.append("--raw")
        if config:
            args.append("--config")
        p = self.run(*args, ref, check=check, text=not raw)
        if not check:
            return p
        return p.stdout if raw else json.loads(p.stdout)

    def list_tags(self, ref: str) -> list[str]:
        p = self.run("list-tags", "--tls-verify=false", ref)
        return json.loads(p.stdout)["Tags"]

    def delete(self, ref: str, check: bool = True):
        return self.run("delete", "--tls-verify=false", ref, check=check)
