"""The ``storage.gcs`` and ``storage.azure`` sections: registry:2's keys, defaults, errors."""

import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from distregistry.config import Config, ConfigError
from support import emulators


def parse(text, env=None):
    return Config.parse("version: 0.1\n" + text, "config.yml", env or {})


def error(text, env=None):
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return str(info.value)


@pytest.fixture(scope="module")
def service_account():
    return emulators.service_account()


def test_gcs_defaults():
    cfg = parse("storage: {gcs: {bucket: b}}")
    assert cfg.storage.driver == "gcs"
    assert cfg.storage.parameters == {"bucket": "b", "credentials": None, "rootdirectory": "",
                                      "chunksize": 16 << 20, "maxconcurrency": 50}


def test_gcs_from_the_environment():
    cfg = parse("storage: inmemory", {"REGISTRY_STORAGE": "gcs", "REGISTRY_STORAGE_GCS_BUCKET": "b",
                                      "REGISTRY_STORAGE_GCS_CHUNKSIZE": "524288",
                                      "REGISTRY_STORAGE_GCS_ROOTDIRECTORY": "/r"})
    assert cfg.storage.parameters["chunksize"] == 512 << 10
    assert cfg.storage.parameters["rootdirectory"] == "/r"


@pytest.mark.parametrize("text, message", [
    ("storage: gcs", "storage.gcs.bucket: required"),
    ("storage: {gcs: {bucket: b, chunksize: 1000}}", "storage.gcs.chunksize: must be a positive multiple of 262144"),
    ("storage: {gcs: {bucket: b, chunksize: abc}}", "storage.gcs.chunksize: expected an integer"),
    ("storage: {gcs: {bucket: b, keyfile: /nonexistent.json}}", "storage.gcs.keyfile: cannot read"),
    ("storage: {gcs: {bucket: b, credentials: {type: authorized_user}}}",
     "storage.gcs.credentials: expected a service account key"),
    ("storage: {gcs: {bucket: b, credentials: {type: service_account, client_email: e}}}",
     "storage.gcs.credentials: missing private_key"),
])
def test_gcs_errors_name_the_key(text, message):
    assert message in error(text)


def test_gcs_maxconcurrency_minimum_is_25():
    assert parse("storage: {gcs: {bucket: b, maxconcurrency: 3}}").storage.parameters["maxconcurrency"] == 25


def test_gcs_keyfile_and_credentials(tmp_path, service_account):
    info, key = service_account
    keyfile = tmp_path / "key.json"
    keyfile.write_text(json.dumps(info))
    cfg = parse(f"storage: {{gcs: {{bucket: b, keyfile: {keyfile}}}}}")
    assert cfg.storage.parameters["credentials"] == info
    cfg = Config.parse({"version": "0.1", "storage": {"gcs": {"bucket": "b", "credentials": info}}}, "config.yml", {})
    assert cfg.storage.parameters["credentials"] == info
    both = {"version": "0.1", "storage": {"gcs": {"bucket": "b", "keyfile": str(keyfile), "credentials": info}}}
    with pytest.raises(ConfigError, match="storage.gcs: set keyfile or credentials, not both"):
        Config.parse(both, "config.yml", {})


def test_gcs_token_is_a_self_signed_jwt_for_storage(service_account):
    from google.auth import jwt

    from distregistry.storage.driver.gcs import JWT_AUDIENCE, _JWTToken

    info, key = service_account
    token = _JWTToken(info)
    value = token.header()
    assert value.startswith("Bearer ")
    # Kept for about its hour, not signed again for every request.
    assert time.time() + 3000 < token._expires < time.time() + 3700
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    claims = jwt.decode(value[7:], certs={"k1": public}, audience=JWT_AUDIENCE)
    assert claims["iss"] == claims["sub"] == info["client_email"]


def test_azure_defaults():
    cfg = parse("storage: {azure: {accountname: acct, accountkey: a2V5, container: c}}")
    assert cfg.storage.driver == "azure"
    assert cfg.storage.parameters == {"accountname": "acct", "accountkey": "a2V5", "container": "c",
                                      "realm": "core.windows.net", "serviceurl": None, "rootdirectory": ""}


@pytest.mark.parametrize("text, message", [
    ("storage: {azure: {accountkey: k, container: c}}", "storage.azure.accountname: required"),
    ("storage: {azure: {accountname: a, accountkey: k}}", "storage.azure.container: required"),
    ("storage: {azure: {accountname: a, container: c}}",
     "storage.azure.accountkey: required (Azure AD credentials are not supported yet)"),
    ("storage: {azure: {accountname: a, accountkey: k, container: c, credentials: {type: client_secret}}}",
     "storage.azure.credentials: not supported yet"),
    ("storage: {azure: {accountname: a, accountkey: k, container: c, connectionstring: x}}",
     "storage.azure.connectionstring: not supported yet"),
])
def test_azure_errors_name_the_key(text, message):
    assert message in error(text)


def test_azure_retry_keys_are_warned_about():
    cfg = parse("storage: {azure: {accountname: a, accountkey: k, container: c, max_retries: 3}}")
    assert any("storage.azure.max_retries: ignored" in w for w in cfg.warnings)
