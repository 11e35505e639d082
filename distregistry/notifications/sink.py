"""Delivery to one endpoint (registry:2's eventQueue → RetryingSink(Breaker) → httpSink):
one event in flight, strict journal order, retried until it is accepted.

Retry semantics are go-events' Breaker: after a failure, attempts continue at once while
fewer than ``threshold`` failures happened in a row; from then on each attempt waits until
``backoff`` after the last failure. A success resets the count. An answer outside 200-399
is a failure, as is no answer within ``timeout`` (which covers the whole exchange).
"""

import json

from twisted.internet import defer, task
from twisted.logger import Logger

from distregistry.notifications.events import encode_envelope

log = Logger()

BATCH = 64


class EndpointSink:
    """*until_drained*: stop once the journal has nothing pending (a journal no process
    appends to any more: a former worker's)."""

    def __init__(self, config, journal, status, client, clock, until_drained=False):
        self._config = config
        self._journal = journal
        self._status = status
        self._client = client
        self._clock = clock
        self._headers = {"Content-Type": [config.media_type]}
        for name, values in config.headers.items():
            self._headers.setdefault(name, []).extend(values)
        self._failures = 0
        self._last_failure = None
        self._until_drained = until_drained
        self._loop = None

    def start(self):
        """Deferred firing when the sink is stopped, or, *until_drained*, done."""
        self._loop = defer.ensureDeferred(self._run())
        self._loop.addErrback(lambda f: f.trap(defer.CancelledError))
        return self._loop

    def stop(self):
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()

    async def _run(self):
        while not (self._until_drained and self._journal.pending == 0):
            try:
                batch = await self._journal.read(BATCH)
            except defer.CancelledError:
                raise
            except Exception:
                # A disk error must not end delivery for good: log it, wait, read again.
                log.failure("notifications {endpoint}: cannot read the journal", endpoint=self._config.name)
                await task.deferLater(self._clock, self._config.backoff, lambda: None)
                continue
            for position, line in batch:
                try:
                    event = json.loads(line)
                except ValueError:
                    # Only a disk fault makes a bad line (appends are whole and fsynced).
                    log.error("notifications {endpoint}: skipping an unreadable journal entry",
                              endpoint=self._config.name)
                else:
                    await self._deliver(event)
                self._journal.ack(position)

    async def _deliver(self, event):
        body = encode_envelope(event)
        while True:
            if self._failures >= self._config.threshold:
                wait = self._last_failure + self._config.backoff - self._clock.seconds()
                if wait > 0:
                    await task.deferLater(self._clock, wait, lambda: None)
            if await self._attempt(body, event["id"]):
                self._failures = 0
                return
            self._failures += 1
            self._last_failure = self._clock.seconds()
            if self._failures == self._config.threshold:
                log.warn("notifications {endpoint}: {n} failures in a row, retrying every {backoff}s",
                         endpoint=self._config.name, n=self._failures, backoff=self._config.backoff)

    async def _post(self, body):
        response = await self._client.post(self._config.url, data=body, headers=self._headers,
                                           allow_redirects=False)
        await response.content()      # read it all, or the pooled connection is not reused
        return response.code

    async def _attempt(self, body, event_id):
        d = defer.ensureDeferred(self._post(body))
        d.addTimeout(self._config.timeout, self._clock)
        try:
            code = await d
        except defer.TimeoutError:
            text = f"no response within {self._config.timeout}s"
        except defer.CancelledError:
            raise                      # stopping
        except Exception as e:
            text = str(e) or type(e).__name__
        else:
            if 200 <= code < 400:
                self._status.success(code)
                return True
            self._status.failure(code)
            log.warn("notifications {endpoint}: event {id}: response status {code}, retrying",
                     endpoint=self._config.name, id=event_id, code=code)
            return False
        self._status.error(text)
        log.warn("notifications {endpoint}: event {id}: {error}, retrying", endpoint=self._config.name,
                 id=event_id, error=text)
        return False
