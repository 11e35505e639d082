"""The one table of registry error codes (registry:2's ``errcode`` and the OCI spec).

Every layer raises :class:`RegistryError`; the API turns it into a status and the
spec's JSON body in one place (``distregistry.api.respond``).
"""

import json
from enum import Enum

_NO_DETAIL = object()


class ErrorCode(Enum):
    # name = (message, HTTP status)
    UNKNOWN = ("unknown error", 500)
    UNSUPPORTED = ("The operation is unsupported.", 405)
    UNAUTHORIZED = ("authentication required", 401)
    DENIED = ("requested access to the resource is denied", 403)
    UNAVAILABLE = ("service unavailable", 503)
    TOOMANYREQUESTS = ("too many requests", 429)
    DIGEST_INVALID = ("provided digest did not match uploaded content", 400)
    SIZE_INVALID = ("provided length did not match content length", 400)
    RANGE_INVALID = ("invalid content range", 416)
    NAME_INVALID = ("invalid repository name", 400)
    TAG_INVALID = ("manifest tag did not match URI", 400)
    NAME_UNKNOWN = ("repository name not known to registry", 404)
    MANIFEST_UNKNOWN = ("manifest unknown", 404)
    MANIFEST_INVALID = ("manifest invalid", 400)
    MANIFEST_UNVERIFIED = ("manifest failed signature verification", 400)
    MANIFEST_BLOB_UNKNOWN = ("blob unknown to registry", 400)
    BLOB_UNKNOWN = ("blob unknown to registry", 404)
    BLOB_UPLOAD_UNKNOWN = ("blob upload unknown to registry", 404)
    BLOB_UPLOAD_INVALID = ("blob upload invalid", 404)
    PAGINATION_NUMBER_INVALID = ("invalid number of results requested", 400)

    @property
    def message(self):
        return self.value[0]

    @property
    def status(self):
        return self.value[1]


class RegistryError(Exception):
    """One or more spec errors; the status is that of the first (as registry:2 does).

    ``RegistryError(ErrorCode.BLOB_UNKNOWN, detail=digest)``; several errors of one
    response are combined with :meth:`combine`.
    """

    def __init__(self, code, detail=_NO_DETAIL, message=None, status=None, headers=None):
        super().__init__(f"{code.name}: {message or code.message}"
                         + ("" if detail is _NO_DETAIL else f" ({detail!r})"))
        self.errors = [(code, message or code.message, detail)]
        self._status = status
        self.headers = dict(headers or {})

    @property
    def code(self):
        return self.errors[0][0]

    @property
    def detail(self):
        return self.errors[0][2]

    @property
    def status(self):
        return self._status or self.errors[0][0].status

    @classmethod
    def combine(cls, errors):
        first = errors[0]
        for other in errors[1:]:
            first.errors.extend(other.errors)
        return first

    def body(self):
        out = []
        for code, message, detail in self.errors:
            entry = {"code": code.name, "message": message}
            if detail is not _NO_DETAIL:
                entry["detail"] = detail
            out.append(entry)
        return (json.dumps({"errors": out}) + "\n").encode()
