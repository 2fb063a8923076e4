"""The plane's certificates and keys, made once with ``cryptography`` and kept under
build/k8s/pki until `make k8s-down`. One CA signs everything: the API server's serving
certificate, every client (admin in system:masters, the controller manager, the scheduler, each
kubelet as system:node:<name>) and each kubelet's serving certificate. ECDSA P-256 throughout:
key generation is instant, and the API server signs service-account tokens with ES256."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from e2e.plane import names

VALID = datetime.timedelta(days=365)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _name(common: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _load(pair: Pair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return x509.load_pem_x509_certificate(pair.cert.read_bytes()), key


def ca() -> Pair:
    pair = Pair(names.PKI / "ca.crt", names.PKI / "ca.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    names.PKI.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = _name("konsul-local-plane-ca")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def issue(stem: str, common: str, org: str | None = None, *, dns: tuple[str, ...] = (),
          ips: tuple[IPAddress, ...] = ()) -> Pair:
    """A certificate signed by the CA: a client one, or a serving one when it has names."""
    pair = Pair(names.PKI / f"{stem}.crt", names.PKI / f"{stem}.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    ca_cert, ca_key = _load(ca())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (x509.CertificateBuilder().subject_name(_name(common, org))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALID)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if dns or ips:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ip) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = (builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def service_account_key() -> Pair:
    """The key pair the API server signs service-account tokens with (cert = public key PEM)."""
    pair = Pair(names.PKI / "sa.pub", names.PKI / "sa.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    names.PKI.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pair.key, key)
    pair.cert.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pair


def apiserver() -> Pair:
    service_ip = names.SERVICE_CIDR.network_address + 1  # the `kubernetes` Service's ClusterIP
    dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
           f"kubernetes.default.svc.{names.CLUSTER_DOMAIN}", "localhost")
    return issue("apiserver", "kube-apiserver", dns=dns,
                 ips=(names.BRIDGE_IP, service_ip, ipaddress.IPv4Address("127.0.0.1")))


def admin() -> Pair:
    return issue("admin", "kubernetes-admin", "system:masters")


def kubelet_client(node: str) -> Pair:
    return issue(f"kubelet-{node}", f"system:node:{node}", "system:nodes")


def kubelet_serving(node: str, ip: IPAddress) -> Pair:
    return issue(f"kubelet-{node}-serving", f"system:node:{node}", "system:nodes",
                 dns=(node,), ips=(ip,))


def kubeconfig(path: Path, user: str, pair: Pair) -> Path:
    """A kubeconfig for one client certificate (paths, not inline data: a reader sees which)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: local\n  cluster:\n    server: {names.API_URL}\n"
        f"    certificate-authority: {ca().cert}\n"
        f"users:\n- name: {user}\n  user:\n    client-certificate: {pair.cert}\n"
        f"    client-key: {pair.key}\n"
        f"contexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\n"
        "current-context: local\n")
    path.chmod(0o600)
    return path
