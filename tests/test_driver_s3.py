"""The s3 driver against moto's S3 server (a real HTTP endpoint started by the tests)."""

import hashlib
import http.client
import itertools
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet import defer

from distregistry.config import Config
from distregistry.config.errors import ConfigError
from distregistry.storage.driver import factory
from distregistry.storage.driver.s3 import S3Driver
from driver_suite import MiB, DriverSuite, _read_all

try:
    from support.s3server import ACCESS_KEY, SECRET_KEY, MotoS3
except ImportError:
    from tests.support.s3server import ACCESS_KEY, SECRET_KEY, MotoS3


def _params(moto_s3, bucket, **extra):
    cfg = Config.parse({"version": "0.1", "storage": {"s3": moto_s3.parameters(bucket, **extra)}})
    return cfg.storage.parameters


@pytest.fixture
def driver_factory(moto_s3):
    roots = itertools.count()
    bucket = moto_s3.bucket()
    # One bucket per test, a fresh rootdirectory per driver: exercises the root prefix too.
    return lambda: S3Driver(_params(moto_s3, bucket, rootdirectory=f"/root{next(roots)}/"))


class TestS3Driver(DriverSuite):
    redirects = True
    object_store = True


@pytest.fixture
def s3(moto_s3):
    bucket = moto_s3.bucket()
    driver = S3Driver(_params(moto_s3, bucket, chunksize=5 * MiB, multipartcopythresholdsize=5 * MiB,
                              multipartcopychunksize=5 * MiB))
    driver.bucket = bucket
    yield driver
    pytest_twisted.blockon(driver.close())


async def test_keys_are_registry2_layout(moto_s3):
    bucket = moto_s3.bucket()
    driver = S3Driver(_params(moto_s3, bucket, rootdirectory="/registry/"))
    await driver.put_content("/docker/registry/v2/repositories/a/_layers/sha256/ab/link", b"sha256:ab")
    await driver.close()
    # registry:2's s3Path: the root without its slashes, then the path; the bucket's whole
    # key list, seen by a driver without a root:
    bare = S3Driver(_params(moto_s3, bucket))
    seen = []
    await bare.walk("/", lambda info: seen.append(info.path) if not info.is_dir else None)
    assert seen == ["/registry/docker/registry/v2/repositories/a/_layers/sha256/ab/link"]
    await bare.close()


async def test_multipart_append_across_drivers(s3, moto_s3):
    """Parts of 5 MiB, closed and appended by another driver instance (another replica)."""
    data = bytes(range(256)) * (MiB // 256) * 13  # 13 MiB: 2 full parts + a short last one
    w = await s3.writer("/up/data")
    await w.write(data[: 7 * MiB])
    await w.close()
    assert (await s3.stat("/up/data")).size == 7 * MiB
    other = S3Driver(_params(moto_s3, s3.bucket, chunksize=5 * MiB))
    w = await other.writer("/up/data", append=True)
    assert w.size == 7 * MiB
    await w.write(data[7 * MiB:])
    await w.commit()
    await other.close()
    got = await _read_all(s3, "/up/data", chunk=MiB)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # The first 7 MiB were copied inside S3; the reader honours offsets past the copy.
    assert await _read_all(s3, "/up/data", 7 * MiB - 3) == data[7 * MiB - 3:]
    # Less than a part appended to a big object: still a copy of it plus the short part.
    w = await s3.writer("/up/data", append=True)
    await w.write(b"tail")
    await w.close()
    assert await _read_all(s3, "/up/data", 13 * MiB - 2) == data[-2:] + b"tail"
    # Nothing appended: the object stays as it is.
    w = await s3.writer("/up/data", append=True)
    await w.close()
    assert (await s3.stat("/up/data")).size == 13 * MiB + 4


async def test_small_append_is_resent(s3):
    await s3.put_content("/small", b"abc")
    w = await s3.writer("/small", append=True)
    await w.write(b"def")
    await w.close()
    assert await s3.get_content("/small") == b"abcdef"


async def test_multipart_move(s3):
    data = bytes(range(256)) * (MiB // 256) * 12
    await s3.put_content("/src", data)
    await s3.move("/src", "/dst/data")
    assert hashlib.sha256(await _read_all(s3, "/dst/data", chunk=MiB)).digest() == hashlib.sha256(data).digest()
    assert await s3.list("/") == ["/dst"]


async def test_list_paginates(moto_s3):
    bucket = moto_s3.bucket()
    driver = S3Driver(_params(moto_s3, bucket))
    paths = sorted(f"/p/{i:05d}" for i in range(1100))
    limit = defer.DeferredSemaphore(16)
    await defer.gatherResults([limit.run(driver.put_content, p, b"") for p in paths])
    assert await driver.list("/p") == paths
    await driver.delete("/p")
    assert await driver.list("/") == []
    await driver.close()


async def test_presigned_url_is_fetchable(s3, moto_s3):
    await s3.put_content("/blob", b"presigned content")
    url = await s3.redirect_url("GET", "/blob")
    parts = urlsplit(url)
    assert "X-Amz-Signature=" in parts.query and "X-Amz-Expires=1200" in parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"{parts.path}?{parts.query}")
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"presigned content")
    conn.close()
    assert await s3.redirect_url("PUT", "/blob") is None


async def test_bad_credentials_are_a_driver_error(moto_s3):
    # moto checks nothing by default; a missing bucket gives a real S3 error response instead.
    driver = S3Driver(_params(moto_s3, "no-such-bucket"))
    with pytest.raises(Exception) as info:
        await driver.put_content("/x", b"y")
    assert "NoSuchBucket" in str(info.value)
    await driver.close()


async def test_factory_builds_s3(moto_s3):
    bucket = moto_s3.bucket()
    driver = factory.create("s3", _params(moto_s3, bucket))
    assert isinstance(driver, S3Driver)
    await driver.put_content("/a", b"x")
    assert await driver.get_content("/a") == b"x"
    await driver.close()


def test_config_defaults_and_errors():
    base = {"bucket": "b", "region": "eu-west-1"}
    p = Config.parse({"version": "0.1", "storage": {"s3": base}}).storage.parameters
    assert (p["chunksize"], p["multipartcopychunksize"], p["multipartcopythresholdsize"]) == (10 * MiB, 32 * MiB, 32 * MiB)
    assert (p["secure"], p["forcepathstyle"], p["storageclass"], p["rootdirectory"]) == (True, False, "STANDARD", "")
    p = Config.parse({"version": "0.1", "storage": {"s3aws": {**base, "chunksize": "6291456", "secure": "false",
                                                              "storageclass": "reduced_redundancy"}}}).storage.parameters
    assert (p["chunksize"], p["secure"], p["storageclass"]) == (6 * MiB, False, "REDUCED_REDUNDANCY")
    for bad, where in [
        ({"region": "x"}, "storage.s3.bucket"),
        ({"bucket": "b"}, "storage.s3.region"),
        ({**base, "chunksize": 1024}, "storage.s3.chunksize"),
        ({**base, "storageclass": "COLD"}, "storage.s3.storageclass"),
        ({**base, "keyid": "k"}, "storage.s3.keyid"),
        ({**base, "accelerate": True}, "storage.s3.accelerate"),
    ]:
        with pytest.raises(ConfigError) as info:
            Config.parse({"version": "0.1", "storage": {"s3": bad}})
        assert where in str(info.value)


async def test_credentials_from_the_environment(moto_s3):
    p = dict(_params(moto_s3, "b"), accesskey="", secretkey="")
    driver = S3Driver(p, environ={"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    assert driver._credentials.access_key == ACCESS_KEY
    await driver.close()


@pytest.fixture
def moto_tls(tmp_path):
    server = MotoS3(tmp_path / "moto-tls", tls=True).start()
    yield server
    server.stop()


async def test_https_endpoint_verified_unless_skipverify(moto_tls):
    bucket = moto_tls.bucket()
    # Over TLS the payload goes unsigned (UNSIGNED-PAYLOAD), a 6 MiB part included.
    driver = S3Driver(_params(moto_tls, bucket, skipverify=True, chunksize=5 * MiB))
    w = await driver.writer("/tls/data")
    await w.write(b"x" * (6 * MiB))
    await w.commit()
    assert (await driver.stat("/tls/data")).size == 6 * MiB
    await driver.close()
    # moto's certificate is self-signed: refused when verified.
    strict = S3Driver(_params(moto_tls, bucket))
    with pytest.raises(Exception) as info:
        await strict.get_content("/tls/data")
    assert "certificate" in repr(info.value).lower() or "SSL" in repr(info.value)
    await strict.close()


async def test_credentials_from_botocore_chain(moto_s3, tmp_path, monkeypatch):
    # Neither keys in the config nor AWS_* variables: botocore's chain (here a credentials
    # file) is asked, in a thread.
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    driver = S3Driver(dict(_params(moto_s3, moto_s3.bucket()), accesskey="", secretkey=""), environ={})
    assert driver._credentials is None
    await driver.put_content("/chain", b"ok")
    url = await driver.redirect_url("GET", "/chain")
    assert f"X-Amz-Credential={ACCESS_KEY}" in url
    await driver.close()
