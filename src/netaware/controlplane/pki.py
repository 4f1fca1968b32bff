"""Local PKI for the control plane: one CA, the apiserver's serving certificate and its client certificate for
kubelets, the service-account key pair, and static bearer tokens. Written once per `cluster up` into the state folder
(private keys mode 0600). The CA key is kept, so that the lab can issue client certificates to the kubelets and
kube-proxies it starts later (`issue_client_certificate`) without restarting the apiserver, as new static tokens
would need."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from netaware.certificates import create_ca, issue_client_certificate, issue_serving_certificate, write_private_key
from netaware.kube.converters import NAMESPACE


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    service_account_pub: Path
    token_file: Path
    tokens: dict[str, str]
    kubelet_client_cert: Path
    """The apiserver's client certificate towards kubelets (logs, exec, port-forward): system:masters."""
    kubelet_client_key: Path
    """Identity name -> bearer token: admin, kube-controller-manager, kube-scheduler, netaware-scheduler, kwok."""


# name -> (user, groups) as the apiserver's --token-auth-file sees them.
IDENTITIES = {
    "admin": ("netaware-admin", ("system:masters",)),
    "kube-controller-manager": ("system:kube-controller-manager", ()),
    "kube-scheduler": ("system:kube-scheduler", ()),
    # The second scheduler and its extender run as the ServiceAccount the in-cluster manifests use, so the
    # local cluster exercises the same RBAC (scheduler-extender/rbac.yaml).
    "netaware-scheduler": (
        f"system:serviceaccount:{NAMESPACE}:netaware-scheduler",
        ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"),
    ),
    "kwok": ("kwok-controller", ("system:masters",)),
}


KUBELET_CLIENT = "apiserver-kubelet-client"


def create_pki(directory: Path) -> Pki:
    create_ca(directory, "netaware-local-ca")
    issue_serving_certificate(
        directory, "apiserver", common_name="kube-apiserver",
        dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        ip_addresses=["127.0.0.1", "10.96.0.1"],
    )  # fmt: skip
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
        token_file=directory / "tokens.csv",
        tokens={name: secrets.token_hex(16) for name in IDENTITIES},
        kubelet_client_cert=directory / f"{KUBELET_CLIENT}.crt",
        kubelet_client_key=directory / f"{KUBELET_CLIENT}.key",
    )
    write_private_key(pki.service_account_key, sa_key)
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    lines = []
    for name, (user, groups) in IDENTITIES.items():
        group_field = f',"{",".join(groups)}"' if groups else ""
        lines.append(f"{pki.tokens[name]},{user},uid-{name}{group_field}")
    pki.token_file.write_text("\n".join(lines) + "\n")
    pki.token_file.chmod(0o600)
    issue_client_certificate(
        directory, KUBELET_CLIENT, common_name="kube-apiserver-kubelet-client", organizations=("system:masters",)
    )
    return pki


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, token: str, user: str) -> None:
    """A kubeconfig that trusts the local CA and authenticates with a bearer token."""
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "netaware-local", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "netaware-local", "context": {"cluster": "netaware-local", "user": user}}],
        "current-context": "netaware-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
