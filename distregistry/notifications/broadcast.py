"""The request side: registry:2's Broadcaster over the endpoints, and the per-request
``listen`` the API wraps repositories with."""

import json

from twisted.internet import defer

from distregistry.notifications.events import Bridge
from distregistry.notifications.listener import ListenedRepository, all_of


class Endpoint:
    """One endpoint's filters and durable queue."""

    def __init__(self, config, journal, status):
        self.config = config
        self.journal = journal
        self.status = status

    def write(self, event, line):
        # registry:2's ignoredSink: dropped before the queue, on media type OR action.
        if event["target"]["mediaType"] in self.config.ignored_media_types or \
                event["action"] in self.config.ignored_actions:
            return defer.succeed(None)
        self.status.events += 1
        return self.journal.append(line)


class Broadcaster:
    def __init__(self, endpoints=(), source=None, include_references=False):
        self.endpoints = list(endpoints)
        self._source = source
        self._include_references = include_references

    def write(self, event):
        """Deferred firing once *event* is in every interested endpoint's journal."""
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        ds = [endpoint.write(event, line) for endpoint in self.endpoints]
        return all_of(ds)

    def listen(self, repository, request, urls):
        """*repository* with its stores reporting this request's events."""
        return ListenedRepository(repository, Bridge(self, request, urls, self._source, self._include_references))
