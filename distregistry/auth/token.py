"""``auth.token``: Bearer JWTs from a token server (registry:2 auth/token; distribution.md 4.4).

The signing key comes from the token's ``x5c`` chain (which must end at a certificate of
``rootcertbundle``), else from a ``jwk`` header holding a trusted key, else from its ``kid``: a JWKS key of that id, or a bundle certificate
whose public key has that RFC 7638 thumbprint. Verification is pure CPU (well under a
millisecond), so it runs on the reactor thread."""

import base64
import hashlib
import json
import time

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from distregistry.config import ConfigError

from .interfaces import IAccessController
from .records import go_quote, header_text, scope_string, unauthorized

log = Logger()

LEEWAY = 60  # seconds of clock skew allowed on exp/nbf/iat, as registry:2


class InvalidToken(Exception):
    pass


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_key):
    """RFC 7638 JWK thumbprint (base64url SHA-256 of the required members, sorted)."""
    jwk = json.loads(_to_jwk(public_key))
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _to_jwk(public_key):
    if isinstance(public_key, rsa.RSAPublicKey):
        return jwt.algorithms.RSAAlgorithm.to_jwk(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(public_key)
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return jwt.algorithms.OKPAlgorithm.to_jwk(public_key)
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


def load_bundle(path, source="config"):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return x509.load_pem_x509_certificates(data)
    except (OSError, ValueError) as e:
        raise ConfigError(source, "auth.token.rootcertbundle", f"cannot load {path}: {e}") from None


def load_jwks(path, source="config"):
    try:
        with open(path, encoding="utf-8") as f:
            keys = jwt.PyJWKSet.from_dict(json.load(f)).keys
    except (OSError, ValueError, jwt.PyJWTError) as e:
        raise ConfigError(source, "auth.token.jwks", f"cannot load {path}: {e}") from None
    # Symmetric ("oct") keys are left out: HMAC-signed tokens are refused (config/auth.py).
    return {k.key_id: k.key for k in keys if k.key_id and k.key_type != "oct"}


@implementer(IAccessController)
class TokenAccessController:
    def __init__(self, config, source="config", clock=time.time):
        self._config = config
        self._roots = load_bundle(config.rootcertbundle, source) if config.rootcertbundle else []
        self._keys = {thumbprint(c.public_key()): c.public_key() for c in self._roots}
        if config.jwks:
            self._keys.update(load_jwks(config.jwks, source))
        if not self._keys:
            raise ConfigError(source, "auth.token", "token auth requires at least one token signing key")
        self._clock = clock

    # -- challenge -----------------------------------------------------------------------
    def _realm(self, request):
        if not self._config.autoredirect:
            return self._config.realm
        proto = header_text(request, b"x-forwarded-proto").split(",")[0].strip() or "https"
        host = header_text(request, b"host")
        return f"{proto}://{host}{self._config.autoredirectpath}"

    def _challenge(self, request, records, error=None):
        text = f"Bearer realm={go_quote(self._realm(request))},service={go_quote(self._config.service)}"
        if records:
            text += f",scope={go_quote(scope_string(records))}"
        if error:
            text += f",error={go_quote(error)}"
        return unauthorized(records, text)

    # -- verification --------------------------------------------------------------------
    def authorized(self, request, records):
        header = header_text(request, b"authorization")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return defer.fail(self._challenge(request, records))
        try:
            claims = self.verify(raw.strip())
        except InvalidToken as e:
            log.info("token auth: invalid token: {reason}", reason=str(e))
            return defer.fail(self._challenge(request, records, "invalid_token"))
        missing = [a for a in records if not _granted(claims.get("access"), a)]
        if missing:
            log.info("token auth: {user!r} lacks {scope}", user=claims.get("sub"), scope=scope_string(missing))
            return defer.fail(self._challenge(request, records, "insufficient_scope"))
        return defer.succeed(claims.get("sub") or "")

    def verify(self, raw):
        """The claims of a valid token; InvalidToken with the reason otherwise."""
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError as e:
            raise InvalidToken(f"malformed: {e}") from None
        alg = header.get("alg")
        if alg not in self._config.signingalgorithms:
            raise InvalidToken(f"signing algorithm {alg!r} not allowed")
        key = self._signing_key(header)
        try:
            return jwt.decode(
                raw, key, algorithms=[alg], audience=self._config.service, issuer=self._config.issuer,
                leeway=LEEWAY, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e) or type(e).__name__) from None

    def _signing_key(self, header):
        if "x5c" in header:
            return self._chain_key(header["x5c"])
        if "jwk" in header:
            return self._embedded_key(header["jwk"])
        kid = header.get("kid")
        if kid and kid in self._keys:
            return self._keys[kid]
        raise InvalidToken(f"token signed by untrusted key with ID {kid!r}")

    def _embedded_key(self, jwk):
        """A key in the header itself: trusted through its own x5c chain, or because it is
        a trusted key (by thumbprint)."""
        if not isinstance(jwk, dict):
            raise InvalidToken("jwk header is not an object")
        if "x5c" in jwk:
            return self._chain_key(jwk["x5c"])
        try:
            key = jwt.PyJWK.from_dict(jwk).key
            kid = thumbprint(key)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as e:
            raise InvalidToken(f"jwk header: {e}") from None
        if kid not in self._keys:
            raise InvalidToken(f"token signed by untrusted key with ID {kid!r}")
        return self._keys[kid]

    def _chain_key(self, x5c):
        if not isinstance(x5c, list) or not x5c:
            raise InvalidToken("x5c is not a list of certificates")
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c]
        except (ValueError, TypeError) as e:
            raise InvalidToken(f"x5c: {e}") from None
        now = self._clock()
        for cert in chain:
            if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
                raise InvalidToken(f"x5c certificate {cert.subject.rfc4514_string()} is not valid now")
        try:
            for cert, issuer in zip(chain, chain[1:]):
                cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise InvalidToken(f"x5c chain is broken: {e!r}") from None
        top = chain[-1]
        for root in self._roots:
            if top == root:
                return chain[0].public_key()
            try:
                top.verify_directly_issued_by(root)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return chain[0].public_key()
        raise InvalidToken("x5c chain does not end at a certificate of rootcertbundle")


def _granted(access, record):
    if not isinstance(access, list):
        return False
    for entry in access:
        if (isinstance(entry, dict) and entry.get("type") == record.type and entry.get("name") == record.name
                and isinstance(entry.get("actions"), list)
                and (record.action in entry["actions"] or "*" in entry["actions"])):
            return True
    return False
