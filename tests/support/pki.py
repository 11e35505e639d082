"""A throw-away PKI for TLS and token tests: a CA, a server certificate for 127.0.0.1 /
localhost, client certificates, and token-signing keys, written as PEM files."""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn, key, issuer_cert=None, issuer_key=None, ca=False, server=False, client=False,
              not_before=None, days=30):
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = not_before or now - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    signer = issuer_key or key
    # Ed25519/Ed448 certificates carry no separate hash algorithm.
    return builder.sign(signer, None if isinstance(signer, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
                        else hashes.SHA256())


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass
class PKI:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    evil_cert: Path
    evil_key: Path

    @classmethod
    def create(cls, dir_: Path) -> "PKI":
        dir_.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = make_cert("test CA", ca_key, ca=True, days=60)
        files = {"ca": cert_pem(ca)}
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files["server_cert"] = cert_pem(make_cert("127.0.0.1", server_key, ca, ca_key, server=True))
        files["server_key"] = key_pem(server_key)
        client_key = ec.generate_private_key(ec.SECP256R1())
        files["client_cert"] = cert_pem(make_cert("client1", client_key, ca, ca_key, client=True))
        files["client_key"] = key_pem(client_key)
        evil_key = ec.generate_private_key(ec.SECP256R1())
        files["evil_cert"] = cert_pem(make_cert("evil", evil_key, client=True))
        files["evil_key"] = key_pem(evil_key)
        paths = {}
        for name, data in files.items():
            path = dir_ / f"{name}.pem"
            path.write_bytes(data)
            paths[name] = path
        return cls(dir=dir_, **paths)

    def cert_dir(self) -> Path:
        """A directory for skopeo's --cert-dir / --dest-cert-dir: the CA as ca.crt."""
        d = self.dir / "certs.d"
        d.mkdir(exist_ok=True)
        (d / "ca.crt").write_bytes(self.ca.read_bytes())
        return d
