"""Azure Storage Shared Key request signing and service SAS URLs for blobs.

Both are an HMAC-SHA256 with the account key over a canonical string the Blob REST docs
define ("Authorize with Shared Key", "Create a service SAS"). The Azure SDK does this too but
is large and blocking; this module is the documented algorithm and nothing else.
"""

import base64
import hashlib
import hmac
import re
from urllib.parse import quote

# The headers the Shared Key string-to-sign lists by position (Blob service, version 2009-09-19+).
_STANDARD_HEADERS = (
    "content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
    "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range",
)
_SPACES = re.compile(r"\s+")


def _hmac(key_b64, text):
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), text.encode("utf-8"), hashlib.sha256).digest()).decode()


def shared_key_authorization(account, key_b64, method, url_path, query, headers):
    """The ``Authorization`` header value for a request.

    *url_path*: the request's (encoded) URL path, e.g. ``/container/blob`` (with the emulator's
    path-style URLs, ``/devstoreaccount1/container/blob``). *query*: dict of query parameters.
    *headers*: every header the request sends, as a dict (x-ms-date or Date among them).
    """
    lower = {k.lower(): str(v) for k, v in headers.items()}
    if lower.get("content-length") == "0":
        lower["content-length"] = ""  # version 2015-02-21 and later sign an empty length
    lines = [method.upper()] + [lower.get(h, "") for h in _STANDARD_HEADERS]
    ms = sorted((k, _SPACES.sub(" ", v.strip())) for k, v in lower.items() if k.startswith("x-ms-"))
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in ms)
    resource = f"/{account}{url_path}"
    for name in sorted(query, key=str.lower):
        resource += f"\n{name.lower()}:{query[name]}"
    string_to_sign = "\n".join(lines) + "\n" + canonical_headers + resource
    return f"SharedKey {account}:{_hmac(key_b64, string_to_sign)}"


def blob_sas_query(account, key_b64, container, blob, permissions, expiry, version):
    """The query string of a service SAS on one blob (``sr=b``), valid until *expiry* (a
    ``YYYY-MM-DDThh:mm:ssZ`` string), for protocol https or http."""
    resource = f"/blob/{account}/{container}/{blob}"
    fields = [
        permissions, "", expiry, resource, "", "", "", version, "b", "", "",  # ... signedEncryptionScope
        "", "", "", "", "",  # rscc, rscd, rsce, rscl, rsct: response headers are not overridden
    ]
    signature = _hmac(key_b64, "\n".join(fields))
    params = [("sv", version), ("sr", "b"), ("sp", permissions), ("se", expiry), ("sig", signature)]
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params)
