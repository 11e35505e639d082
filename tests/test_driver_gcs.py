"""The gcs driver against a real gcp-storage-emulator the module starts (JSON API)."""

import hashlib
import uuid
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import pytest_twisted
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from twisted.internet import reactor

from distregistry.storage.driver.gcs import CHUNK_UNIT, GCSDriver, _JWTToken, from_parameters
from distregistry.storage.driver.httpclient import HTTPPool
from driver_suite import DriverSuite, _read_all
from support import emulators

BUCKET = "distregistry-test"
EMULATOR_CONCURRENCY = 4


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    emu = emulators.start_gcs(tmp_path_factory.mktemp("gcs"), BUCKET)
    yield emu
    emu.stop()


def make_driver(gcs, rootdirectory=None, chunksize=4 * CHUNK_UNIT):
    # A small chunk size, so the suite's writes cross many resumable-upload chunks.
    # The emulator serves one request at a time with a listen backlog of 5.
    return GCSDriver(BUCKET, rootdirectory=rootdirectory or f"/t/{uuid.uuid4().hex}/", chunksize=chunksize,
                     endpoint=gcs.endpoint, maxconcurrency=EMULATOR_CONCURRENCY)


@pytest.fixture
def driver_factory(gcs):
    # A new root directory per driver: every test starts empty.
    return lambda: make_driver(gcs)


class TestGCSDriver(DriverSuite):
    object_store = True


@pytest.fixture
def driver(gcs):
    d = make_driver(gcs)
    yield d
    pytest_twisted.blockon(d.close())


async def test_keys_are_registry2_layout(gcs):
    root = f"some/{uuid.uuid4().hex}"
    d = make_driver(gcs, rootdirectory=root)
    plain = make_driver(gcs, rootdirectory="/")
    try:
        await d.put_content("/docker/registry/v2/blobs/sha256/ab/abcd/data", b"blob")
        assert await plain.get_content(f"/{root}/docker/registry/v2/blobs/sha256/ab/abcd/data") == b"blob"
    finally:
        await d.close()
        await plain.close()


async def test_append_across_drivers(driver, gcs):
    # An upload resumed by another replica: a second driver appends to what the first closed,
    # the new part is composed onto the file and removed.
    other = make_driver(gcs, rootdirectory=driver._root, chunksize=CHUNK_UNIT)
    try:
        data = bytes(range(256)) * (3 * CHUNK_UNIT // 256 + 7)
        w = await driver.writer("/up/data")
        await w.write(data[: CHUNK_UNIT + 3])
        await w.close()
        w = await other.writer("/up/data", append=True)
        assert w.size == CHUNK_UNIT + 3
        await w.write(data[CHUNK_UNIT + 3:])
        await w.close()
        assert await _read_all(driver, "/up/data") == data
        assert await driver.list("/up") == ["/up/data"]
    finally:
        await other.close()


async def test_redirects_need_a_key(driver):
    await driver.put_content("/blob", b"x")
    assert await driver.redirect_url("GET", "/blob") is None


async def test_redirect_is_a_v4_signed_url(gcs):
    info, key = emulators.service_account()
    d = GCSDriver(BUCKET, token=_JWTToken(info), rootdirectory=f"/s/{uuid.uuid4().hex}", endpoint=gcs.endpoint,
                  maxconcurrency=EMULATOR_CONCURRENCY)
    client = HTTPPool(reactor, persistent=False)
    try:
        await d.put_content("/blob", b"signed content")
        assert await d.redirect_url("PUT", "/blob") is None
        url = await d.redirect_url("GET", "/blob")
        # The emulator serves the URL (it checks no signature) ...
        response, body = await client.request("GET", url)
        assert response.code == 200 and body == b"signed content"
        # ... so the signature is checked here, with the key's public half, over the string
        # to sign that the V4 documentation defines.
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        signature = bytes.fromhex(params.pop("X-Goog-Signature"))
        assert params["X-Goog-Expires"] == "1200"
        assert params["X-Goog-Credential"].startswith(info["client_email"] + "/")
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()))
        canonical = f"GET\n{parts.path}\n{query}\nhost:{parts.netloc}\n\nhost\nUNSIGNED-PAYLOAD"
        scope = params["X-Goog-Credential"].split("/", 1)[1]
        to_sign = "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key.public_key().verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
        assert parts.path.endswith(d._key("/blob"))
    finally:
        await client.close()
        await d.close()


async def test_factory_builds_gcs(gcs):
    d = from_parameters({"bucket": BUCKET, "credentials": None, "rootdirectory": f"/f/{uuid.uuid4().hex}",
                         "chunksize": 16 << 20, "maxconcurrency": EMULATOR_CONCURRENCY}, None,
                        {"STORAGE_EMULATOR_HOST": gcs.endpoint.split("//")[1]})
    try:
        await d.put_content("/a", b"x")
        assert await d.get_content("/a") == b"x"
    finally:
        await d.close()
