"""Access records per route, and token verification with x5c chains and JWKS (no daemon)."""

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from twisted.internet import reactor
from zope.interface.verify import verifyObject

from distregistry.auth import make_access_controller
from distregistry.auth.interfaces import Access, IAccessController
from distregistry.auth.records import records_for, scope_string
from distregistry.auth.token import InvalidToken, TokenAccessController, thumbprint
from distregistry.config.auth import ASYMMETRIC_ALGORITHMS, HtpasswdAuth, SillyAuth, TokenAuth
from tests.support.pki import cert_pem, make_cert


def pull(name):
    return Access("repository", name, "pull")


def test_records_as_registry2():
    assert records_for("base", b"GET", None, {}) == []
    assert records_for("catalog", b"GET", None, {}) == [Access("registry", "catalog", "*")]
    assert records_for("tags", b"HEAD", "a/b", {}) == [pull("a/b")]
    assert records_for("manifest", b"PUT", "a", {}) == [pull("a"), Access("repository", "a", "push")]
    assert records_for("manifest", b"DELETE", "a", {}) == [Access("repository", "a", "delete")]
    mount = records_for("blob_upload", b"POST", "a", {"mount": ["sha256:x"], "from": ["b/c"]})
    assert mount == [pull("a"), Access("repository", "a", "push"), pull("b/c")]
    assert scope_string(mount) == "repository:a:pull,push repository:b/c:pull"


def controller(tmp_path, bundle=(), jwks=None, clock=time.time):
    bundle_path = ""
    if bundle:
        bundle_path = tmp_path / "bundle.pem"
        bundle_path.write_bytes(b"".join(cert_pem(c) for c in bundle))
    jwks_path = ""
    if jwks:
        jwks_path = tmp_path / "jwks.json"
        jwks_path.write_text(json.dumps(jwks))
    cfg = TokenAuth(realm="https://auth/token", service="svc", issuer="iss", rootcertbundle=str(bundle_path),
                    jwks=str(jwks_path), signingalgorithms=ASYMMETRIC_ALGORITHMS, autoredirect=False,
                    autoredirectpath="/auth/token")
    return TokenAccessController(cfg, clock=clock)


def claims(**extra):
    now = int(time.time())
    return {"iss": "iss", "aud": "svc", "exp": now + 60, "nbf": now, "iat": now, "sub": "u", "access": [], **extra}


def der(cert):
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_x5c_chain_to_the_bundle(tmp_path):
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = make_cert("root", root_key, ca=True)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = make_cert("intermediate", mid_key, root, root_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_cert("signer", leaf_key, mid, mid_key)
    c = controller(tmp_path, bundle=[root])
    token = jwt.encode(claims(), leaf_key, algorithm="ES256", headers={"x5c": [der(leaf), der(mid)]})
    assert c.verify(token)["sub"] == "u"
    with pytest.raises(InvalidToken, match="does not end at a certificate of rootcertbundle"):
        c.verify(jwt.encode(claims(), leaf_key, algorithm="ES256", headers={"x5c": [der(leaf)]}))
    other_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        c.verify(jwt.encode(claims(), other_key, algorithm="ES256", headers={"x5c": [der(leaf), der(mid)]}))
    expired = make_cert("old", leaf_key, mid, mid_key, not_before=leaf.not_valid_before_utc.replace(year=2020), days=1)
    with pytest.raises(InvalidToken, match="not valid now"):
        c.verify(jwt.encode(claims(), leaf_key, algorithm="ES256", headers={"x5c": [der(expired), der(mid)]}))


SECRET = b"a 32-byte long shared HMAC secret"
SECRET_B64 = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()


def test_jwks_kid_and_eddsa(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    c = controller(tmp_path, jwks={"keys": [{**public, "kid": "k1"}, {"kty": "oct", "k": SECRET_B64, "kid": "h"}]})
    assert c.verify(jwt.encode(claims(aud=["x", "svc"]), key, algorithm="EdDSA", headers={"kid": "k1"}))
    with pytest.raises(InvalidToken, match="untrusted key"):
        c.verify(jwt.encode(claims(), key, algorithm="EdDSA", headers={"kid": "k2"}))
    # the symmetric JWKS entry is never a verification key
    with pytest.raises(InvalidToken, match="not allowed"):
        c.verify(jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "h"}))
    with pytest.raises(InvalidToken, match="exp"):
        c.verify(jwt.encode({k: v for k, v in claims().items() if k != "exp"}, key, algorithm="EdDSA",
                            headers={"kid": "k1"}))


def test_every_controller_provides_the_interface(tmp_path):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    key = ec.generate_private_key(ec.SECP256R1())
    for auth in (HtpasswdAuth(realm="r", path=str(htpasswd)), SillyAuth(realm="r", service="s")):
        assert verifyObject(IAccessController, make_access_controller(auth, reactor, "config.yml"))
    assert verifyObject(IAccessController, controller(tmp_path, bundle=[make_cert("k", key)]))


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                                 "EdDSA"])
def test_every_asymmetric_algorithm_by_bundle_thumbprint(tmp_path, alg):
    curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
    if alg in curves:
        key = ec.generate_private_key(curves[alg])
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    c = controller(tmp_path, bundle=[make_cert("signer", key)])
    token = jwt.encode(claims(), key, algorithm=alg, headers={"kid": thumbprint(key.public_key())})
    assert c.verify(token)["iss"] == "iss"


def test_embedded_jwk_header(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    c = controller(tmp_path, bundle=[make_cert("signer", key)])
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    assert c.verify(jwt.encode(claims(), key, algorithm="ES256", headers={"jwk": jwk}))
    stranger = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(stranger.public_key()))
    with pytest.raises(InvalidToken, match="untrusted key"):
        c.verify(jwt.encode(claims(), stranger, algorithm="ES256", headers={"jwk": jwk}))
