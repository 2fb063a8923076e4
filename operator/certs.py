"""The certificates and secrets the operator makes for a secure cluster (pure: no I/O).

- ``<name>-ca``: the cluster's CA (``ca.crt``, ``ca.key``). Never mounted anywhere: only the
  operator signs with it.
- ``<name>-tls``: mounted in every pod at ``TLS_MOUNT``: ``ca.crt`` and, per member,
  ``<pod>.crt`` and ``<pod>.key``; a node reads its own pair (``$(POD_NAME).crt``). Each
  certificate names everything a member is reached by: its pod DNS name under the headless
  Service (short and long forms), the client Service, ``localhost`` and ``127.0.0.1``.
- ``<name>-management-token``: the management token (``token``), mounted at ``ACL_MOUNT`` for
  the nodes' ``KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN_FILE``; the operator calls with it.
- ``<name>-metrics-token``: a read-only token (``token``) for Prometheus' ServiceMonitor.

A member certificate is renewed when it is within ``renewBefore`` of expiring, or was issued
before the time in the ``konsul.io/renewCertificates`` annotation; the planner renews one member
at a time and waits until that member serves the new one (nodes re-read their files).
"""

from __future__ import annotations

import base64
import datetime
import uuid
from typing import Any

from cryptography import x509
from konsul_operator import names
from konsul_operator.planner import MemberCert
from konsul_operator.resources import Owner, labels, owner_reference

from konsul import pki

CA_CERT, CA_KEY = "ca.crt", "ca.key"
TOKEN_KEY = "token"


def describe(cert_pem: bytes, pod: str) -> MemberCert:
    cert = x509.load_pem_x509_certificate(cert_pem)
    issued = cert.not_valid_before_utc + pki.BACKDATE  # backdated for clock skew: undo it
    return MemberCert(pod, cert.serial_number, issued.timestamp(),
                      cert.not_valid_after_utc.timestamp())


def served_serial(der: bytes | None) -> int | None:
    return x509.load_der_x509_certificate(der).serial_number if der else None


def member_names(owner: Owner, pod: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) a member's certificate must carry."""
    ns = owner.namespace
    headless, client = names.headless_service(owner.name), names.client_service(owner.name)
    dns = [
        f"{pod}.{headless}.{ns}.svc", f"{pod}.{headless}.{ns}.svc.cluster.local",
        f"{pod}.{headless}.{ns}", f"{pod}.{headless}",
        f"{client}.{ns}.svc", f"{client}.{ns}.svc.cluster.local", f"{client}.{ns}", client,
        "localhost",
    ]
    return dns, ["127.0.0.1"]


def issue_member(ca: pki.Issued, owner: Owner, pod: str, validity: float) -> pki.Issued:
    dns, ips = member_names(owner, pod)
    return pki.issue(ca, pod, dns, ips, validity=datetime.timedelta(seconds=validity))


def new_ca(owner: Owner) -> pki.Issued:
    return pki.new_ca(f"Konsul CA {owner.namespace}/{owner.name}")


def ca_of(data: dict[str, bytes]) -> pki.Issued:
    return pki.Issued(data[CA_CERT], data[CA_KEY])


def member_files(issued: pki.Issued, pod: str) -> dict[str, bytes]:
    return {f"{pod}.crt": issued.cert_pem, f"{pod}.key": issued.key_pem}


def new_token() -> bytes:
    return str(uuid.uuid4()).encode()


# ------------------------------------------------------------------------------ Secrets


def secret(owner: Owner, name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels(owner),
            "ownerReferences": [owner_reference(owner)],
        },
        "data": encode(data),
    }


def encode(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}


def decode(obj: dict[str, Any] | None) -> dict[str, bytes] | None:
    if obj is None:
        return None
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def member_certs(owner: Owner, data: dict[str, bytes]) -> dict[str, MemberCert]:
    """Every member certificate the TLS Secret holds, by pod name."""
    out: dict[str, MemberCert] = {}
    for key, value in data.items():
        pod = key.removesuffix(".crt")
        if key.endswith(".crt") and key != CA_CERT and pod.startswith(f"{owner.name}-"):
            out[pod] = describe(value, pod)
    return out
