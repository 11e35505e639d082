"""The TLS context of the API port, built from ``http.tls`` (twisted.md 5.1).

strports' ``ssl:`` cannot express a cipher list, a protocol floor or client CAs, so the
CertificateOptions are built here and the port is an SSL4ServerEndpoint."""

from OpenSSL import SSL, crypto
from twisted.internet import ssl

from distregistry.config import ConfigError

_VERSIONS = {"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}
# ALPN: HTTP/1.1 only. Twisted's h2 costs ~4x the CPU per byte over TLS and Go clients pick
# h2 whenever offered (twisted.md 5.4), so `http.http2.disabled` changes nothing here.
ALPN = [b"http/1.1"]


def _read(source, key, path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(source, key, f"cannot read {path}: {e.strerror}") from None


def certificate_options(tls, source, section="http.tls"):
    """CertificateOptions for *tls* (a TLSConfig of *section*); file and content problems
    raise ConfigError naming the key, so start-up fails with one line."""
    cert_pem = _read(source, f"{section}.certificate", tls.certificate)
    key_pem = _read(source, f"{section}.key", tls.key)
    try:
        chain = ssl.Certificate.loadPEM(cert_pem)
    except (crypto.Error, SSL.Error, ValueError) as e:
        raise ConfigError(source, f"{section}.certificate", f"not a PEM certificate: {e}") from None
    try:
        key = ssl.KeyPair.load(key_pem, crypto.FILETYPE_PEM)
    except (crypto.Error, SSL.Error, ValueError) as e:
        raise ConfigError(source, f"{section}.key", f"not a PEM private key: {e}") from None
    # Intermediates following the leaf in the certificate file are served too.
    extra = [ssl.Certificate.loadPEM(block).original for block in _pem_blocks(cert_pem)[1:]]
    kw = {"raiseMinimumTo": _VERSIONS[tls.minimumtls], "acceptableProtocols": ALPN}
    if tls.minimumtls == "tls1.2":
        kw["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(":".join(tls.openssl_ciphers()))
    if tls.clientcas:
        cas = []
        for i, path in enumerate(tls.clientcas):
            blocks = _pem_blocks(_read(source, f"{section}.clientcas.{i}", path))
            if not blocks:
                raise ConfigError(source, f"{section}.clientcas.{i}", f"no certificate in {path}")
            try:
                cas.extend(ssl.Certificate.loadPEM(block) for block in blocks)
            except (crypto.Error, SSL.Error, ValueError) as e:
                raise ConfigError(source, f"{section}.clientcas.{i}", f"not a PEM certificate: {e}") from None
        if tls.clientauth == "require-and-verify-client-cert":
            kw["trustRoot"] = ssl.trustRootFromCertificates(cas)   # verifies and requires
        else:
            kw.update(verify=True, caCerts=[c.original for c in cas], requireCertificate=False)
    try:
        opts = ssl.CertificateOptions(privateKey=key.original, certificate=chain.original,
                                      extraCertChain=extra, **kw)
        opts.getContext()   # surfaces a key/certificate mismatch or an empty cipher list now
    except (ValueError, SSL.Error) as e:
        raise ConfigError(source, section, f"cannot build the TLS context: {e}") from None
    return opts


def _pem_blocks(data):
    end = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" + end + b"\n" for part in data.split(end) if b"-----BEGIN CERTIFICATE" in part]
