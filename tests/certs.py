"""Certificates for tests, made with ``konsul.pki`` (the operator's own CA code) and written to a
directory: a CA, member certificates for given hosts, and client contexts that trust the CA.

    certs = CertDir(tmp_path / "tls")
    env = certs.member_env("node1", ["127.0.0.1"])      # KONSUL_TLS_* for a node
    context = certs.client_context()                    # for a test's HTTPS client
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from konsul import pki


@dataclass
class CertDir:
    root: Path
    ca: pki.Issued = field(default_factory=pki.new_ca)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(self.ca.cert_pem)

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def write(self, name: str, issued: pki.Issued) -> tuple[Path, Path]:
        cert, key = self.root / f"{name}.crt", self.root / f"{name}.key"
        # Key first: a reader polling the certificate sees a matching pair once it changes.
        key.write_bytes(issued.key_pem)
        cert.write_bytes(issued.cert_pem)
        return cert, key

    def member(
        self,
        name: str,
        hosts: list[str],
        *,
        issuer: pki.Issued | None = None,
        validity: datetime.timedelta = pki.CERT_VALIDITY,
        start: datetime.datetime | None = None,
    ) -> tuple[Path, Path]:
        """Issue and write ``name``'s certificate for ``hosts`` (IPs and DNS names)."""
        ips = [h for h in hosts if h.replace(".", "").isdigit()]
        dns = [h for h in hosts if h not in ips]
        issued = pki.issue(issuer or self.ca, name, dns, ips, validity=validity, start=start)
        return self.write(name, issued)

    def member_env(self, name: str, hosts: list[str], **kwargs: object) -> dict[str, str]:
        cert, key = self.member(name, hosts, **kwargs)  # type: ignore[arg-type]
        return {
            "KONSUL_TLS_CERT_FILE": str(cert),
            "KONSUL_TLS_KEY_FILE": str(key),
            "KONSUL_TLS_CA_FILE": str(self.ca_file),
        }

    def client_context(self, name: str | None = None) -> ssl.SSLContext:
        """Trusts only this CA; with ``name``, presents that (already written) certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if name is not None:
            context.load_cert_chain(self.root / f"{name}.crt", self.root / f"{name}.key")
        return context
