"""What the API asks of access control (registry:2's auth.AccessController)."""

import attr
from zope.interface import Interface


@attr.s(frozen=True, slots=True)
class Access:
    """One thing a request needs: ``action`` on resource ``type``/``name`` (an access record)."""
    type = attr.ib()
    name = attr.ib()
    action = attr.ib()

    def detail(self):
        # registry:2 renders its auth.Access with Go's field names (no json tags).
        return {"Type": self.type, "Class": "", "Name": self.name, "Action": self.action}


class ControllerError(Exception):
    """The controller cannot decide (e.g. an unreadable htpasswd file): logged, and 400."""


class IAccessController(Interface):
    def authorized(request, records):
        """A Deferred firing with the authenticated user name (a str) when *request* may do
        every Access in *records* (an empty list: any authenticated request).

        Fails with RegistryError UNAUTHORIZED carrying the ``WWW-Authenticate`` challenge;
        any other failure is a problem of the controller itself (registry:2 answers 400)."""
