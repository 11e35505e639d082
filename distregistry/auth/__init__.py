"""Access control between the API and the world: the API computes the access records a
request needs (records.py) and asks an IAccessController; handlers never see auth."""

from .htpasswd import HtpasswdAccessController
from .interfaces import Access, IAccessController
from .silly import SillyAccessController
from .token import TokenAccessController

def make_access_controller(auth, reactor, source):
    """The controller for a Config's ``auth`` (None: no access control)."""
    if auth is None:
        return None
    if auth.kind == "htpasswd":
        return HtpasswdAccessController(auth, reactor)   # bcrypt in the reactor's thread pool
    if auth.kind == "silly":
        return SillyAccessController(auth)
    return TokenAccessController(auth, source=source)   # reads its key files now


__all__ = ["Access", "IAccessController", "make_access_controller"]
