"""``storage.s3`` (also ``storage.s3aws``): registry:2's S3 driver parameters
(registry/storage/driver/s3-aws/s3.go FromParameters), defaults applied."""

from .node import show

MiB = 1 << 20
DEFAULT_CHUNK = 10 * MiB
MIN_CHUNK = 5 * MiB
MAX_CHUNK = 5 * 1024 * MiB
DEFAULT_COPY_CHUNK = 32 * MiB
DEFAULT_COPY_CONCURRENCY = 100
DEFAULT_COPY_THRESHOLD = 32 * MiB
STORAGE_CLASSES = ("NONE", "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
                   "INTELLIGENT_TIERING", "OUTPOSTS", "GLACIER_IR", "EXPRESS_ONEZONE")
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
               "bucket-owner-read", "bucket-owner-full-control")
LOG_LEVELS = ("off", "debug", "debugwithsigning", "debugwithhttpbody", "debugwithrequestretries",
              "debugwithrequesterrors", "debugwitheventstreambody")
_TRUE = ("1", "t", "true", "TRUE", "True")
_FALSE = ("0", "f", "false", "FALSE", "False")


def _bool(node, default):
    """A bool, or a string Go's strconv.ParseBool reads (registry:2 accepts both)."""
    if isinstance(node.value, str):
        if node.value in _TRUE:
            return True
        if node.value in _FALSE:
            return False
        raise node.error(f"expected true or false, got {show(node.value)}")
    return node.as_bool(default)


def _size(node, default, minimum, maximum):
    """An integer (or one written as a string) within [minimum, maximum]."""
    v = node.value
    if isinstance(v, str):
        try:
            v = int(v, 0)
        except ValueError:
            raise node.error(f"expected an integer, got {show(node.value)}") from None
    elif v is None:
        v = default
    elif not isinstance(v, int) or isinstance(v, bool):
        raise node.error(f"expected an integer, got {show(node.value)}")
    if not minimum <= v <= maximum:
        raise node.error(f"must be between {minimum} and {maximum}, got {v}")
    return v


def parse_s3(node):
    node.as_mapping()
    bucket = node["bucket"].as_str("")
    if not bucket:
        raise node["bucket"].error("required: the name of an existing bucket")
    region = node["region"].as_str("")
    endpoint = node["regionendpoint"].as_str("")
    if not region and not endpoint:
        raise node["region"].error("required unless regionendpoint is set")
    v4auth = _bool(node["v4auth"], True)
    if not v4auth:
        node["v4auth"].warn("only Signature Version 4 is implemented; signing with it anyway")
    storageclass = node["storageclass"].as_str("STANDARD").upper() or "STANDARD"
    if storageclass not in STORAGE_CLASSES:
        raise node["storageclass"].error(f"expected one of {', '.join(STORAGE_CLASSES)}, got {storageclass!r}")
    objectacl = node["objectacl"].as_str("private")
    if objectacl not in CANNED_ACLS:
        raise node["objectacl"].error(f"expected one of {', '.join(CANNED_ACLS)}, got {objectacl!r}")
    encrypt = _bool(node["encrypt"], False)
    keyid = node["keyid"].as_str("")
    if keyid and not encrypt:
        raise node["keyid"].error("needs encrypt: true")
    return {
        "accesskey": node["accesskey"].as_str(""),
        "secretkey": node["secretkey"].as_str(""),
        "sessiontoken": node["sessiontoken"].as_str(""),
        "region": region,
        "regionendpoint": endpoint,
        "forcepathstyle": _bool(node["forcepathstyle"], False),
        "bucket": bucket,
        "encrypt": encrypt,
        "keyid": keyid,
        "secure": _bool(node["secure"], True),
        "skipverify": _bool(node["skipverify"], False),
        "v4auth": v4auth,
        "chunksize": _size(node["chunksize"], DEFAULT_CHUNK, MIN_CHUNK, MAX_CHUNK),
        "multipartcopychunksize": _size(node["multipartcopychunksize"], DEFAULT_COPY_CHUNK, MIN_CHUNK, MAX_CHUNK),
        "multipartcopymaxconcurrency": _size(node["multipartcopymaxconcurrency"], DEFAULT_COPY_CONCURRENCY, 1, 1 << 20),
        "multipartcopythresholdsize": _size(node["multipartcopythresholdsize"], DEFAULT_COPY_THRESHOLD, 0, MAX_CHUNK),
        "rootdirectory": node["rootdirectory"].as_str(""),
        "storageclass": storageclass,
        "objectacl": objectacl,
        "loglevel": node["loglevel"].as_choice(LOG_LEVELS, "off"),
    }
