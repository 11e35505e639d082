"""``auth.silly``: registry:2's test controller. Any non-empty Authorization header passes
(user ``silly``); without one, a Bearer challenge naming each action separately."""

from twisted.internet import defer
from zope.interface import implementer

from .interfaces import IAccessController
from .records import go_quote, unauthorized


@implementer(IAccessController)
class SillyAccessController:
    def __init__(self, config):
        self._realm = config.realm
        self._service = config.service

    def authorized(self, request, records):
        if request.getHeader(b"authorization"):
            return defer.succeed("silly")
        challenge = f"Bearer realm={go_quote(self._realm)},service={go_quote(self._service)}"
        if records:
            scope = " ".join(f"{a.type}:{a.name}:{a.action}" for a in records)
            challenge += f",scope={go_quote(scope)}"
        return defer.fail(unauthorized(records, challenge))
