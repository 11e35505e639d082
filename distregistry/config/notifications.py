"""The ``notifications`` section: webhook endpoints (registry:2's ``configuration.Endpoint``)
and, a distregistry extension, the on-disk journal that makes their queues durable."""

from urllib.parse import urlsplit

import attr

from .http import _headers

ACTIONS = ("pull", "push", "delete", "mount")
# The envelope's Content-Type: registry:2 3.x sends v2; 2.8 sent v1 with the same body.
ENVELOPES = {
    "v2": "application/vnd.docker.distribution.events.v2+json",
    "v1": "application/vnd.docker.distribution.events.v1+json",
}
DEFAULT_JOURNAL = "/var/lib/distregistry/notifications"
DEFAULT_JOURNAL_MAXSIZE = 512 << 20


def _positive_duration(node, default):
    # registry:2 (notifications/endpoint.go defaults): zero means the default (a negative
    # duration, which it reads the same way, is refused by as_duration as everywhere here).
    seconds = node.as_duration(default)
    return seconds if seconds > 0 else default


def _strings(node):
    out = []
    for item in node.as_list():
        text = item.as_str(None)
        if text is None:
            raise item.error("expected a string, got null")
        out.append(text)
    return out


@attr.s(frozen=True, slots=True)
class EndpointConfig:
    name = attr.ib()  # unique, non-empty: it names the endpoint's journal directory and metrics
    url = attr.ib()
    headers = attr.ib()  # canonical header name -> [values], sent with every POST
    timeout = attr.ib()  # seconds per attempt, up to the response headers
    threshold = attr.ib()  # consecutive failures before attempts wait `backoff`
    backoff = attr.ib()  # seconds
    ignored_media_types = attr.ib()  # frozenset: ignore.mediatypes + ignoredmediatypes
    ignored_actions = attr.ib()  # frozenset of ACTIONS
    media_type = attr.ib()  # the envelope's Content-Type

    @classmethod
    def parse(cls, node):
        name = node["name"].as_str("")
        url = node["url"].as_str("")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise node["url"].error(f"expected an http(s) URL, got {url!r}")
        actions = _strings(node["ignore"]["actions"])
        for item, action in zip(node["ignore"]["actions"].as_list(), actions):
            if action not in ACTIONS:
                # registry:2 accepts anything here (and then ignores nothing): say so.
                item.warn(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
        envelope = node["envelope"].as_choice(tuple(ENVELOPES), "v2")
        threshold = node["threshold"].as_int(0)
        return cls(
            name=name,
            url=url,
            headers=_headers(node["headers"]),
            timeout=_positive_duration(node["timeout"], 1.0),
            threshold=threshold if threshold > 0 else 10,
            backoff=_positive_duration(node["backoff"], 1.0),
            ignored_media_types=frozenset(_strings(node["ignore"]["mediatypes"]) + _strings(node["ignoredmediatypes"])),
            ignored_actions=frozenset(actions),
            media_type=ENVELOPES[envelope],
        )


@attr.s(frozen=True, slots=True)
class NotificationsConfig:
    include_references = attr.ib()  # bool: manifest events carry target.references
    endpoints = attr.ib()  # tuple of EndpointConfig, enabled ones only (registry:2 skips the rest)
    journal_directory = attr.ib()  # one subdirectory per endpoint
    journal_maxsize = attr.ib()  # bytes per endpoint; beyond it the oldest undelivered events go

    @classmethod
    def parse(cls, root):
        node = root["notifications"]
        endpoints = []
        names = {}
        for item in node["endpoints"].as_list():
            if item["disabled"].as_bool(False):
                continue
            endpoint = EndpointConfig.parse(item)
            if not endpoint.name or "/" in endpoint.name or endpoint.name in (".", ".."):
                # The name keys the endpoint's journal: a restart must find its queue again.
                raise item["name"].error(f"expected a name without '/', got {endpoint.name!r}")
            if endpoint.name in names:
                raise item["name"].error(f"duplicate endpoint name {endpoint.name!r} "
                                         f"(also notifications.endpoints.{names[endpoint.name]})")
            names[endpoint.name] = item.path[-1]
            endpoints.append(endpoint)
        journal = node["journal"]
        return cls(
            include_references=node["events"]["includereferences"].as_bool(False),
            endpoints=tuple(endpoints),
            journal_directory=journal["rootdirectory"].as_str("") or DEFAULT_JOURNAL,
            journal_maxsize=journal["maxsize"].as_int(DEFAULT_JOURNAL_MAXSIZE, minimum=1 << 20),
        )
