"""What the operator registers with kopf: no finalizer on a KonsulCluster.

On a real API server a finalizer held by an operator that is gone leaves the cluster Terminating
forever, its pods running: `helm uninstall` deletes the operator and the cluster at once. The
operator owns nothing outside Kubernetes, so owner references and the garbage collector do the
deletion (tests/operator/test_manifests.py checks them; e2e/test_konsul.py watches it happen).
"""

from __future__ import annotations

import kopf
from konsul_operator import handlers


def test_no_handler_holds_a_finalizer() -> None:
    registry = kopf.get_default_registry()
    changing = list(registry._changing.get_all_handlers())
    assert {h.fn for h in changing} == {handlers.on_change}
    assert not [h.id for h in changing if h.requires_finalizer]
    # Timers and daemons (kopf's spawning handlers) always hold one: the periodic reconcile
    # is the operator's own task (handlers.tick).
    assert not list(registry._spawning.get_all_handlers())
