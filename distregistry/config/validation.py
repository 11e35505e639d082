"""The ``validation`` section: what a pushed manifest must satisfy."""

import re

import attr

PLATFORMS = ("all", "none", "list")


def _regexes(node):
    compiled = []
    for item in node.as_list():
        pattern = item.as_str(None)
        if pattern is None:
            raise item.error("expected a regular expression, got null")
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise item.error(f"invalid regular expression {pattern!r}: {e}") from None
    return compiled


@attr.s(frozen=True, slots=True)
class ValidationConfig:
    disabled = attr.ib()  # bool: skip all manifest validation below
    # Layer URLs must match (re.search) one of urls_allow and none of urls_deny; with both
    # empty, registry:2 rejects every layer URL.
    urls_allow = attr.ib()  # list of compiled regexes
    urls_deny = attr.ib()  # list of compiled regexes
    index_platforms = attr.ib()  # one of PLATFORMS: which index children must exist
    platformlist = attr.ib()  # list of (architecture, os), for index_platforms == "list"

    @classmethod
    def parse(cls, root):
        node = root["validation"]
        enabled = node["enabled"]
        if enabled.value is not None:
            enabled.warn(
                "deprecated, and false has no effect: use validation.disabled: true"
                if enabled.value is False else "deprecated, use validation.disabled"
            )
        # registry:2 (app.go) validates when `enabled` is true or `disabled` is not.
        disabled = node["disabled"].as_bool(False) and not enabled.as_bool(False)
        manifests = node["manifests"]
        urls = manifests["urls"]
        indexes = manifests["indexes"]
        return cls(
            disabled=disabled,
            urls_allow=_regexes(urls["allow"]),
            urls_deny=_regexes(urls["deny"]),
            index_platforms=indexes["platforms"].as_choice(PLATFORMS, "all"),
            platformlist=[
                (p["architecture"].as_str(""), p["os"].as_str(""))
                for p in indexes["platformlist"].as_list()
            ],
        )
