"""End-to-end on the cloud drivers: distregistry as a process on Azurite (azure) and on
gcp-storage-emulator (gcs), configured through registry:2's environment overrides; skopeo
pushes and pulls a multi-layer image of more than 50 MiB, and the azure blob redirect is
followed by a plain client."""

import json
import time
import urllib.request
import uuid

import pytest

from support import emulators, report
from support.images import summarize_layout

pytestmark = pytest.mark.e2e

BUCKET = "distregistry-e2e"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if not emulators.AZURITE.exists():
        pytest.skip("Azurite not installed (scripts/test installs it)")
    emu = emulators.start_azurite(tmp_path_factory.mktemp("azurite-e2e"))
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    emu = emulators.start_gcs(tmp_path_factory.mktemp("gcs-e2e"), BUCKET)
    yield emu
    emu.stop()


def azure_env(azurite, redirect=True):
    return {
        "REGISTRY_STORAGE": "azure",
        "REGISTRY_STORAGE_AZURE_ACCOUNTNAME": emulators.AZURITE_ACCOUNT,
        "REGISTRY_STORAGE_AZURE_ACCOUNTKEY": emulators.AZURITE_KEY,
        "REGISTRY_STORAGE_AZURE_CONTAINER": f"e2e{uuid.uuid4().hex[:12]}",
        "REGISTRY_STORAGE_AZURE_SERVICEURL": azurite.serviceurl,
        "REGISTRY_STORAGE_AZURE_ROOTDIRECTORY": "/registry",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_STORAGE_REDIRECT_DISABLE": "false" if redirect else "true",
    }


def gcs_env(gcs):
    return {
        "REGISTRY_STORAGE": "gcs",
        "REGISTRY_STORAGE_GCS_BUCKET": BUCKET,
        "REGISTRY_STORAGE_GCS_ROOTDIRECTORY": f"/e2e/{uuid.uuid4().hex}",
        "REGISTRY_STORAGE_GCS_CHUNKSIZE": str(4 << 20),
        "STORAGE_EMULATOR_HOST": gcs.endpoint.split("//")[1],
    }


def roundtrip(reg, skopeo, img, tmp_path, label):
    total = sum(img.blobs().values())
    assert total >= 50 << 20 and len(img.layers) > 1
    dest = reg.docker_ref("e2e/big", "v1")
    t0 = time.monotonic()
    skopeo.copy(img.ref, dest)
    t_push = time.monotonic() - t0
    t0 = time.monotonic()
    skopeo.copy(dest, f"oci:{tmp_path / 'pulled'}:v1")
    t_pull = time.monotonic() - t0
    report(f"skopeo[{label}] big image {total / 2**20:.1f} MiB: push {t_push:.2f}s, pull {t_pull:.2f}s, "
           f"daemon peak RSS {reg.vmhwm_kib() / 1024:.0f} MiB")
    pulled = summarize_layout(tmp_path / "pulled", "v1")
    assert pulled == img.summary()
    assert (tmp_path / "pulled" / "blobs" / "sha256" / img.digest[7:]).read_bytes() == img.manifest_bytes


def test_skopeo_roundtrip_azure_with_redirects(daemons, azurite, skopeo, e2e_images, tmp_path):
    reg = daemons.start("distregistry", env=azure_env(azurite), name="azure")
    roundtrip(reg, skopeo, e2e_images.big, tmp_path, "azure, pulled through 307s to SAS URLs")
    digest, size = max(e2e_images.big.blobs().items(), key=lambda kv: kv[1])
    r = reg.request("GET", f"/v2/e2e/big/blobs/{digest}")
    assert r.status == 307
    location = r.header("Location")
    assert location.startswith(azurite.serviceurl) and "sig=" in location
    with urllib.request.urlopen(location) as f:  # no credentials: the URL carries the signature
        assert len(f.read()) == size
    assert reg.request("HEAD", f"/v2/e2e/big/blobs/{digest}").status == 307


def test_skopeo_roundtrip_azure_without_redirects(daemons, azurite, skopeo, e2e_images, tmp_path):
    reg = daemons.start("distregistry", env=azure_env(azurite, redirect=False), name="azure-noredirect")
    roundtrip(reg, skopeo, e2e_images.big, tmp_path, "azure, streamed by distregistry")
    digest, size = max(e2e_images.big.blobs().items(), key=lambda kv: kv[1])
    r = reg.request("GET", f"/v2/e2e/big/blobs/{digest}")
    assert r.status == 200 and len(r.body) == size


def test_skopeo_roundtrip_gcs(daemons, gcs, skopeo, e2e_images, tmp_path):
    reg = daemons.start("distregistry", env=gcs_env(gcs), name="gcs")
    roundtrip(reg, skopeo, e2e_images.big, tmp_path, "gcs")
    digest = next(iter(e2e_images.big.blobs()))
    assert reg.request("GET", f"/v2/e2e/big/blobs/{digest}").status == 200  # no key: no redirect


def test_skopeo_roundtrip_gcs_with_a_key_and_redirects(daemons, gcs, skopeo, e2e_images, tmp_path):
    # With a service-account key the daemon signs its requests and redirects pulls to V4
    # signed URLs; the emulator checks neither signature, so this shows the URLs lead to the
    # blobs (the signature itself is checked in test_driver_gcs).
    keyfile = tmp_path / "key.json"
    keyfile.write_text(json.dumps(emulators.service_account()[0]))
    reg = daemons.start("distregistry", env={**gcs_env(gcs), "REGISTRY_STORAGE_GCS_KEYFILE": str(keyfile)},
                        name="gcs-key")
    roundtrip(reg, skopeo, e2e_images.big, tmp_path, "gcs, pulled through 307s to signed URLs")
    digest, size = max(e2e_images.big.blobs().items(), key=lambda kv: kv[1])
    r = reg.request("GET", f"/v2/e2e/big/blobs/{digest}")
    assert r.status == 307 and "X-Goog-Signature=" in r.header("Location")
    with urllib.request.urlopen(r.header("Location")) as f:
        assert len(f.read()) == size


def test_upload_resumed_on_another_replica(daemons, azurite, gcs):
    """Two PATCHes of one upload on two processes sharing the store and http.secret."""
    import hashlib

    for label, env in (("azure", azure_env(azurite)), ("gcs", gcs_env(gcs))):
        env = {**env, "REGISTRY_HTTP_SECRET": "shared-secret"}
        a = daemons.start("distregistry", env=env, name=f"{label}-a")
        b = daemons.start("distregistry", env=env, name=f"{label}-b")
        part1, part2 = b"a" * (5 << 20) + b"1", b"b" * (3 << 20)
        digest = "sha256:" + hashlib.sha256(part1 + part2).hexdigest()
        r = a.request("POST", "/v2/resume/blobs/uploads/")
        assert r.status == 202
        r = a.request("PATCH", r.header("Location"), body=part1,
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status == 202, r.body
        r = b.request("PATCH", r.header("Location"), body=part2,
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status == 202, r.body
        assert r.header("Range") == f"0-{len(part1) + len(part2) - 1}"
        location = r.header("Location")
        r = a.request("PUT", location + ("&" if "?" in location else "?") + f"digest={digest}")
        assert r.status == 201, r.body
        r = b.request("GET", f"/v2/resume/blobs/{digest}")
        if r.status == 307:
            with urllib.request.urlopen(r.header("Location")) as f:
                body = f.read()
        else:
            assert r.status == 200
            body = r.body
        assert body == part1 + part2, label


def test_azure_1gib_blob_in_64mib_patches_keeps_memory_flat(daemons, azurite):
    """Each PATCH streams through one 4 MiB block buffer: peak RSS stays far below the blob."""
    from test_e2e_memory import MiB, RSS_LIMIT_KIB, expected_digest, push_chunked

    size = 1024 * MiB
    digest = expected_digest("azure-1g", size)
    reg = daemons.start("distregistry", env=azure_env(azurite, redirect=False), name="azure-1g")
    idle = reg.vmhwm_kib()
    elapsed = push_chunked(reg, "mem/azure", "azure-1g", digest, size)
    hwm = reg.vmhwm_kib()
    report(f"memory[azure] 1024 MiB blob in 64 MiB PATCHes: {size / MiB / elapsed:.0f} MiB/s ({elapsed:.1f}s), "
           f"VmHWM {hwm / 1024:.1f} MiB (idle {idle / 1024:.1f} MiB)")
    r = reg.request("HEAD", f"/v2/mem/azure/blobs/{digest}")
    assert r.status == 200 and int(r.header("Content-Length")) == size
    r = reg.request("GET", f"/v2/mem/azure/blobs/{digest}", headers={"Range": f"bytes={512 * MiB}-{512 * MiB + 7}"})
    assert r.status == 206 and r.body == (512).to_bytes(8, "big")
    assert hwm < RSS_LIMIT_KIB, f"peak RSS {hwm / 1024:.1f} MiB"
