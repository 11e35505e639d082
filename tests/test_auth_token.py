"""auth.token with the built-in token server (tokenserver), against the running daemon:
skopeo through the issuer, per-repository rules, and one test per kind of bad token."""

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from distregistry.auth.token import thumbprint
from tests.support.daemon import free_port
from tests.support.pki import PKI, cert_pem, key_pem, make_cert
from tests.support.secure import SecureDaemon
from tests.test_auth_htpasswd import basic, htpasswd_line

pytestmark = pytest.mark.e2e

SERVICE = "distregistry-test"
ISSUER = "test-issuer"


class Setup:
    def __init__(self, base):
        self.pki = PKI.create(base / "pki")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (base / "signing.key").write_bytes(key_pem(self.key))
        (base / "signing.crt").write_bytes(cert_pem(make_cert("token signer", self.key)))
        self.kid = thumbprint(self.key.public_key())
        (base / "htpasswd").write_text("".join(htpasswd_line(u, f"{u}-pw") for u in ("alice", "bob", "carol")))
        self.ts_port = free_port()
        self.realm = f"https://127.0.0.1:{self.ts_port}/token"
        tls = {"certificate": str(self.pki.server_cert), "key": str(self.pki.server_key)}
        self.config = {
            "http": {"tls": tls},
            "auth": {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                               "rootcertbundle": str(base / "signing.crt")}},
            "tokenserver": {
                "addr": f"127.0.0.1:{self.ts_port}", "tls": tls, "issuer": ISSUER, "service": SERVICE,
                "signingkey": str(base / "signing.key"), "htpasswd": str(base / "htpasswd"),
                "groups": {"readers": ["bob"]},
                "access": [
                    {"name": "team-a/*", "users": ["alice"], "actions": ["pull", "push", "delete"]},
                    {"name": "team-a/*", "groups": ["readers"], "actions": ["pull"]},
                    {"name": "team-b/*", "users": ["carol"], "actions": ["pull", "push"]},
                    {"name": "public/*", "users": ["anonymous", "*"], "actions": ["pull"]},
                    {"type": "registry", "name": "catalog", "users": ["alice"], "actions": ["*"]},
                ],
            },
        }
        self.daemon = SecureDaemon("distregistry", root=base / "data", workdir=base / "run",
                                   extra_config=self.config, ca_file=str(self.pki.ca))

    def token(self, user=None, scope=(), **params):
        """A token from the issuer (GET /token, Basic credentials when *user*)."""
        conn = self.daemon.connection()
        conn.port = self.ts_port
        query = urlencode([("service", SERVICE)] + [("scope", s) for s in scope] + list(params.items()))
        conn.request("GET", f"/token?{query}", headers=basic(user, f"{user}-pw") if user else {})
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        assert r.status == 200, body
        return body

    def mint(self, headers=None, key=None, alg="RS256", **claims):
        """A token made here, signed by the trusted key unless *key* says otherwise."""
        now = int(time.time())
        body = {"iss": ISSUER, "aud": SERVICE, "sub": "alice", "exp": now + 300, "nbf": now - 1, "iat": now,
                "access": [{"type": "repository", "name": "team-a/app", "actions": ["pull"]}]}
        body.update(claims)
        return jwt.encode(body, key or self.key, algorithm=alg, headers={"kid": self.kid, **(headers or {})})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    s = Setup(tmp_path_factory.mktemp("token"))
    s.daemon.start()
    yield s
    s.daemon.stop()


def get(env, path, token=None):
    return env.daemon.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})


def allowed(r):
    """Past access control: 200, or 404 when the repository was not pushed (yet)."""
    return r.status in (200, 404) and r.header("WWW-Authenticate") is None


def challenge(env, scope=None, error=None):
    text = f'Bearer realm="{env.realm}",service="{SERVICE}"'
    if scope:
        text += f',scope="{scope}"'
    if error:
        text += f',error="{error}"'
    return text


def test_skopeo_push_and_pull_through_the_issuer(env, skopeo, e2e_images, tmp_path):
    certs = str(env.pki.cert_dir())
    dest = env.daemon.docker_ref("team-a/app", "v1")
    skopeo.run("copy", "--quiet", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", "alice:alice-pw",
               e2e_images.small.ref, dest)
    skopeo.run("copy", "--quiet", "--src-cert-dir", certs, "--src-creds", "bob:bob-pw", dest,
               f"oci:{tmp_path / 'pulled'}:v1")
    # bob may only pull team-a/*: his push is refused
    p = skopeo.run("copy", "--quiet", "--dest-cert-dir", certs, "--dest-creds", "bob:bob-pw",
                   e2e_images.small2.ref, env.daemon.docker_ref("team-a/app", "bob"), check=False)
    assert p.returncode != 0 and ("401" in p.stderr or "unauthorized" in p.stderr.lower()), p.stderr
    # and team-b/x is not his to pull
    skopeo.run("copy", "--quiet", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds",
               "carol:carol-pw", e2e_images.small.ref, env.daemon.docker_ref("team-b/x", "v1"))
    p = skopeo.run("inspect", "--raw", "--cert-dir", certs, "--creds", "bob:bob-pw",
                   env.daemon.docker_ref("team-b/x", "v1"), check=False)
    assert p.returncode != 0, p.stdout
    # wrong password: the issuer refuses
    p = skopeo.run("inspect", "--raw", "--cert-dir", certs, "--creds", "bob:nope", dest, check=False)
    assert p.returncode != 0


def test_rules_decide_what_a_token_carries(env):
    bob = env.token("bob", ["repository:team-a/app:pull,push", "repository:team-b/x:pull"])
    assert jwt.decode(bob["token"], options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull"]}]
    assert allowed(get(env, "/v2/team-a/app/tags/list", bob["token"]))
    r = get(env, "/v2/team-b/x/tags/list", bob["token"])
    assert (r.status, r.header("WWW-Authenticate")) == (
        401, challenge(env, "repository:team-b/x:pull", "insufficient_scope"))
    anonymous = env.token(None, ["repository:public/base:pull", "repository:team-a/app:pull"])
    assert [a["name"] for a in jwt.decode(anonymous["token"], options={"verify_signature": False})["access"]] == [
        "public/base"]
    alice = env.token("alice", ["registry:catalog:*"])
    assert get(env, "/v2/_catalog", alice["token"]).status == 200
    r = get(env, "/v2/_catalog", bob["token"])
    assert r.header("WWW-Authenticate") == challenge(env, "registry:catalog:*", "insufficient_scope")


def test_oauth2_password_and_refresh_grants(env):
    def post(form):
        conn = env.daemon.connection()
        conn.port = env.ts_port
        conn.request("POST", "/token", body=urlencode(form),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        body = json.loads(r.read())
        conn.close()
        return r.status, body

    status, body = post({"grant_type": "password", "username": "alice", "password": "alice-pw", "service": SERVICE,
                         "scope": "repository:team-a/app:pull", "access_type": "offline", "client_id": "test"})
    assert status == 200 and body["refresh_token"]
    status, again = post({"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "service": SERVICE,
                          "scope": "repository:team-a/app:push", "client_id": "test"})
    assert status == 200
    assert get(env, "/v2/team-a/app/tags/list", again["access_token"]).status == 401  # push only, not pull
    status, bad = post({"grant_type": "password", "username": "alice", "password": "x", "service": SERVICE})
    assert (status, bad["error"]) == (401, "invalid_grant")
    status, bad = post({"grant_type": "refresh_token", "refresh_token": again["access_token"], "service": SERVICE})
    assert (status, bad["error"]) == (400, "invalid_grant")   # an access token is not a refresh token


def test_challenges(env):
    assert get(env, "/v2/").header("WWW-Authenticate") == challenge(env)
    r = env.daemon.request("POST", "/v2/team-a/app/blobs/uploads/")
    assert r.status == 401
    assert r.header("WWW-Authenticate") == challenge(env, "repository:team-a/app:pull,push")
    assert r.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Class": "", "Name": "team-a/app", "Action": "pull"},
        {"Type": "repository", "Class": "", "Name": "team-a/app", "Action": "push"}]
    # Basic credentials sent to a token registry get the plain challenge
    assert get(env, "/v2/team-a/app/tags/list").header("WWW-Authenticate") == challenge(
        env, "repository:team-a/app:pull")
    r = env.daemon.request("GET", "/v2/", headers=basic("alice", "alice-pw"))
    assert (r.status, r.header("WWW-Authenticate")) == (401, challenge(env))
    assert get(env, "/v2/", env.mint(access=[])).status == 200   # /v2/ needs only a valid token




def assert_invalid(env, token):
    r = get(env, "/v2/team-a/app/tags/list", token)
    assert r.status == 401
    assert r.header("WWW-Authenticate") == challenge(env, "repository:team-a/app:pull", "invalid_token")
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_good_minted_token_is_accepted(env):
    assert allowed(get(env, "/v2/team-a/app/tags/list", env.mint()))


def test_tampered_signature(env):
    head, payload, sig = env.mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["access"][0]["name"] = "team-b/x"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert get(env, "/v2/team-b/x/tags/list", f"{head}.{forged}.{sig}").status == 401
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert_invalid(env, f"{head}.{payload}.{flipped}")


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none(env):
    _, payload, _ = env.mint().split(".")
    assert_invalid(env, f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': env.kid})}.{payload}.")


def test_hmac_signed_with_the_public_key(env):
    _, payload, _ = env.mint().split(".")
    public_pem = env.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    head = b64({"alg": "HS256", "typ": "JWT", "kid": env.kid})
    sig = hmac.new(public_pem, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert_invalid(env, f"{head}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}")


def test_expired(env):
    now = int(time.time())
    assert_invalid(env, env.mint(exp=now - 120, iat=now - 600, nbf=now - 600))


def test_not_yet_valid(env):
    assert_invalid(env, env.mint(nbf=int(time.time()) + 600))


def test_wrong_audience(env):
    assert_invalid(env, env.mint(aud="another-registry"))
    assert allowed(get(env, "/v2/team-a/app/tags/list", env.mint(aud=["x", SERVICE])))  # a list holding it


def test_wrong_issuer(env):
    assert_invalid(env, env.mint(iss="someone-else"))


def test_untrusted_key(env):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_invalid(env, env.mint(key=other))
    assert_invalid(env, env.mint(key=other, headers={"kid": thumbprint(other.public_key())}))


def test_token_for_another_repository(env):
    token = env.mint(access=[{"type": "repository", "name": "team-a/other", "actions": ["pull", "push"]}])
    r = get(env, "/v2/team-a/app/tags/list", token)
    assert (r.status, r.header("WWW-Authenticate")) == (
        401, challenge(env, "repository:team-a/app:pull", "insufficient_scope"))


def test_skopeo_login(env, skopeo):
    certs = str(env.pki.cert_dir())
    skopeo.run("login", "--cert-dir", certs, "-u", "alice", "-p", "alice-pw", env.daemon.host)
    p = skopeo.run("list-tags", "--cert-dir", certs, env.daemon.docker_ref("team-a/app"))
    assert "v1" in json.loads(p.stdout)["Tags"]
    bad = skopeo.run("login", "--cert-dir", certs, "-u", "alice", "-p", "wrong", env.daemon.host, check=False)
    assert bad.returncode != 0


def test_challenges_match_registry2(env, tmp_path):
    """Debian's registry:2 2.8.2 with the same auth.token section answers the same challenges."""
    answers = {}
    for kind in ("distregistry", "go"):
        d = SecureDaemon(kind, root=tmp_path / kind / "data", workdir=tmp_path / kind / "run",
                         extra_config={"auth": env.config["auth"]}).start()
        try:
            answers[kind] = [(r.status, r.header("WWW-Authenticate"), r.json()) for r in (
                d.request("GET", "/v2/"), d.request("GET", "/v2/team-a/app/tags/list"),
                d.request("GET", "/v2/_catalog"), d.request("DELETE", f"/v2/a/blobs/sha256:{'0' * 64}"),
                d.request("GET", "/v2/", headers={"Authorization": "Bearer not.a.token"}))]
        finally:
            d.stop()
    assert answers["distregistry"] == answers["go"]


def test_autoredirect_realm(env, tmp_path):
    auth = {"token": {**env.config["auth"]["token"], "autoredirect": True}}
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run",
                     extra_config={"auth": auth}).start()
    try:
        r = d.request("GET", "/v2/", headers={"Host": "registry.example.com:5000"})
        assert r.header("WWW-Authenticate") == \
            f'Bearer realm="https://registry.example.com:5000/auth/token",service="{SERVICE}"'
        r = d.request("GET", "/v2/", headers={"Host": "r.example", "X-Forwarded-Proto": "http"})
        assert r.header("WWW-Authenticate") == f'Bearer realm="http://r.example/auth/token",service="{SERVICE}"'
    finally:
        d.stop()
