"""`make k8s-up` and `make k8s-down`: the plane's processes, in order, each waited for.

``up`` is idempotent: whatever already runs with the same command line is kept, whatever is
missing (never started, crashed, killed) is started, so running it after a crash repairs the
plane. ``down`` stops every process, removes every container, namespace, route, firewall table
and file the plane made, and then checks that nothing is left.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from e2e.plane import hostnet, images, names, pki
from e2e.plane.daemons import Daemon, recorded

STORAGE_CLASS = f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {names.STORAGE_CLASS}
  annotations: {{storageclass.kubernetes.io/is-default-class: "true"}}
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
"""


def log(message: str) -> None:
    print(f"k8s: {message}", file=sys.stderr, flush=True)


# --- the components -----------------------------------------------------------------------

def etcd(bin_dir: Path) -> Daemon:
    peer = f"http://127.0.0.1:{names.ETCD_PEER_PORT}"
    return Daemon("etcd", [
        str(bin_dir / "etcd"), "--name=kpl", f"--data-dir={names.ETCD_DATA}",
        f"--listen-client-urls={names.ETCD_URL}", f"--advertise-client-urls={names.ETCD_URL}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kpl={peer}",
        # A test cluster: losing the last writes in a machine crash is fine, fsync latency on a
        # shared 2-core machine is not.
        "--unsafe-no-fsync=true", "--auto-compaction-retention=1", "--log-level=warn"])


def apiserver(bin_dir: Path) -> Daemon:
    ca, serving, sa = pki.ca(), pki.apiserver(), pki.service_account_key()
    kubelet_client = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                               "system:masters")
    return Daemon("kube-apiserver", [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={names.ETCD_URL}",
        f"--bind-address={names.BRIDGE_IP}", f"--advertise-address={names.BRIDGE_IP}",
        f"--secure-port={names.APISERVER_PORT}",
        f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={ca.cert}",
        f"--service-cluster-ip-range={names.SERVICE_CIDR}",
        f"--service-account-issuer=https://kubernetes.default.svc.{names.CLUSTER_DOMAIN}",
        f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
        "--authorization-mode=Node,RBAC",
        # On top of the default set (ServiceAccount, DefaultStorageClass, ... stay on).
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--kubelet-client-certificate={kubelet_client.cert}",
        f"--kubelet-client-key={kubelet_client.key}",
        f"--kubelet-certificate-authority={ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--profiling=false"])


def _client_component(bin_dir: Path, name: str, user: str, port: int) -> list[str]:
    """The common flags of the controller manager and the scheduler: a client certificate of
    their own, /healthz on loopback, no leader election (one of each)."""
    kubeconfig = pki.kubeconfig(names.STATE / f"{name}.kubeconfig", user, pki.issue(name, user))
    return [str(bin_dir / f"kube-{name}"),
            f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={port}",
            "--leader-elect=false", "--profiling=false"]


def controller_manager(bin_dir: Path) -> Daemon:
    ca, sa = pki.ca(), pki.service_account_key()
    return Daemon("kube-controller-manager", [
        *_client_component(bin_dir, "controller-manager", "system:kube-controller-manager",
                           names.KCM_PORT),
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={sa.key}", f"--root-ca-file={ca.cert}",
        f"--cluster-signing-cert-file={ca.cert}", f"--cluster-signing-key-file={ca.key}",
        f"--service-cluster-ip-range={names.SERVICE_CIDR}",
        # The default StorageClass's provisioner: PVs are directories under /tmp/hostpath_pv.
        "--enable-hostpath-provisioner=true",
        f"--node-monitor-grace-period={names.NODE_GRACE}", "--node-monitor-period=2s"])


def scheduler(bin_dir: Path) -> Daemon:
    return Daemon("kube-scheduler", _client_component(
        bin_dir, "scheduler", "system:kube-scheduler", names.SCHEDULER_PORT))


def dns() -> Daemon:
    return Daemon("dns", [sys.executable, "-m", "e2e.plane.dns"])


def kubelet(index: int) -> Daemon:
    node = names.node_name(index)
    pki.kubelet_client(node)
    pki.kubelet_serving(node, names.node_ip(index))
    return Daemon(f"kubelet-{node}", [sys.executable, "-m", "e2e.plane.kubelet", node])


# --- readiness ----------------------------------------------------------------------------

def _tls(client: pki.Pair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca().cert))
    if client:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def _local_https_ok(port: int) -> bool:
    # KCM and the scheduler serve /healthz with a self-signed certificate of their own.
    unverified = ssl._create_unverified_context()
    return _get(f"https://127.0.0.1:{port}/healthz", unverified)[0] == 200


def readiness(daemon: Daemon) -> Callable[[], bool]:
    if daemon.name == "etcd":
        return lambda: '"health":"true"' in _get(f"{names.ETCD_URL}/health")[1]
    if daemon.name == "kube-apiserver":
        admin = _tls(pki.admin())
        return lambda: _get(f"{names.API_URL}/readyz", admin)[0] == 200
    if daemon.name == "kube-controller-manager":
        return lambda: _local_https_ok(names.KCM_PORT)
    if daemon.name == "kube-scheduler":
        return lambda: _local_https_ok(names.SCHEDULER_PORT)
    return lambda: True


def ensure(daemon: Daemon, timeout: float = 120.0) -> None:
    """Start ``daemon`` unless it already runs this command line; wait until it is ready."""
    if not daemon.current():
        daemon.stop()            # an older command line, or a pid file of a dead process
        daemon.start()
        log(f"started {daemon.name} (log: {daemon.logfile})")
    ready = readiness(daemon)
    deadline = time.monotonic() + timeout
    while not ready():
        if daemon.pid() is None:
            raise SystemExit(f"k8s: {daemon.name} exited; the end of its log:\n{tail(daemon)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"k8s: {daemon.name} not ready in {timeout:.0f}s:\n{tail(daemon)}")
        time.sleep(0.3)


def tail(daemon: Daemon, lines: int = 30) -> str:
    try:
        return "\n".join(daemon.logfile.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def kubectl(*args: str, stdin: str | None = None, timeout: float = 60) -> str:
    proc = subprocess.run([names.kubectl(), f"--kubeconfig={names.KUBECONFIG}", *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"k8s: kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


# --- up / down ----------------------------------------------------------------------------

def components(bin_dir: Path) -> list[Daemon]:
    """In start order; `down` stops them in reverse."""
    kubelets = [kubelet(i) for i in range(1, names.NODE_COUNT + 1)]
    return [etcd(bin_dir), apiserver(bin_dir), controller_manager(bin_dir), scheduler(bin_dir),
            dns(), *kubelets]


def build() -> Path:
    """scripts/k8s/build.sh: a no-op when the cache holds every program."""
    if not all((names.bin_dir() / p).exists() for p in
               ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")):
        log("building the Kubernetes programs (cold: about half an hour on 2 cores)")
    subprocess.run([str(names.BUILD_SCRIPT)], check=True, stdout=subprocess.DEVNULL)
    return names.bin_dir()


def up() -> None:
    if os.geteuid() != 0:
        raise SystemExit("k8s: the plane needs root (bridge, namespaces, podman)")
    started = time.monotonic()
    bin_dir = build()
    for directory in (names.STATE, names.PKI, names.LOGS, names.RUN, names.KUBELET_ROOT):
        directory.mkdir(parents=True, exist_ok=True)
    hostnet.ensure_host(names.NODE_COUNT)
    images.write_storage_conf()
    pki.kubeconfig(names.KUBECONFIG, "kubernetes-admin", pki.admin())
    daemons = components(bin_dir)
    for daemon in daemons[:4]:
        ensure(daemon)
    kubectl("apply", "-f", "-", stdin=STORAGE_CLASS)
    for daemon in daemons[4:]:
        ensure(daemon)
    deadline = time.monotonic() + 60
    while len(kubectl("get", "nodes", "-o", "name").split()) < names.NODE_COUNT:
        if time.monotonic() > deadline:
            raise SystemExit(f"k8s: nodes did not register; see {names.LOGS}/kubelet-*.log")
        time.sleep(0.5)
    kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s", timeout=130)
    log(f"up in {time.monotonic() - started:.1f}s; {names.NODE_COUNT} nodes Ready")
    if images.BUILT_ID.exists() or images.image_id(images.image(), plane=False):
        log(f"image {images.image()} {images.load()[:12]} in the plane's store")
    else:
        log(f"no image {images.image()} to copy into the plane's store: run `make image`")
    print(f"export KUBECONFIG={names.KUBECONFIG}")


def down() -> None:
    if os.geteuid() != 0:
        raise SystemExit("k8s: the plane needs root")
    daemons = recorded()
    # Kubelets first, so none restarts a container we are about to remove.
    for daemon in daemons:
        if daemon.name.startswith("kubelet-") and daemon.stop():
            log(f"stopped {daemon.name}")
    from e2e.plane.kubelet import runtime  # the kubelet owns how its pods run
    for line in runtime.remove_everything() + images.remove_store():
        log(f"removed {line}")
    order = ["dns", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
    for daemon in sorted(daemons, key=lambda d: order.index(d.name) if d.name in order else -1):
        if daemon.stop():
            log(f"stopped {daemon.name}")
    for line in hostnet.teardown_host():
        log(f"removed {line}")
    from e2e.plane import dns as dns_module
    dns_module.remove_hosts_block()
    for path in (names.STATE, names.HOSTPATH_PV_ROOT):
        if path.exists():
            for mount in images.unmount_under(path):
                log(f"removed mount {mount}")
            shutil.rmtree(path)
            log(f"removed {path}")
    leftovers = hostnet.pod_namespaces() + [d.name for d in daemons if d.pid() is not None]
    if leftovers:
        raise SystemExit(f"k8s: still there after down: {leftovers}")
    log("down")


def status() -> int:
    """Exit 0 when every component runs its current command line and the API answers."""
    bin_dir = names.bin_dir()
    if not names.KUBECONFIG.exists() or not bin_dir.exists():
        print(json.dumps({"up": False}))
        return 1
    states = {d.name: d.current() for d in components(bin_dir)}
    ready = readiness(apiserver(bin_dir))()
    print(json.dumps({"up": all(states.values()) and ready, "apiserver_ready": ready, **states}))
    return 0 if all(states.values()) and ready else 1
