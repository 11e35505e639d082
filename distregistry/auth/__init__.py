"""Access control between the API and the world: the API computes the access records a
request needs (records.py) and asks an IAccessController; handlers never see auth."""

from .interfaces import Access, IAccessController


def make_access_controller(auth, reactor, source):
    """The controller for a Config's ``auth`` (None: no access control).

    Each kind's module is imported only when configured: token auth brings in jwt and
    cryptography's x509, which a registry without it need not hold in memory."""
    if auth is None:
        return None
    if auth.kind == "htpasswd":
        from .htpasswd import HtpasswdAccessController

        return HtpasswdAccessController(auth, reactor)   # bcrypt in the reactor's thread pool
    if auth.kind == "silly":
        from .silly import SillyAccessController

        return SillyAccessController(auth)
    from .token import TokenAccessController

    return TokenAccessController(auth, source=source)   # reads its key files now


__all__ = ["Access", "IAccessController", "make_access_controller"]
