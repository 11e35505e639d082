"""The ``tokenserver`` section (distregistry's own; registry:2 has no token issuer): the
built-in Docker token server, on its own listener, for ``auth.token`` to trust."""

import fnmatch
import re

import attr

from .duration import parse_duration
from .http import _tcp_addr
from .tls import TLSConfig

ACTIONS = ("pull", "push", "delete", "*")
TYPES = ("repository", "registry")
ANONYMOUS = "anonymous"   # the principal of a request without credentials
ANY_USER = "*"            # any authenticated user


@attr.s(frozen=True, slots=True)
class AccessRule:
    type = attr.ib()      # "repository" or "registry" (registry:catalog:*)
    pattern = attr.ib()   # compiled glob on the resource name; "*" matches "/" too
    users = attr.ib()     # frozenset of user names, ANY_USER, ANONYMOUS
    groups = attr.ib()    # frozenset of group names
    actions = attr.ib()   # frozenset of ACTIONS

    def applies(self, type_, name, user, groups):
        if type_ != self.type or not self.pattern.fullmatch(name):
            return False
        if user is None:
            return ANONYMOUS in self.users
        return ANY_USER in self.users or user in self.users or bool(self.groups & groups)


def _names(node):
    return frozenset(item.as_str("") for item in node.as_list())


def _rule(node):
    type_ = node["type"].as_choice(TYPES, "repository")
    name = node["name"].as_str("")
    if not name:
        raise node["name"].error('required: a glob on repository names such as "team-a/*"')
    actions = _names(node["actions"])
    bad = sorted(actions - set(ACTIONS))
    if bad or not actions:
        raise node["actions"].error(f"expected a list of {', '.join(ACTIONS)}, got {bad or 'none'}")
    users, groups = _names(node["users"]), _names(node["groups"])
    if not users and not groups:
        raise node.error(f'names no users or groups (use users: ["{ANY_USER}"] or ["{ANONYMOUS}"])')
    return AccessRule(type=type_, pattern=re.compile(fnmatch.translate(name)), users=users, groups=groups,
                      actions=actions)


@attr.s(frozen=True, slots=True)
class TokenServerConfig:
    net = "tcp"               # its listener is always TCP (read by service._endpoint_description)
    addr = attr.ib()          # host:port of its own listener
    tls = attr.ib()           # TLSConfig or None
    issuer = attr.ib()        # `iss`; auth.token.issuer must be the same
    service = attr.ib()       # the only service it issues for (auth.token.service)
    signingkey = attr.ib()    # PEM private key; auth.token.rootcertbundle holds a certificate of it
    htpasswd = attr.ib()      # users (bcrypt htpasswd file)
    expiration = attr.ib()    # seconds a token lives
    refreshexpiration = attr.ib()  # seconds a refresh token lives
    groups = attr.ib()        # user -> frozenset of group names
    rules = attr.ib()         # tuple of AccessRule

    @classmethod
    def parse(cls, root):
        """None unless ``tokenserver`` is configured."""
        node = root["tokenserver"]
        if not node.as_mapping():
            return None
        required = {}
        for key in ("issuer", "service", "signingkey", "htpasswd"):
            required[key] = node[key].as_str("")
            if not required[key]:
                raise node[key].error("required")
        token = root["auth"].with_shorthand()["token"]
        for key in ("issuer", "service"):
            if token.as_mapping() and token[key].as_str("") != required[key]:
                node[key].warn(f"differs from auth.token.{key} ({token[key].as_str('')!r}): "
                               "the registry will refuse these tokens")
        groups = {}
        for group in node["groups"].as_mapping():
            for user in _names(node["groups"][group]):
                groups.setdefault(user, set()).add(group)
        expiration = node["expiration"].as_duration(300.0)
        if expiration < 60:
            raise node["expiration"].error("must be at least 60s (clients treat shorter tokens as 60s)")
        return cls(
            addr=_tcp_addr(node["addr"]) if node["addr"].value is not None else ":5001",
            tls=TLSConfig.parse(node["tls"]),
            expiration=expiration,
            refreshexpiration=node["refreshexpiration"].as_duration(parse_duration("720h")),
            groups={u: frozenset(g) for u, g in groups.items()},
            rules=tuple(_rule(item) for item in node["access"].as_list()),
            **required,
        )
