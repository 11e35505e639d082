"""Storage action timings (``registry_storage_action_seconds{driver,action}``) by wrapping
the driver, as registry:2's driver/base does, so no driver carries metrics code."""

import time

from zope.interface import implementer

from distregistry.metrics import STORAGE_ACTION
from distregistry.storage.driver.base import IStorageDriver

# registry:2's timed actions (base.go); reader, writer and walk are passed through untimed.
ACTIONS = {
    "get_content": "GetContent",
    "put_content": "PutContent",
    "stat": "Stat",
    "list": "List",
    "move": "Move",
    "delete": "Delete",
    "redirect_url": "RedirectURL",
}


@implementer(IStorageDriver)
class InstrumentedDriver:
    def __init__(self, driver, clock=time.monotonic):
        self._driver = driver
        self._clock = clock
        self.name = driver.name
        self._timers = {action: STORAGE_ACTION.labels(driver.name, label) for action, label in ACTIONS.items()}

    def __getattr__(self, attr):
        # Everything not timed (reader, writer, walk, close, driver-specific extras).
        return getattr(self._driver, attr)

    def _timed(self, action, call, *args):
        timer = self._timers[action]
        start = self._clock()
        d = call(*args)

        def observe(result):
            timer.observe(self._clock() - start)
            return result
        return d.addBoth(observe)

    def get_content(self, path):
        return self._timed("get_content", self._driver.get_content, path)

    def put_content(self, path, data):
        return self._timed("put_content", self._driver.put_content, path, data)

    def stat(self, path):
        return self._timed("stat", self._driver.stat, path)

    def list(self, path):
        return self._timed("list", self._driver.list, path)

    def move(self, source, dest):
        return self._timed("move", self._driver.move, source, dest)

    def delete(self, path):
        return self._timed("delete", self._driver.delete, path)

    def redirect_url(self, method, path):
        return self._timed("redirect_url", self._driver.redirect_url, method, path)
