"""The auth, http.tls and tokenserver sections: values and errors naming the key."""

import pytest

from distregistry.config import Config, ConfigError


def parse(extra):
    return Config.parse({"version": "0.1", "storage": "inmemory", **extra}, "config.yml")


def error(extra):
    with pytest.raises(ConfigError) as e:
        parse(extra)
    return str(e.value)


def test_auth_sections():
    a = parse({"auth": {"htpasswd": {"realm": "r", "path": "/etc/htpasswd"}}}).auth
    assert (a.kind, a.realm, a.path) == ("htpasswd", "r", "/etc/htpasswd")
    a = parse({"auth": {"silly": {"realm": "r", "service": "s"}}}).auth
    assert (a.kind, a.realm, a.service) == ("silly", "r", "s")
    a = parse({"auth": {"token": {"realm": "https://a/token", "service": "s", "issuer": "i", "jwks": "/j"}}}).auth
    assert (a.kind, a.jwks, a.rootcertbundle, a.autoredirect, a.autoredirectpath) == ("token", "/j", "", False,
                                                                                    "/auth/token")
    assert "HS256" not in a.signingalgorithms and "EdDSA" in a.signingalgorithms


@pytest.mark.parametrize("extra, message", [
    ({"auth": {"htpasswd": {"realm": "r"}}}, "config.yml: auth.htpasswd.path: required"),
    ({"auth": {"silly": {"service": "s"}}}, "config.yml: auth.silly.realm: required"),
    ({"auth": {"token": {"realm": "r", "service": "s", "issuer": "i"}}},
     "config.yml: auth.token: token auth requires at least one token signing key: set rootcertbundle or jwks"),
    ({"auth": {"token": {"realm": "r", "service": "s", "issuer": "i", "jwks": "/j", "signingalgorithms": ["HS256"]}}},
     "config.yml: auth.token.signingalgorithms.0: HS256: HMAC algorithms are refused; use one of RS256, RS384, "
     "RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"),
    ({"auth": {"token": {"realm": "r", "service": "s", "issuer": "i", "jwks": "/j", "signingalgorithms": ["none"]}}},
     "config.yml: auth.token.signingalgorithms.0: unknown signing algorithm 'none'; expected one of RS256, RS384, "
     "RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"),
    ({"http": {"tls": {"certificate": "/c"}}}, "config.yml: http.tls.key: required with http.tls.certificate"),
    ({"tokenserver": {"issuer": "i", "service": "s", "signingkey": "/k"}}, "config.yml: tokenserver.htpasswd: required"),
    ({"tokenserver": {"issuer": "i", "service": "s", "signingkey": "/k", "htpasswd": "/h",
                      "access": [{"name": "a/*", "users": ["x"], "actions": ["pull", "write"]}]}},
     "config.yml: tokenserver.access.0.actions: expected a list of pull, push, delete, *, got ['write']"),
    ({"tokenserver": {"issuer": "i", "service": "s", "signingkey": "/k", "htpasswd": "/h",
                      "access": [{"name": "a/*", "actions": ["pull"]}]}},
     'config.yml: tokenserver.access.0: names no users or groups (use users: ["*"] or ["anonymous"])'),
])
def test_errors_name_the_key(extra, message):
    assert error(extra) == message


def test_tokenserver_rules():
    ts = parse({"tokenserver": {"issuer": "i", "service": "s", "signingkey": "/k", "htpasswd": "/h",
                                "groups": {"devs": ["bob"]},
                                "access": [{"name": "team-a/*", "groups": ["devs"], "actions": ["pull"]},
                                           {"name": "*", "users": ["anonymous"], "actions": ["pull"]}]}}).tokenserver
    devs, anyone = ts.rules
    assert devs.applies("repository", "team-a/x/y", "bob", ts.groups["bob"])
    assert not devs.applies("repository", "team-b/x", "bob", ts.groups["bob"])
    assert not devs.applies("repository", "team-a/x", "carol", frozenset())
    assert anyone.applies("repository", "a/b", None, frozenset())
    assert not anyone.applies("repository", "a/b", "carol", frozenset())
    assert (ts.addr, ts.expiration) == (":5001", 300.0)


def test_tokenserver_and_auth_token_must_agree():
    cfg = parse({"auth": {"token": {"realm": "https://r:5001/token", "service": "svc", "issuer": "iss", "jwks": "/j"}},
                 "tokenserver": {"issuer": "other", "service": "svc", "signingkey": "/k", "htpasswd": "/h"}})
    assert cfg.warnings == ["config.yml: tokenserver.issuer: differs from auth.token.issuer ('iss'): "
                            "the registry will refuse these tokens"]
