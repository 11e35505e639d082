"""The ``auth`` section: exactly one access-controller type, or none."""

import attr

# registry:2's access controllers; `none` (any case, as registry:2 compares it) means no auth.
KINDS = ("htpasswd", "token", "silly", "none")
# go-jose names registry:2 accepts in `signingalgorithms`. HMAC ones are refused here: a
# shared secret would have to sit in the JWKS the registry publishes to its clients, and
# "HS256 signed with the public key" is the classic confusion attack.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
DEFAULT_AUTOREDIRECT_PATH = "/auth/token"


def _required(node):
    value = node.as_str("")
    if not value:
        raise node.error("required")
    return value


@attr.s(frozen=True, slots=True)
class HtpasswdAuth:
    kind = "htpasswd"
    realm = attr.ib()
    path = attr.ib()

    @classmethod
    def parse(cls, node):
        return cls(realm=_required(node["realm"]), path=_required(node["path"]))


@attr.s(frozen=True, slots=True)
class SillyAuth:
    kind = "silly"
    realm = attr.ib()
    service = attr.ib()

    @classmethod
    def parse(cls, node):
        return cls(realm=_required(node["realm"]), service=_required(node["service"]))


def _algorithms(node):
    if node.value is None:
        return ASYMMETRIC_ALGORITHMS
    names = []
    for item in node.as_list():
        name = item.as_str("")
        if name in HMAC_ALGORITHMS:
            raise item.error(f"{name}: HMAC algorithms are refused; use one of {', '.join(ASYMMETRIC_ALGORITHMS)}")
        if name not in ASYMMETRIC_ALGORITHMS:
            raise item.error(f"unknown signing algorithm {name!r}; expected one of {', '.join(ASYMMETRIC_ALGORITHMS)}")
        names.append(name)
    if not names:
        raise node.error("must list at least one algorithm")
    return tuple(names)


@attr.s(frozen=True, slots=True)
class TokenAuth:
    kind = "token"
    realm = attr.ib()
    service = attr.ib()
    issuer = attr.ib()
    rootcertbundle = attr.ib()  # PEM path or ""
    jwks = attr.ib()  # JSON Web Key Set path or ""
    signingalgorithms = attr.ib()  # tuple of JOSE alg names
    autoredirect = attr.ib()  # bool: realm built from the request's Host
    autoredirectpath = attr.ib()

    @classmethod
    def parse(cls, node):
        bundle = node["rootcertbundle"].as_str("")
        jwks = node["jwks"].as_str("")
        if not bundle and not jwks:
            raise node.error("token auth requires at least one token signing key: set rootcertbundle or jwks")
        return cls(
            realm=_required(node["realm"]),
            service=_required(node["service"]),
            issuer=_required(node["issuer"]),
            rootcertbundle=bundle,
            jwks=jwks,
            signingalgorithms=_algorithms(node["signingalgorithms"]),
            autoredirect=node["autoredirect"].as_bool(False),
            autoredirectpath=node["autoredirectpath"].as_str("") or DEFAULT_AUTOREDIRECT_PATH,
        )


PARSERS = {"htpasswd": HtpasswdAuth.parse, "silly": SillyAuth.parse, "token": TokenAuth.parse}


def parse_auth(root):
    """None: no access control (``auth`` absent or ``none``); else the one type's settings."""
    node = root["auth"].with_shorthand()
    kinds = list(node.as_mapping())
    if len(kinds) > 1:
        raise node.error(f"must provide exactly one type. Provided: [{' '.join(kinds)}]", below=True)
    if not kinds or kinds[0] == "" or kinds[0].lower() == "none":
        return None
    kind = node[kinds[0]]
    if kinds[0] not in PARSERS:
        raise kind.error(f"unknown auth type; expected one of {', '.join(KINDS)}")
    return PARSERS[kinds[0]](kind)
