"""The ``storage`` section: one driver with its parameters, plus registry:2's reserved
subsections (``maintenance``, ``cache``, ``delete``, ``redirect``, ``tag``)."""

import attr

from . import cloudstorage
from .gc import GCConfig
from .s3 import parse_s3
from .schema import NOT_SUPPORTED

RESERVED = ("maintenance", "cache", "delete", "redirect", "tag")

# filesystem driver (registry/storage/driver/filesystem/driver.go)
DEFAULT_ROOT_DIRECTORY = "/var/lib/registry"
DEFAULT_MAX_THREADS = 100
MIN_THREADS = 25

# storage.cache (registry/handlers/app.go): the inmemory cache's default size; 0 is unbounded
DEFAULT_DESCRIPTOR_CACHE_SIZE = 10000
DESCRIPTOR_CACHES = ("inmemory", "redis")

# upload purging (registry/handlers/app.go uploadPurgeDefaultConfig)
DEFAULT_PURGE_AGE = 168 * 3600.0
DEFAULT_PURGE_INTERVAL = 24 * 3600.0


def _filesystem(node):
    root = node["rootdirectory"]
    rootdirectory = root.as_str(DEFAULT_ROOT_DIRECTORY)
    if not rootdirectory:
        # registry:2 would then write under the filesystem root "/".
        raise root.error("must not be empty")
    return {"rootdirectory": rootdirectory, "maxthreads": _max_threads(node["maxthreads"])}


def _max_threads(node):
    """registry:2's GetLimitFromParameter: an integer, or one as a string; below 25 reads as 25."""
    if isinstance(node.value, str):
        try:
            n = int(node.value, 0)
        except ValueError:
            raise node.error(f"expected an integer, got {node.value!r}") from None
    else:
        n = node.as_int(DEFAULT_MAX_THREADS)
    if n < MIN_THREADS:
        node.warn(f"{n} is below the minimum of {MIN_THREADS}; using {MIN_THREADS}")
        n = MIN_THREADS
    return n


def _inmemory(node):
    node.as_mapping()  # no parameters, but a value other than a mapping is still an error
    return {}


# driver name -> parser of its parameters node into the parameters dict, defaults applied
DRIVERS = {"filesystem": _filesystem, "inmemory": _inmemory, "s3": parse_s3, "s3aws": parse_s3,
           "gcs": cloudstorage.gcs, "azure": cloudstorage.azure}


@attr.s(frozen=True, slots=True)
class UploadPurgingConfig:
    enabled = attr.ib()  # bool
    age = attr.ib()  # seconds: uploads started longer ago are purged
    interval = attr.ib()  # seconds between purges
    dryrun = attr.ib()  # bool: log what would be purged, delete nothing

    @classmethod
    def parse(cls, node):
        # registry:2 requires all four keys once the section exists; missing ones default here.
        enabled = node["enabled"].as_bool(True)
        interval = node["interval"]
        purging = cls(
            enabled=enabled,
            age=node["age"].as_duration(DEFAULT_PURGE_AGE),
            interval=interval.as_duration(DEFAULT_PURGE_INTERVAL),
            dryrun=node["dryrun"].as_bool(False),
        )
        if enabled and purging.interval <= 0:
            raise interval.error("must be greater than zero")
        return purging


def _descriptor_cache(node, root):
    """``storage.cache.blobdescriptor`` (alias ``layerinfo``): None, "inmemory" or "redis"."""
    key = node["blobdescriptor"] if node["blobdescriptor"].value is not None else node["layerinfo"]
    kind = key.as_str("")
    if not kind:
        return None
    if kind not in DESCRIPTOR_CACHES:
        # registry:2 runs without a cache then, with a warning.
        key.warn(f"unknown cache type {kind!r}; running without a blob-descriptor cache")
        return None
    if kind == "redis" and not root["redis"].as_mapping():
        raise key.error("redis configuration required to use for layerinfo cache (the redis section is missing)")
    return kind


@attr.s(frozen=True, slots=True)
class StorageConfig:
    driver = attr.ib()  # a key of DRIVERS
    parameters = attr.ib()  # dict of the driver's parameters, defaults applied
    delete_enabled = attr.ib()  # storage.delete.enabled
    redirect_disabled = attr.ib()  # storage.redirect.disable
    readonly = attr.ib()  # storage.maintenance.readonly.enabled
    uploadpurging = attr.ib()  # UploadPurgingConfig
    gc = attr.ib()  # GCConfig: storage.maintenance.gc, distregistry's online GC
    tag_concurrencylimit = attr.ib()  # storage.tag.concurrencylimit; 0: the consumer's default
    blobdescriptor_cache = attr.ib(default=None)  # storage.cache.blobdescriptor: None, "inmemory", "redis"
    blobdescriptor_size = attr.ib(default=DEFAULT_DESCRIPTOR_CACHE_SIZE)  # inmemory only; 0: unbounded

    @classmethod
    def parse(cls, root):
        node = root["storage"].with_shorthand()
        drivers = [k for k in node.as_mapping() if k not in RESERVED]
        if not drivers:
            raise node.error("no storage configuration provided")
        if len(drivers) > 1:
            raise node.error(
                f"must provide exactly one storage type. Provided: [{' '.join(drivers)}]", below=True
            )
        driver = node[drivers[0]]
        if driver.keypath in NOT_SUPPORTED:
            raise driver.not_supported()
        if driver.path[-1] not in DRIVERS:
            raise driver.error(f"unknown storage driver; expected one of {', '.join(DRIVERS)}")
        maintenance = node["maintenance"]
        return cls(
            driver=driver.path[-1],
            parameters=DRIVERS[driver.path[-1]](driver),
            delete_enabled=node["delete"]["enabled"].as_bool(False),
            redirect_disabled=node["redirect"]["disable"].as_bool(False),
            readonly=maintenance["readonly"]["enabled"].as_bool(False),
            uploadpurging=UploadPurgingConfig.parse(maintenance["uploadpurging"]),
            gc=GCConfig.parse(maintenance["gc"]),
            tag_concurrencylimit=node["tag"]["concurrencylimit"].as_int(0, minimum=0),
            blobdescriptor_cache=_descriptor_cache(node["cache"], root),
            blobdescriptor_size=node["cache"]["blobdescriptorsize"].as_int(DEFAULT_DESCRIPTOR_CACHE_SIZE, minimum=0),
        )
