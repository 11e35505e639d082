"""The azure driver against a real Azurite the module starts (Blob REST API, Shared Key)."""

import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor

from distregistry.storage.driver import factory
from distregistry.storage.driver import azure
from distregistry.storage.driver.azure import BLOCK_SIZE, AzureDriver
from distregistry.storage.driver.httpclient import HTTPPool, HTTPStatusError
from driver_suite import DriverSuite, _failure, _read_all
from support import emulators

pytestmark = pytest.mark.skipif(not emulators.AZURITE.exists(), reason="Azurite not installed (scripts/test installs it)")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    emu = emulators.start_azurite(tmp_path_factory.mktemp("azurite"))
    yield emu
    emu.stop()


def make_driver(azurite, container=None, key=emulators.AZURITE_KEY, rootdirectory=""):
    return AzureDriver(emulators.AZURITE_ACCOUNT, key, container or f"c{uuid.uuid4().hex}",
                       serviceurl=azurite.serviceurl, rootdirectory=rootdirectory)


@pytest.fixture
def driver_factory(azurite):
    # A new container per driver: every test starts empty.
    return lambda: make_driver(azurite, rootdirectory="/registry/root/")


class TestAzureDriver(DriverSuite):
    redirects = True
    object_store = True


@pytest.fixture
def driver(azurite):
    d = make_driver(azurite)
    yield d
    pytest_twisted.blockon(d.close())


async def test_wrong_key_is_refused(azurite):
    # Azurite checks Shared Key signatures: a request signed with another key must fail.
    d = make_driver(azurite, key="AAAA" + emulators.AZURITE_KEY[4:])
    try:
        e = await _failure(d.put_content("/x", b"y"))
        assert isinstance(e, HTTPStatusError) and e.status == 403
    finally:
        await d.close()


async def test_keys_are_registry2_layout(azurite):
    container = f"c{uuid.uuid4().hex}"
    d = make_driver(azurite, container=container, rootdirectory="/some/root")
    plain = make_driver(azurite, container=container)
    try:
        await d.put_content("/docker/registry/v2/blobs/sha256/ab/abcd/data", b"blob")
        assert await plain.get_content("/some/root/docker/registry/v2/blobs/sha256/ab/abcd/data") == b"blob"
    finally:
        await d.close()
        await plain.close()


async def test_append_across_drivers_keeps_blocks(driver, azurite):
    # An upload resumed by another replica: a second driver appends to what the first closed.
    other = make_driver(azurite, container=driver._container)
    try:
        data = bytes(range(256)) * (BLOCK_SIZE // 256 + 100)  # more than one block
        w = await driver.writer("/up/data")
        await w.write(data[:BLOCK_SIZE + 5])
        await w.close()
        w = await other.writer("/up/data", append=True)
        assert w.size == BLOCK_SIZE + 5
        await w.write(data[BLOCK_SIZE + 5:])
        await w.close()
        assert await _read_all(driver, "/up/data") == data
        # Two writers staged three blocks and the second committed all of them: nothing re-sent.
        response, body = await driver._call("GET", driver._key("/up/data"), {"comp": "blocklist"})
        assert body.count(b"<Block>") == 3
    finally:
        await other.close()


async def test_append_to_put_content_file(driver):
    await driver.put_content("/p", b"start:")  # one Put Blob, no blocks
    w = await driver.writer("/p", append=True)
    await w.write(b"more")
    await w.commit()
    assert await driver.get_content("/p") == b"start:more"


async def test_redirect_url_is_a_working_read_only_sas(driver):
    await driver.put_content("/blob", b"content")
    url = await driver.redirect_url("GET", "/blob")
    client = HTTPPool(reactor)  # unauthenticated: only the URL's signature lets it in
    try:
        response, body = await client.request("GET", url)
        assert response.code == 200 and body == b"content"
        response, _ = await client.request("HEAD", url)
        assert response.code == 200
        # Read-only: the same signature does not allow writing.
        response, _ = await client.request("PUT", url, headers={"x-ms-blob-type": "BlockBlob"}, data=b"x")
        assert response.code == 403
        response, _ = await client.request("GET", url.replace("sig=", "sig=A"))
        assert response.code == 403
    finally:
        await client.close()
    assert await driver.redirect_url("PUT", "/blob") is None
    assert await driver.get_content("/blob") == b"content"


async def test_factory_builds_azure(azurite):
    d = factory.create("azure", {"accountname": emulators.AZURITE_ACCOUNT, "accountkey": emulators.AZURITE_KEY,
                                 "container": f"c{uuid.uuid4().hex}", "realm": "core.windows.net",
                                 "serviceurl": azurite.serviceurl, "rootdirectory": ""})
    try:
        assert isinstance(d, AzureDriver)
        await d.put_content("/a", b"x")
        assert await d.get_content("/a") == b"x"
    finally:
        await d.close()


async def test_listings_page_through_markers(driver, monkeypatch):
    # Azurite pages like Azure once maxresults is small: list, walk and a tree delete must follow NextMarker.
    monkeypatch.setattr(azure, "LIST_PAGE", 7)
    paths = sorted(f"/many/{i:03d}" for i in range(30))
    for p in paths:
        await driver.put_content(p, b"x")
    objects, _, marker = await driver._list_page(driver._dir_prefix("/many"), "/", None)
    assert len(objects) == 7 and marker  # it did page
    assert await driver.list("/many") == paths
    seen = []
    await driver.walk("/", lambda info: seen.append(info.path))
    assert seen == ["/many"] + paths
    await driver.delete("/many")
    assert await driver.list("/") == []
