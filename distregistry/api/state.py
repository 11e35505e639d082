"""The upload ``_state`` token carried in Location URLs, in registry:2's exact format
(handlers/hmac.go): base64url(HMAC-SHA256(secret, J) || J), J = JSON
{"Name","UUID","Offset","StartedAt"}. Any replica sharing ``http.secret`` can continue an
upload, Go replicas included."""

import base64
import binascii
import hashlib
import hmac
import json
import os

import attr
from twisted.logger import Logger

from distregistry.errcode import ErrorCode, RegistryError

log = Logger()


@attr.s(frozen=True, slots=True)
class UploadState:
    name = attr.ib()
    uuid = attr.ib()
    offset = attr.ib()
    started_at = attr.ib()


class StateSigner:
    def __init__(self, secret):
        if not secret:
            log.warn("No HTTP secret provided - generated random secret. This may cause problems with uploads "
                     "if multiple registries are behind a load-balancer. To provide a shared secret, fill in "
                     "http.secret in the configuration file or set the REGISTRY_HTTP_SECRET environment variable.")
            secret = base64.b64encode(os.urandom(32)).decode()
        self._key = secret.encode()

    def pack(self, state):
        body = json.dumps({"Name": state.name, "UUID": state.uuid, "Offset": state.offset,
                           "StartedAt": state.started_at}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac + body).decode()

    def unpack(self, token, name, uuid):
        """Verify *token* for upload (*name*, *uuid*); BLOB_UPLOAD_INVALID if absent, forged or foreign."""
        invalid = RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, detail="invalid upload state")
        if not token:
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        mac, body = raw[:32], raw[32:]
        if len(mac) != 32 or not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()):
            raise invalid
        try:
            obj = json.loads(body)
            state = UploadState(obj["Name"], obj["UUID"], int(obj["Offset"]), obj.get("StartedAt", ""))
        except (ValueError, KeyError, TypeError):
            raise invalid from None
        if state.name != name or state.uuid != uuid:
            raise invalid
        return state
