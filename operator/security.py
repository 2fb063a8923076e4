"""Make sure a secure cluster's Secrets exist, and read what a reconcile needs from them.

Runs before anything else in a reconcile (the StatefulSet mounts these Secrets): the CA and the
member certificates (every ordinal the StatefulSet has or is about to have), the management
token and the metrics token. Existing Secrets are never rewritten here: renewing a member's
certificate is a planned step (``renew_member``), one member at a time.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from konsul_operator import certs, names
from konsul_operator.kube import Kube
from konsul_operator.planner import MemberCert
from konsul_operator.resources import Owner
from konsul_operator.spec import ClusterSpec

from konsul import pki
from konsul.durations import parse_duration

EventFn = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Security:
    ca_pem: bytes | None = None  # what the operator trusts when it calls the nodes (no TLS: None)
    token: str | None = None  # the management token (no ACLs: None)
    metrics_token: str | None = None
    ca: pki.Issued | None = None  # the operator's own CA (None with a brought Secret)
    members: dict[str, MemberCert] = field(default_factory=dict)
    validity: float = 0.0
    renew_before: float = 0.0

    def context(self) -> ssl.SSLContext | None:
        return _context(self.ca_pem) if self.ca_pem is not None else None


_CONTEXTS: dict[bytes, ssl.SSLContext] = {}


def _context(ca_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts only the cluster's CA (kept per CA: loading costs)."""
    context = _CONTEXTS.get(ca_pem)
    if context is None:
        context = ssl.create_default_context(cadata=ca_pem.decode())
        _CONTEXTS.clear()
        _CONTEXTS[ca_pem] = context
    return context


class SecurityError(Exception):
    """A Secret the cluster needs is unusable (a brought TLS Secret without ca.crt)."""


async def ensure(
    kube: Kube, owner: Owner, spec: ClusterSpec, ordinals: int, event: EventFn
) -> Security:
    ca_pem: bytes | None = None
    ca: pki.Issued | None = None
    members: dict[str, MemberCert] = {}
    validity = parse_duration(spec.tls.certificate_validity)
    if spec.tls.operator_managed:
        ca = await _ensure_ca(kube, owner, event)
        members = await _ensure_members(kube, owner, ca, ordinals, validity, event)
        ca_pem = ca.cert_pem
    elif spec.tls.enabled:
        brought = certs.decode(await kube.get("Secret", owner.namespace, spec.tls.secret_name))
        if brought is None or certs.CA_CERT not in brought:
            raise SecurityError(f"Secret {spec.tls.secret_name} (spec.tls.secretName) is "
                                f"missing or has no {certs.CA_CERT}")
        ca_pem = brought[certs.CA_CERT]
    token = metrics = None
    if spec.acl.enabled:
        token = await _ensure_token(kube, owner, names.management_token_secret(owner.name), event)
        metrics = await _ensure_token(kube, owner, names.metrics_token_secret(owner.name), event)
    return Security(ca_pem, token, metrics, ca, members, validity,
                    parse_duration(spec.tls.renew_before))


async def _ensure_ca(kube: Kube, owner: Owner, event: EventFn) -> pki.Issued:
    found = certs.decode(await kube.get("Secret", owner.namespace, names.ca_secret(owner.name)))
    if found is not None and certs.CA_CERT in found and certs.CA_KEY in found:
        return certs.ca_of(found)
    ca = certs.new_ca(owner)
    await kube.create(certs.secret(owner, names.ca_secret(owner.name),
                                   {certs.CA_CERT: ca.cert_pem, certs.CA_KEY: ca.key_pem}))
    event("Normal", "Created", f"created the cluster's CA in Secret {names.ca_secret(owner.name)}")
    return ca


async def _ensure_members(
    kube: Kube, owner: Owner, ca: pki.Issued, ordinals: int, validity: float, event: EventFn
) -> dict[str, MemberCert]:
    """Every ordinal below ``ordinals`` has a certificate from this CA (a new member's is
    issued before its pod exists; a changed CA re-issues all of them)."""
    current = certs.decode(await kube.get("Secret", owner.namespace, names.tls_secret(owner.name)))
    data = dict(current or {})
    if data.get(certs.CA_CERT) != ca.cert_pem:
        data = {certs.CA_CERT: ca.cert_pem}
    added = []
    for ordinal in range(ordinals):
        pod = names.pod(owner.name, ordinal)
        if f"{pod}.crt" not in data:
            data.update(certs.member_files(certs.issue_member(ca, owner, pod, validity), pod))
            added.append(pod)
    if current is None:
        await kube.create(certs.secret(owner, names.tls_secret(owner.name), data))
        event("Normal", "Created", f"created Secret {names.tls_secret(owner.name)} with member "
              f"certificates for {', '.join(added)}")
    elif data != current:
        await kube.patch("Secret", owner.namespace, names.tls_secret(owner.name),
                         {"data": certs.encode(data)})
        event("Normal", "CertificatesIssued", f"issued certificates for {', '.join(added)}")
    return certs.member_certs(owner, data)


async def _ensure_token(kube: Kube, owner: Owner, name: str, event: EventFn) -> str:
    found = certs.decode(await kube.get("Secret", owner.namespace, name))
    if found is not None and found.get(certs.TOKEN_KEY):
        return found[certs.TOKEN_KEY].decode().strip()
    token = certs.new_token()
    await kube.create(certs.secret(owner, name, {certs.TOKEN_KEY: token}))
    event("Normal", "Created", f"created Secret {name}")
    return token.decode()


async def renew_member(kube: Kube, owner: Owner, security: Security, pod: str) -> None:
    """A new certificate for one member, in place in the mounted Secret: the kubelet updates
    the pod's files and the node reloads them without a restart."""
    assert security.ca is not None
    issued = certs.issue_member(security.ca, owner, pod, security.validity)
    await kube.patch("Secret", owner.namespace, names.tls_secret(owner.name),
                     {"data": certs.encode(certs.member_files(issued, pod))})
