"""The built-in token server (``tokenserver``): the Docker token protocol that registry:2
leaves to a separate product, for small teams.

``GET /token?service=&scope=...`` with Basic credentials (or none: anonymous), and the OAuth2
form ``POST /token`` with ``grant_type=password`` or ``refresh_token``
(distribution docs spec/auth/token.md, oauth.md). Users come from an htpasswd file; what
each may do comes from ``tokenserver.access`` rules. Asking for more than allowed is not an
error: the token carries what was granted and the registry answers insufficient_scope.
Refresh tokens are JWTs signed by the same key with this issuer as audience, so nothing
is stored."""

import json
import secrets
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from klein import Klein
from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import server

from distregistry.config import ConfigError

from .htpasswd import HtpasswdFile
from .interfaces import ControllerError
from .records import basic_credentials, go_quote
from .token import thumbprint

log = Logger()

REFRESH_TYPE = "refresh"
_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def load_signing_key(path, source):
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(source, "tokenserver.signingkey", f"cannot load {path}: {e}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVE_ALGORITHMS:
        return key, _CURVE_ALGORITHMS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "EdDSA"
    raise ConfigError(source, "tokenserver.signingkey", "expected an RSA, EC (P-256/384/521) or Ed25519 key")


def parse_scope(text):
    """``repository:team/app:pull,push`` -> (type, name, [actions]); None when malformed."""
    type_, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not type_ or not name:
        return None
    return type_, name, [a for a in actions.split(",") if a]


class OAuthError(Exception):
    def __init__(self, status, error, description, challenge=None):
        super().__init__(description)
        self.status, self.error, self.description, self.challenge = status, error, description, challenge


class TokenIssuer:
    def __init__(self, config, source, reactor, clock=time.time):
        self.config = config
        self._key, self._alg = load_signing_key(config.signingkey, source)
        self._kid = thumbprint(self._key.public_key())
        self._users = HtpasswdFile(config.htpasswd)
        self._reactor = reactor
        self._clock = clock
        self._challenge = f"Basic realm={go_quote(config.issuer)}"
        self.app = Klein()
        self.app.route("/token", methods=["GET"])(self._get)
        self.app.route("/token", methods=["POST"])(self._post)

    # -- who is asking -------------------------------------------------------------------
    def _in_thread(self, f, *args):
        # bcrypt and the htpasswd file's stat/read stay off the reactor thread
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args)

    async def _login(self, user, password):
        ok = await self._in_thread(self._users.check, user, password)
        if not ok:
            log.info("token server: login failed for {user!r}", user=user)
            raise OAuthError(401, "invalid_grant", "invalid username or password", self._challenge)
        return user

    def _grant(self, user, scopes):
        groups = self.config.groups.get(user, frozenset()) if user is not None else frozenset()
        access = {}
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                raise OAuthError(400, "invalid_scope", f"malformed scope {scope!r}")
            type_, name, wanted = parsed
            allowed = set()
            for rule in self.config.rules:
                if rule.applies(type_, name, user, groups):
                    allowed |= rule.actions
            granted = [a for a in wanted if a in allowed or "*" in allowed]
            if granted:
                entry = access.setdefault((type_, name), [])
                entry.extend(a for a in granted if a not in entry)
        return [{"type": t, "name": n, "actions": a} for (t, n), a in access.items()]

    # -- tokens --------------------------------------------------------------------------
    def _sign(self, claims):
        return jwt.encode(claims, self._key, algorithm=self._alg, headers={"kid": self._kid, "typ": "JWT"})

    def _issue(self, user, scopes, refresh):
        now = int(self._clock())
        expires = int(self.config.expiration)
        access = self._grant(user, scopes)
        claims = {"iss": self.config.issuer, "sub": user or "", "aud": self.config.service, "exp": now + expires,
                  "nbf": now - 1, "iat": now, "jti": secrets.token_urlsafe(16), "access": access}
        token = self._sign(claims)
        body = {"token": token, "access_token": token, "expires_in": expires,
                "issued_at": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if refresh and user is not None:
            body["refresh_token"] = self._sign({
                "iss": self.config.issuer, "aud": self.config.issuer, "sub": user, "typ": REFRESH_TYPE,
                "iat": now, "exp": now + int(self.config.refreshexpiration), "jti": secrets.token_urlsafe(16)})
        log.info("token server: issued a token to {user!r} for {access}", user=user or "anonymous",
                 access=json.dumps(access))
        return body

    def _refresh_user(self, raw):
        try:
            claims = jwt.decode(raw, self._key.public_key(), algorithms=[self._alg], audience=self.config.issuer,
                                issuer=self.config.issuer, options={"require": ["exp", "sub"]})
        except jwt.PyJWTError as e:
            raise OAuthError(400, "invalid_grant", f"invalid refresh token: {e}") from None
        if claims.get("typ") != REFRESH_TYPE:
            raise OAuthError(400, "invalid_grant", "not a refresh token")
        return claims["sub"]

    def _check_service(self, service):
        if service and service != self.config.service:
            raise OAuthError(400, "invalid_request", f"unknown service {service!r}")

    # -- routes --------------------------------------------------------------------------
    async def _get(self, request):
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}

        async def answer():
            self._check_service(_first(args, "service"))
            credentials = basic_credentials(request)
            user = await self._login(*credentials) if credentials else None
            return self._issue(user, args.get("scope", []), _first(args, "offline_token") == "true")
        return await self._respond(request, answer)

    async def _post(self, request):
        form = parse_qs(request.content.read().decode("utf-8", "replace"), keep_blank_values=True)

        async def answer():
            self._check_service(_first(form, "service"))
            grant = _first(form, "grant_type")
            scopes = " ".join(form.get("scope", [])).split()
            if grant == "password":
                user = await self._login(_first(form, "username") or "", _first(form, "password") or "")
                return self._issue(user, scopes, _first(form, "access_type") == "offline")
            if grant == "refresh_token":
                user = self._refresh_user(_first(form, "refresh_token") or "")
                if not await self._in_thread(self._users.has_user, user):
                    raise OAuthError(400, "invalid_grant", f"user {user!r} no longer exists")
                body = self._issue(user, scopes, False)
                body["refresh_token"] = _first(form, "refresh_token")
                return body
            raise OAuthError(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")
        return await self._respond(request, answer)

    async def _respond(self, request, answer):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        try:
            body = await answer()
            request.setResponseCode(200)
        except OAuthError as e:
            request.setResponseCode(e.status)
            if e.challenge:
                request.setHeader(b"www-authenticate", e.challenge.encode())
            body = {"error": e.error, "error_description": e.description}
        except ControllerError as e:   # the htpasswd file is unreadable or broken
            log.error("token server: {error}", error=str(e))
            request.setResponseCode(500)
            body = {"error": "server_error", "error_description": "cannot check credentials"}
        data = json.dumps(body).encode()
        request.setHeader(b"content-length", b"%d" % len(data))
        return data


def _first(args, key):
    values = args.get(key)
    return values[0] if values else None


def make_issuer_site(config, source, reactor):
    site = server.Site(TokenIssuer(config, source, reactor).app.resource())
    site.displayTracebacks = False
    site.noisy = False
    return site
