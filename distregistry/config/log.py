"""The ``log`` section (and the deprecated top-level ``loglevel``)."""

import attr

LEVELS = ("error", "warn", "info", "debug")
FORMATTERS = ("text", "json", "logstash")


@attr.s(frozen=True, slots=True)
class LogConfig:
    level = attr.ib()  # one of LEVELS
    formatter = attr.ib()  # one of FORMATTERS
    fields = attr.ib()  # dict added to every log line
    accesslog_disabled = attr.ib()  # bool

    @classmethod
    def parse(cls, root):
        node = root["log"]
        level = node["level"]
        if not level.as_str(""):
            legacy = root["loglevel"]
            if legacy.as_str(""):
                legacy.warn("deprecated, use log.level")
                level = legacy
        return cls(
            level=level.as_choice(LEVELS, "info"),
            formatter=node["formatter"].as_choice(FORMATTERS, "text"),
            fields=dict(node["fields"].as_mapping()),
            accesslog_disabled=node["accesslog"]["disabled"].as_bool(False),
        )
