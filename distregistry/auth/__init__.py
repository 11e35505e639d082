"""Access control between the API and the world: the API computes the access records a
request needs (records.py) and asks an IAccessController; handlers never see auth."""

from .htpasswd import HtpasswdAccessController
from .interfaces import Access, IAccessController
from .silly import SillyAccessController
from .token import TokenAccessController

CONTROLLERS = {
    "htpasswd": HtpasswdAccessController,
    "silly": SillyAccessController,
    "token": TokenAccessController,
}


def make_access_controller(auth, reactor, source):
    """The controller for a Config's ``auth`` (None: no access control)."""
    if auth is None:
        return None
    if auth.kind == "token":
        return TokenAccessController(auth, reactor, source)
    return CONTROLLERS[auth.kind](auth, reactor)


__all__ = ["Access", "IAccessController", "make_access_controller"]
