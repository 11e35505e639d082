"""``storage.maintenance.gc`` (distregistry's own key; registry:2 has no online GC and ignores
it): the online garbage collector of ``distregistry.gc.online``."""

import attr

DEFAULT_INTERVAL = 24 * 3600.0
DEFAULT_GRACE_PERIOD = 3600.0


@attr.s(frozen=True, slots=True)
class GCConfig:
    enabled = attr.ib()      # bool; off by default, as registry:2 never collects while serving
    interval = attr.ib()     # seconds between the end of one run and the start of the next
    graceperiod = attr.ib()  # seconds: blobs and links younger than this are never deleted
    dryrun = attr.ib()       # bool: log what would be deleted, delete nothing

    @classmethod
    def parse(cls, node):
        interval = node["interval"]
        gc = cls(
            enabled=node["enabled"].as_bool(False),
            interval=interval.as_duration(DEFAULT_INTERVAL),
            graceperiod=node["graceperiod"].as_duration(DEFAULT_GRACE_PERIOD),
            dryrun=node["dryrun"].as_bool(False),
        )
        if gc.enabled and gc.interval <= 0:
            raise interval.error("must be greater than zero")
        return gc
