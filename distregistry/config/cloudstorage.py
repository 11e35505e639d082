"""Parameters of the ``storage.gcs`` and ``storage.azure`` drivers (registry:2's keys and
defaults: gcs/gcs.go, azure/parser.go). Errors name the key; the values go to the factory."""

import json

# gcs (registry/storage/driver/gcs/gcs.go)
GCS_DEFAULT_CHUNK_SIZE = 16 << 20
GCS_CHUNK_UNIT = 256 << 10
GCS_DEFAULT_MAX_CONCURRENCY = 50
# The service-account fields a key must have to sign with.
_SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key")

AZURE_DEFAULT_REALM = "core.windows.net"


def _required_str(node):
    value = node.as_str("")
    if not value:
        raise node.error("required")
    return value


def _int_or_string(node, default):
    """registry:2 reads sizes as an integer or a string holding one."""
    if isinstance(node.value, str):
        try:
            return int(node.value, 0)
        except ValueError:
            raise node.error(f"expected an integer, got {node.value!r}") from None
    return node.as_int(default)


def _service_account(node, info):
    if not isinstance(info, dict) or info.get("type", "service_account") != "service_account":
        raise node.error("expected a service account key (type: service_account)")
    missing = [f for f in _SERVICE_ACCOUNT_FIELDS if not info.get(f)]
    if missing:
        raise node.error(f"missing {', '.join(missing)}")
    return info


def gcs(node):
    keyfile = node["keyfile"].as_str("")
    credentials = node["credentials"]
    if keyfile and credentials.value:
        raise node.error("set keyfile or credentials, not both")
    if keyfile:
        # Read now, so a bad key stops start-up naming the key instead of failing the first request.
        try:
            with open(keyfile, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as e:
            raise node["keyfile"].error(f"cannot read the service account key: {e}") from None
        info = _service_account(node["keyfile"], info)
    elif credentials.value:
        info = _service_account(credentials, credentials.as_mapping())
    else:
        info = None
    chunk = node["chunksize"]
    chunksize = _int_or_string(chunk, GCS_DEFAULT_CHUNK_SIZE)
    if chunksize < GCS_CHUNK_UNIT or chunksize % GCS_CHUNK_UNIT:
        raise chunk.error(f"must be a positive multiple of {GCS_CHUNK_UNIT}, got {chunksize}")
    # registry:2's minimum is 25: lower values read as 25, as there.
    maxconcurrency = max(_int_or_string(node["maxconcurrency"], GCS_DEFAULT_MAX_CONCURRENCY), 25)
    return {
        "bucket": _required_str(node["bucket"]),
        "credentials": info,
        "rootdirectory": node["rootdirectory"].as_str(""),
        "chunksize": chunksize,
        "maxconcurrency": maxconcurrency,
    }


def azure(node):
    for key in ("credentials", "connectionstring", "skipverify"):
        if node[key].value:
            raise node[key].not_supported()
    for key in ("max_retries", "retry_delay"):
        if node[key].value is not None:
            node[key].warn("ignored: a request whose connection fails is tried up to 4 times with back-off (an error status is not retried)")
    accountkey = node["accountkey"]
    if not accountkey.as_str(""):
        # registry:2 would then use Azure AD default credentials.
        raise accountkey.error("required (Azure AD credentials are not supported yet)")
    return {
        "accountname": _required_str(node["accountname"]),
        "accountkey": accountkey.as_str(""),
        "container": _required_str(node["container"]),
        "realm": node["realm"].as_str(AZURE_DEFAULT_REALM) or AZURE_DEFAULT_REALM,
        "serviceurl": node["serviceurl"].as_str("") or None,
        "rootdirectory": node["rootdirectory"].as_str(""),
    }
