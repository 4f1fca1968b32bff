"""The project's PKI: a CA, and client and serving certificates signed by it. The control plane's PKI
(controlplane/pki.py) and the lab's node identities (kubelets, kube-proxies) issue theirs from the CA key `cluster up`
keeps; the admission webhook makes a CA of its own and serves with a certificate from it (extender/webhook.py)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=365)
CA_KEY = "ca.key"
CA_CERT = "ca.crt"


def write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def create_ca(directory: Path, common_name: str) -> Path:
    """A self-signed CA: writes `ca.crt` and `ca.key` into `directory`; returns the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    write_private_key(directory / CA_KEY, key)
    (directory / CA_CERT).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return directory / CA_CERT


def issue_serving_certificate(
    ca_directory: Path,
    name: str,
    *,
    common_name: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    output_dir: Path | None = None,
) -> tuple[Path, Path]:
    """A TLS server certificate for `dns_names` and `ip_addresses`, signed by the CA in `ca_directory`: writes
    `<name>.crt` and `<name>.key` into `output_dir` (default: the CA's folder); returns their paths."""
    alternative_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return _issue(
        ca_directory, name, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.SubjectAlternativeName(alternative_names), output_dir,
    )  # fmt: skip


def issue_client_certificate(
    ca_directory: Path,
    name: str,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    output_dir: Path | None = None,
) -> tuple[Path, Path]:
    """A client certificate signed by the CA in `ca_directory` (the apiserver maps CN to the user and O to its
    groups): writes `<name>.crt` and `<name>.key` into `output_dir` (default: the CA's folder); returns their paths."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    return _issue(ca_directory, name, subject, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, None, output_dir)


def _issue(
    ca_directory: Path,
    name: str,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    alternative_names: x509.SubjectAlternativeName | None,
    output_dir: Path | None,
) -> tuple[Path, Path]:
    ca_cert = x509.load_pem_x509_certificate((ca_directory / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise ValueError(f"{ca_directory / CA_KEY} is not an RSA key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alternative_names is not None:
        builder = builder.add_extension(alternative_names, critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())
    directory = output_dir or ca_directory
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    write_private_key(key_path, key)
    return cert_path, key_path
