"""Which access records a request needs, and the challenge error (registry:2 handlers/app.go
appendAccessRecords, auth.go; distribution.md 4.1, 4.2)."""

import base64
import binascii
from itertools import groupby

from distregistry.errcode import ErrorCode, RegistryError

from .interfaces import Access

CATALOG = Access("registry", "catalog", "*")


def _first(query, key):
    values = query.get(key)
    return values[0] if values else None


def records_for(endpoint, method, name, query):
    """*query*: str -> list of str. Names are checked by the API before this is asked."""
    if endpoint == "catalog":
        return [CATALOG]
    if name is None:
        return []   # /v2/: any authenticated request
    if method in (b"GET", b"HEAD"):
        records = [Access("repository", name, "pull")]
    elif method in (b"POST", b"PUT", b"PATCH"):
        records = [Access("repository", name, "pull"), Access("repository", name, "push")]
    elif method == b"DELETE":
        records = [Access("repository", name, "delete")]
    else:
        records = []
    source = _first(query, "from")
    if endpoint == "blob_upload" and method == b"POST" and _first(query, "mount") and source:
        records.append(Access("repository", source, "pull"))
    return records


def scope_string(records):
    """``repository:foo/bar:pull,push repository:other:pull`` (registry:2's token scope)."""
    out = []
    for (type_, name), group in groupby(records, key=lambda a: (a.type, a.name)):
        out.append(f"{type_}:{name}:{','.join(a.action for a in group)}")
    return " ".join(out)


def go_quote(text):
    """Go's %q for the printable ASCII that realms and services are made of."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unauthorized(records, challenge):
    """The 401 UNAUTHORIZED error with *challenge* as ``WWW-Authenticate``."""
    detail = [a.detail() for a in records] if records else None
    return RegistryError(ErrorCode.UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


def header_text(request, name):
    return (request.getHeader(name) or b"").decode("latin-1")


def basic_credentials(request):
    """(user, password) from a Basic Authorization header, or None."""
    header = header_text(request, b"authorization")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None
