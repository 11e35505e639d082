"""The ``http.tls`` section: certificate, client CAs, protocol floor and cipher suites.

Only names are checked here; the files are read (and their errors reported with the key
path) when the daemon builds its TLS context (distregistry/tls.py)."""

import attr

# registry:2 3.x accepts only these floors; 2.8's tls1.0/tls1.1 are refused on purpose.
MINIMUM_VERSIONS = ("tls1.2", "tls1.3")
CLIENT_AUTH = ("require-and-verify-client-cert", "verify-client-cert-if-given")

# Go's crypto/tls names (what registry:2's `ciphersuites` takes) -> OpenSSL names
# (twisted.md 5.3). TLS 1.3 suites are not configurable in Go either.
IANA_TO_OPENSSL = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# Known to Go but refused by the bundled OpenSSL (twisted.md 5.3): a clear error, not a crash.
BROKEN = ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
          "TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA")
# registry:2's default list (its TLS 1.3 entries are implied by TLS 1.3 itself).
DEFAULT_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
)


def _suites(node):
    if node.value is None:
        return DEFAULT_SUITES
    names = []
    for item in node.as_list():
        name = item.as_str("")
        if name in BROKEN:
            raise item.error(f"{name}: insecure cipher suite, not available in this build's OpenSSL")
        if name not in IANA_TO_OPENSSL and name not in TLS13_SUITES:
            raise item.error(f"unknown cipher suite {name!r}")
        names.append(name)
    return tuple(names)


def _minimum(node):
    value = node.as_str("") or "tls1.2"
    if value in ("tls1.0", "tls1.1"):
        raise node.error(f"{value} is insecure and no longer accepted; use tls1.2 or tls1.3")
    if value not in MINIMUM_VERSIONS:
        raise node.error(f"expected one of {', '.join(MINIMUM_VERSIONS)}, got {value!r}")
    return value


@attr.s(frozen=True, slots=True)
class TLSConfig:
    certificate = attr.ib()  # PEM path (may hold the chain)
    key = attr.ib()  # PEM path
    clientcas = attr.ib()  # tuple of PEM paths; non-empty turns client verification on
    clientauth = attr.ib()  # one of CLIENT_AUTH
    minimumtls = attr.ib()  # one of MINIMUM_VERSIONS
    ciphersuites = attr.ib()  # tuple of Go names (TLS <= 1.2 suites take effect)

    def openssl_ciphers(self):
        return [IANA_TO_OPENSSL[n] for n in self.ciphersuites if n in IANA_TO_OPENSSL]

    @classmethod
    def parse(cls, node):
        """None when ``http.tls`` has no certificate (plain HTTP)."""
        cert = node["certificate"]
        key = node["key"]
        if not cert.as_str("") and not key.as_str(""):
            return None
        if not cert.as_str(""):
            raise cert.error("required with http.tls.key")
        if not key.as_str(""):
            raise key.error("required with http.tls.certificate")
        cas = tuple(item.as_str("") for item in node["clientcas"].as_list())
        minimum = _minimum(node["minimumtls"])
        suites = _suites(node["ciphersuites"])
        if node["ciphersuites"].value is not None:
            if minimum == "tls1.3":
                node["ciphersuites"].warn("ignored with minimumtls: tls1.3 (TLS 1.3 suites are not configurable)")
            elif not any(n in IANA_TO_OPENSSL for n in suites):
                raise node["ciphersuites"].error("lists no TLS 1.2 suite, so TLS 1.2 clients could never connect")
        clientauth = node["clientauth"].as_str("") or CLIENT_AUTH[0]
        if clientauth not in CLIENT_AUTH:
            raise node["clientauth"].error(f"expected one of {', '.join(CLIENT_AUTH)}, got {clientauth!r}")
        return cls(certificate=cert.as_str(""), key=key.as_str(""), clientcas=cas, clientauth=clientauth,
                   minimumtls=minimum, ciphersuites=suites)
