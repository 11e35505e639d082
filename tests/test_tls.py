"""http.tls against the running daemon, probed with openssl s_client and curl."""

import hashlib
import re
import ssl
import subprocess

import pytest

from distregistry.config import Config, ConfigError
from tests.support.pki import PKI
from tests.support.secure import SecureDaemon

SUITES = ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]
OPENSSL_SUITES = {"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI.create(tmp_path_factory.mktemp("pki"))


def start(tmp_path, pki, client_cert=None, **tls):
    cfg = {"http": {"tls": {"certificate": str(pki.server_cert), "key": str(pki.server_key), **tls}}}
    d = SecureDaemon("distregistry", root=tmp_path / "data", workdir=tmp_path / "run", extra_config=cfg,
                     ca_file=str(pki.ca), client_cert=client_cert)
    return d.start()


def s_client(port, *args, send=b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
    """(handshake ok, output) of one openssl s_client run that sends a request."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                        "-ign_eof", *args], input=send, capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode("latin-1")
    return b"HTTP/1.1 200" in p.stdout, out


def negotiated(out):
    m = re.search(r"Cipher is (\S+)", out)
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def tls12(tmp_path_factory, pki):
    d = start(tmp_path_factory.mktemp("tls12"), pki, minimumtls="tls1.2", ciphersuites=SUITES)
    yield d
    d.stop()


def test_tls11_refused_when_minimum_is_tls12(tls12):
    ok, out = s_client(tls12.port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert not ok
    assert "alert protocol version" in out, out   # the server refused it (alert 70)
    assert negotiated(out) in (None, "(NONE)")


def test_tls12_accepted_with_a_configured_suite(tls12):
    ok, out = s_client(tls12.port, "-tls1_2")
    assert ok, out
    assert negotiated(out) in OPENSSL_SUITES
    assert "TLSv1.2" in out


def test_suite_outside_the_list_is_refused(tls12):
    ok, out = s_client(tls12.port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert not ok
    assert "handshake failure" in out, out


def test_served_certificate_is_the_configured_one(tls12, pki):
    served = ssl.get_server_certificate(("127.0.0.1", tls12.port))
    configured = pki.server_cert.read_text()
    assert hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).digest() == \
        hashlib.sha256(ssl.PEM_cert_to_DER_cert(configured)).digest()


def test_api_over_tls_and_alpn_offers_http11_only(tls12, pki):
    r = tls12.request("GET", "/v2/")
    assert r.status == 200
    ok, out = s_client(tls12.port, "-tls1_2", "-alpn", "h2,http/1.1")
    assert ok and "ALPN protocol: http/1.1" in out, out
    p = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        f"https://127.0.0.1:{tls12.port}/v2/"], capture_output=True, text=True, timeout=30)
    assert p.stdout == "1.1 200", p.stderr


def test_tls12_refused_when_minimum_is_tls13(tmp_path, pki):
    d = start(tmp_path, pki, minimumtls="tls1.3")
    try:
        ok, out = s_client(d.port, "-tls1_2")
        assert not ok and "protocol version" in out, out
        ok, out = s_client(d.port, "-tls1_3")
        assert ok and "TLSv1.3" in out, out
    finally:
        d.stop()


def test_client_certificates_with_clientcas(tmp_path, pki):
    d = start(tmp_path, pki, client_cert=(pki.client_cert, pki.client_key), clientcas=[str(pki.ca)])
    try:
        for version in ("-tls1_2", "-tls1_3"):
            ok, out = s_client(d.port, version)
            assert not ok, out
            assert re.search(r"alert (handshake failure|certificate required)", out), out
            ok, out = s_client(d.port, version, "-cert", str(pki.evil_cert), "-key", str(pki.evil_key))
            assert not ok and "unknown ca" in out, out
            ok, out = s_client(d.port, version, "-cert", str(pki.client_cert), "-key", str(pki.client_key))
            assert ok, out
        assert d.request("GET", "/v2/").status == 200   # python's ssl with the client certificate
    finally:
        d.stop()


def test_optional_client_certificates(tmp_path, pki):
    d = start(tmp_path, pki, clientcas=[str(pki.ca)], clientauth="verify-client-cert-if-given")
    try:
        assert s_client(d.port, "-tls1_2")[0]
        assert s_client(d.port, "-tls1_2", "-cert", str(pki.client_cert), "-key", str(pki.client_key))[0]
        ok, out = s_client(d.port, "-tls1_2", "-cert", str(pki.evil_cert), "-key", str(pki.evil_key))
        assert not ok and "unknown ca" in out, out
    finally:
        d.stop()


def test_bad_tls_files_fail_start_up_naming_the_key(tmp_path, pki):
    d = start(tmp_path, pki)
    d.stop()
    d.extra_config = {"http": {"tls": {"certificate": str(pki.server_cert), "key": str(pki.client_key)}}}
    with pytest.raises(AssertionError):
        d.start(timeout=10, attempts=1)
    assert "http.tls: cannot build the TLS context" in d.log_text()
    assert "Traceback" not in d.log_text()


def config(tls):
    return Config.parse({"version": "0.1", "storage": "inmemory", "http": {"tls": {"certificate": "/c", "key": "/k",
                                                                                   **tls}}}, "config.yml")


@pytest.mark.parametrize("tls, message", [
    ({"minimumtls": "tls1.1"}, "config.yml: http.tls.minimumtls: tls1.1 is insecure and no longer accepted; use tls1.2 or tls1.3"),
    ({"minimumtls": "ssl3"}, "config.yml: http.tls.minimumtls: expected one of tls1.2, tls1.3, got 'ssl3'"),
    ({"ciphersuites": ["TLS_FOO"]}, "config.yml: http.tls.ciphersuites.0: unknown cipher suite 'TLS_FOO'"),
    ({"ciphersuites": ["TLS_RSA_WITH_3DES_EDE_CBC_SHA"]},
     "config.yml: http.tls.ciphersuites.0: TLS_RSA_WITH_3DES_EDE_CBC_SHA: insecure cipher suite, not available in this build's OpenSSL"),
    ({"clientauth": "sometimes"}, "config.yml: http.tls.clientauth: expected one of require-and-verify-client-cert, verify-client-cert-if-given, got 'sometimes'"),
    ({"letsencrypt": {"cachefile": "/x"}}, "config.yml: http.tls.letsencrypt: not supported yet"),
    ({"ciphersuites": ["TLS_AES_128_GCM_SHA256"]},
     "config.yml: http.tls.ciphersuites: lists no TLS 1.2 suite, so TLS 1.2 clients could never connect"),
])
def test_tls_config_errors(tls, message):
    with pytest.raises(ConfigError) as e:
        config(tls)
    assert str(e.value) == message


def test_suites_with_tls13_only_are_warned_about():
    cfg = config({"minimumtls": "tls1.3", "ciphersuites": SUITES})
    assert cfg.warnings == ["config.yml: http.tls.ciphersuites: ignored with minimumtls: tls1.3 "
                            "(TLS 1.3 suites are not configurable)"]
