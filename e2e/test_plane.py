"""The local plane itself (issue 11): real controllers acting on what our kubelet reports.

Every test has a namespace of its own. Pods run the project's image (`make image`) on the
nodes that run podman; the last test starts one more node in the process fallback. Each test
reads like the scenario it proves; deadlines are generous for 2 shared cores (KONSUL_E2E_SLOW
stretches them further)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from e2e import kind
from e2e.driver import Cluster
from e2e.plane import dns, hostnet, names
from e2e.plane.daemons import Daemon, terminate
from e2e.plane.kubelet.__main__ import Kubelet
from e2e.plane.kubelet.node import FALLBACK_CONDITION
from e2e.plane.kubelet.runtime import PODMAN_ENV
from e2e.plane.testing import Plane

IMAGE = "konsul:0.1.0"   # what `make image` builds, under the name the chart and operator use
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def image(plane: Plane) -> str:
    runtimes = {n["status"]["nodeInfo"]["containerRuntimeVersion"]
                for n in plane.get("nodes")["items"]}
    if any(r.startswith("podman://") for r in runtimes):
        found = subprocess.run(["podman", "image", "exists", IMAGE], env={**os.environ,
                               **PODMAN_ENV}).returncode == 0
        assert found, f"{IMAGE} is not in podman's store: run `make image` (make e2e does)"
    return IMAGE


def new_namespace(plane: Plane, name: str) -> Iterator[str]:
    plane.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true",
                  timeout=180)
    plane.kubectl("create", "namespace", name)
    # The ServiceAccount admission plugin needs the namespace's default account.
    plane.wait_for(lambda: plane.kubectl("get", "serviceaccount", "default", "-n", name,
                                         check=False).returncode == 0, 30, "default account")
    try:
        yield name
    finally:
        print(plane.diagnostics(name))
        plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def ns(plane: Plane, request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    yield from new_namespace(plane, f"plane-{name}")


def python_pod(name: str, script: str, **extra: Any) -> Obj:
    """A pod whose one container runs ``script`` with the image's Python."""
    container = {"name": "main", "image": IMAGE,
                 "command": ["python3", "-u", "-c", textwrap.dedent(script)],
                 **extra.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **extra}}


def ready(plane: Plane, ns: str, what: str, timeout: float = 120) -> None:
    plane.kubectl("wait", "-n", ns, "--for=condition=Ready", what,
                  f"--timeout={timeout * float(os.environ.get('KONSUL_E2E_SLOW', '1'))}s",
                  timeout=timeout * 3)


def wait_log(plane: Plane, ns: str, pod: str, text: str, timeout: float = 60,
             *args: str) -> str:
    return plane.wait_for(lambda: (out := plane.logs(ns, pod, *args)) and text in out and out,
                          timeout, f"{text!r} in the log of {pod}")


# --- the plane --------------------------------------------------------------------------------

def test_nodes_ready_and_the_server_reports_its_release(plane: Plane) -> None:
    nodes = plane.get("nodes")["items"]
    assert len(nodes) == names.NODE_COUNT
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", node["metadata"]["name"]
    version = json.loads(plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == names.versions()["KUBE_VERSION"]
    table = plane.kubectl("get", "nodes").stdout
    assert table.count(" Ready ") == names.NODE_COUNT, table
    classes = plane.get("storageclass")["items"]
    assert [c["metadata"]["name"] for c in classes] == [names.STORAGE_CLASS]


def test_a_deployments_pod_of_the_real_image_becomes_ready(plane: Plane, ns: str,
                                                           image: str) -> None:
    """The image's own entrypoint and user (10001) on a read-only root, probed over HTTP,
    reached through the API server's pod proxy."""
    plane.apply(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "konsul"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "konsul"}},
                 "template": {"metadata": {"labels": {"app": "konsul"}}, "spec": {
                     "containers": [{
                         "name": "konsul", "image": image,
                         "ports": [{"name": "http", "containerPort": 8500}],
                         "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"},
                                            "periodSeconds": 2},
                         "securityContext": {"readOnlyRootFilesystem": True,
                                             "runAsNonRoot": True},
                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}}})
    plane.kubectl("wait", "-n", ns, "--for=condition=Available", "deployment/konsul",
                  "--timeout=180s", timeout=200)
    pod = plane.get("pods", "-n", ns, "-l", "app=konsul")["items"][0]
    assert pod["status"]["podIP"].startswith("10.244.")
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["started"] and "running" in status["state"]
    name = pod["metadata"]["name"]
    answer = plane.kubectl("get", "--raw",
                           f"/api/v1/namespaces/{ns}/pods/{name}:8500/proxy/health/ready").stdout
    assert answer.strip(), "the node answered through the pod proxy"


def test_a_daemon_is_found_by_its_pid_file_as_soon_as_start_returns() -> None:
    """The race behind a failed CI run: the kernel sets a new program's command line a moment
    after Popen returns, pid() trusts a pid only by its command line, and `up` took a daemon
    that had just started for one that had exited. The window is widest when the program is
    not in the page cache (a fresh machine), so the test drops kubectl's pages before each start
    (without the wait in start(), about half the starts were missed)."""
    binary = names.bin_dir() / "kubectl"
    argv = [str(binary), "proxy", "--port=0", "--token=none", "--server=https://127.0.0.1:1",
            "--kubeconfig=/dev/null"]  # serves on loopback and never dials: no request comes
    daemon = Daemon("start-race-probe", argv)
    for attempt in range(20):
        fd = os.open(binary, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        pid = daemon.start()
        try:
            assert daemon.pid() == pid, f"start {attempt}: running, yet not found by pid file"
        finally:
            terminate(pid, timeout=5)
    daemon.stop()  # its pid file


def test_up_again_after_a_crash_restarts_what_died_and_keeps_the_pods(plane: Plane, ns: str,
                                                                      image: str) -> None:
    """kill -9 of the API server, the scheduler and a kubelet; `make k8s-up` again brings them
    back, and the new kubelet adopts the running container instead of starting another."""
    plane.apply(ns, python_pod("survivor", "import time; print('up', flush=True); time.sleep(3600)",
                               nodeName=names.node_name(1)))
    ready(plane, ns, "pod/survivor")
    before = plane.get("pod", "-n", ns, "survivor")["status"]["containerStatuses"][0]
    victims = ["kube-apiserver", "kube-scheduler", f"kubelet-{names.node_name(1)}"]
    for victim in victims:
        os.kill(json.loads((names.RUN / f"{victim}.json").read_text())["pid"], signal.SIGKILL)
    up = subprocess.run([sys.executable, "-m", "e2e.plane", "up"], capture_output=True,
                        text=True, cwd=names.REPO, timeout=300)
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={names.KUBECONFIG}" in up.stdout
    for victim in victims:
        assert f"started {victim}" in up.stderr, up.stderr
    assert "started etcd" not in up.stderr   # what still ran was left alone
    ready(plane, ns, "pod/survivor")
    after = plane.get("pod", "-n", ns, "survivor")["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"]
    assert after["restartCount"] == 0
    log = wait_log(plane, ns, "survivor", "up")   # once the new kubelet serves the pod's logs
    assert log.count("up") == 1, f"a second process was started: {log!r}"


# --- StatefulSet, volumes, DNS ----------------------------------------------------------------

FIRST_BOOT = """
    import http.server, os, pathlib
    mark = pathlib.Path("/data/first-boot")
    if not mark.exists():
        mark.write_text(os.environ["POD_UID"])
    print("first boot by", mark.read_text(), "now", os.environ["POD_UID"])
    os.chdir("/data")
    handler = http.server.SimpleHTTPRequestHandler
    http.server.ThreadingHTTPServer(("", 8080), handler).serve_forever()
"""


@pytest.fixture(scope="module")
def web(plane: Plane, image: str) -> Iterator[str]:
    """A two-pod StatefulSet ``web`` with a claim per pod, under the headless Service ``web``,
    running as 10001 with fsGroup on a read-only root."""
    for ns in new_namespace(plane, "plane-statefulset"):
        plane.apply(ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 8080}]}}, {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {
                "serviceName": "web", "replicas": 2, "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001,
                                        "fsGroup": 10001},
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "web", "image": image,
                        "command": ["python3", "-u", "-c", textwrap.dedent(FIRST_BOOT)],
                        "env": [{"name": "POD_UID",
                                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        "securityContext": {"readOnlyRootFilesystem": True},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "10Mi"}}}}]}})
        plane.kubectl("rollout", "status", "-n", ns, "statefulset/web", "--timeout=180s",
                      timeout=200)
        yield ns


def test_statefulset_claims_are_bound_and_survive_the_pods_deletion(plane: Plane,
                                                                    web: str) -> None:
    claims = plane.get("pvc", "-n", web)["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-web-0", "data-web-1"]
    assert {c["status"]["phase"] for c in claims} == {"Bound"}
    assert {c["spec"]["storageClassName"] for c in claims} == {names.STORAGE_CLASS}
    before = plane.pod(web, "web-0")
    assert before is not None
    old_uid = before["metadata"]["uid"]
    wait_log(plane, web, "web-0", f"first boot by {old_uid}")

    plane.kubectl("delete", "pod", "-n", web, "web-0", "--wait=true", timeout=120)
    plane.wait_for(lambda: (p := plane.pod(web, "web-0")) and p["metadata"]["uid"] != old_uid,
                   60, "the StatefulSet to create web-0 again")
    ready(plane, web, "pod/web-0")
    after = plane.pod(web, "web-0")
    assert after is not None
    # The new pod found the file the old one wrote on the same claim.
    wait_log(plane, web, "web-0", f"first boot by {old_uid} now {after['metadata']['uid']}")


def resolver_pod(names_to_resolve: list[str]) -> Obj:
    return python_pod("resolver", f"""
        import socket, time
        while True:
            for name in {names_to_resolve!r}:
                try:
                    print("RESOLVED", name, sorted(socket.gethostbyname_ex(name)[2]))
                except OSError as exc:
                    print("FAILED", name, exc)
            time.sleep(1)
    """)


def test_dns_resolves_statefulset_pods_from_another_pod_and_from_the_host(
        plane: Plane, web: str) -> None:
    ips = {p["metadata"]["name"]: p["status"]["podIP"]
           for p in plane.get("pods", "-n", web, "-l", "app=web")["items"]}
    fqdn = f"web-0.web.{web}.svc.{names.CLUSTER_DOMAIN}"
    wanted = {fqdn: [ips["web-0"]], f"web-0.web.{web}.svc": [ips["web-0"]],
              f"web.{web}.svc": sorted(ips.values()), "web-1.web": [ips["web-1"]]}
    plane.apply(web, resolver_pod(list(wanted)))
    for name, addresses in wanted.items():
        wait_log(plane, web, "resolver", f"RESOLVED {name} {addresses}")
    assert "FAILED kubernetes" not in plane.logs(web, "resolver")
    # On the host, through the block the DNS server keeps in /etc/hosts.
    for name in (fqdn, f"web-0.web.{web}.svc"):
        plane.wait_for(lambda n=name: _host_lookup(n) == ips["web-0"], 20, f"{name} on the host")


def test_kind_drivers_names_match_the_planes_dns(plane: Plane, web: str) -> None:
    """The kind driver keeps the host's names by the plane DNS's rules, from what kubectl lists
    (e2e/kind.py); on the plane both see one API server, so they must agree."""
    cluster = Cluster(names.KUBECONFIG, names.kubectl(), "helm")
    wanted = f"web-0.web.{web}.svc.{names.CLUSTER_DOMAIN}"

    def agreed() -> list[str] | None:
        from_kubectl = dns.hosts_lines(kind.host_records(cluster))
        return from_kubectl if from_kubectl == _hosts_block() else None

    lines = plane.wait_for(agreed, 30, "kubectl's records to equal the plane DNS's block")
    assert any(line.split()[1] == wanted for line in lines), lines


def _hosts_block() -> list[str]:
    text = names.HOSTS_FILE.read_text()
    start, end = text.find(names.HOSTS_BEGIN), text.find(names.HOSTS_END)
    return text[start + len(names.HOSTS_BEGIN):end].split("\n")[1:-1] if start != -1 else []


def _host_lookup(name: str) -> str | None:
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None


# --- termination, probes, logs ----------------------------------------------------------------

def test_a_deleted_pods_process_gets_sigterm_and_is_gone_within_its_grace_period(
        plane: Plane, ns: str, image: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    marks.chmod(0o777)
    plane.apply(ns, python_pod("graceful", """
        import pathlib, signal, sys, time
        marks = pathlib.Path("/marks")
        def stop(signum, frame):
            (marks / "sigterm").write_text(str(time.time()))
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        (marks / "started").write_text("1")
        while True:
            time.sleep(0.2)
    """, terminationGracePeriodSeconds=30, volumes=[
        {"name": "marks", "hostPath": {"path": str(marks)}}],
        container={"volumeMounts": [{"name": "marks", "mountPath": "/marks"}]}))
    ready(plane, ns, "pod/graceful")
    plane.wait_for(lambda: (marks / "started").exists(), 30, "the process to start")
    uid = plane.get("pod", "-n", ns, "graceful")["metadata"]["uid"]
    started = time.monotonic()
    plane.kubectl("delete", "pod", "-n", ns, "graceful", "--wait=true", timeout=120)
    took = time.monotonic() - started
    assert (marks / "sigterm").exists(), "the process never saw SIGTERM"
    assert took < 30, f"deletion took {took:.1f}s, beyond the grace period"
    assert plane.pod(ns, "graceful") is None
    assert hostnet.pod_netns_name(uid) not in hostnet.pod_namespaces()
    left = subprocess.run(["podman", "ps", "-a", "-q", f"--filter=label=pod-uid={uid}"],
                          capture_output=True, text=True, env={**os.environ, **PODMAN_ENV})
    assert left.stdout.strip() == "", "the pod's container is still there"


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
        plane: Plane, ns: str, image: str) -> None:
    plane.apply(ns, python_pod("stubborn", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM")
        while True:
            time.sleep(0.2)
    """, terminationGracePeriodSeconds=4))
    ready(plane, ns, "pod/stubborn")
    wait_log(plane, ns, "stubborn", "ignoring SIGTERM")
    started = time.monotonic()
    plane.kubectl("delete", "pod", "-n", ns, "stubborn", "--wait=true", timeout=120)
    took = time.monotonic() - started
    assert 4 <= took < 4 + 20, f"deletion took {took:.1f}s for a 4 s grace period"


def test_a_failing_liveness_probe_restarts_the_container(plane: Plane, ns: str,
                                                         image: str) -> None:
    """HTTP liveness turns 500 after 4 s; readiness is an exec probe on a file. `kubectl logs
    --previous` shows the killed instance's output."""
    plane.apply(ns, python_pod("flaky", """
        import http.server, pathlib, time
        born = time.time()
        pathlib.Path("/tmp/ready").write_text("1")
        class Live(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                healthy = time.time() - born < 4
                self.send_response(200 if healthy else 500)
                self.end_headers()
                if not healthy:
                    print("answering 500 now", flush=True)
        print("serving")
        http.server.HTTPServer(("", 8080), Live).serve_forever()
    """, container={
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 1,
                          "failureThreshold": 2},
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]},
        volumes=[{"name": "tmp", "emptyDir": {}}]))
    ready(plane, ns, "pod/flaky")

    def restarted() -> Obj | None:
        pod = plane.pod(ns, "flaky")
        status = (pod or {}).get("status", {}).get("containerStatuses", [{}])[0]
        return status if status.get("restartCount", 0) >= 1 and status.get("lastState") else None

    status = plane.wait_for(restarted, 90, "a restart after the liveness probe failed")
    assert status["lastState"]["terminated"]["finishedAt"]
    assert "answering 500 now" in plane.logs(ns, "flaky", "--previous")
    ready(plane, ns, "pod/flaky")   # ready again: the readiness exec probe passes
    assert "serving" in plane.logs(ns, "flaky", "--tail=5")


def test_an_image_that_is_not_there_leaves_the_container_waiting(plane: Plane, ns: str,
                                                                 image: str) -> None:
    podman_nodes = [n["metadata"]["name"] for n in plane.get("nodes")["items"]
                    if n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("podman")]
    if not podman_nodes:
        pytest.skip("every node runs the process fallback, which has no images")
    pod = python_pod("missing", "pass", nodeName=podman_nodes[0])
    pod["spec"]["containers"][0]["image"] = "konsul:never-built"
    plane.apply(ns, pod)

    def waiting() -> Obj | None:
        statuses = ((plane.pod(ns, "missing") or {}).get("status") or {}).get(
            "containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting")

    state = plane.wait_for(waiting, 60, "a waiting reason")
    assert state["reason"] == "ErrImageNeverPull", state
    assert "konsul:never-built" in state["message"]


# --- environment, volumes, the service-account token -----------------------------------------

def test_env_volumes_and_the_service_account_token_reach_the_container(
        plane: Plane, ns: str, image: str) -> None:
    plane.apply(ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                     "stringData": {"password": "hunter2"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                 "data": {"greeting": "hello"}})
    pod = python_pod("env", """
        import json, os, pathlib, ssl, sys, urllib.error, urllib.request
        account = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        request = urllib.request.Request(
            f"https://{host}:{port}/api/v1/namespaces/{os.environ['POD_NAMESPACE']}/secrets",
            headers={"Authorization": "Bearer " + (account / "token").read_text()})
        context = ssl.create_default_context(cafile=str(account / "ca.crt"))
        try:
            answer = urllib.request.urlopen(request, context=context).status
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read())["message"]
        print("REPORT", json.dumps({
            "env": {k: os.environ.get(k) for k in
                    ("PLAIN", "POD_NAME", "POD_IP", "NODE", "PASSWORD", "GREETING", "EXPANDED")},
            "argv": sys.argv[1:],
            "files": {"secret": pathlib.Path("/etc/creds/password").read_text(),
                      "config": pathlib.Path("/etc/settings/greeting").read_text(),
                      "namespace": (account / "namespace").read_text()},
            "api": answer}))
        import time; time.sleep(3600)
    """, container={
        "args": ["$(GREETING)", "$$(GREETING)"],
        "env": [{"name": "PLAIN", "value": "plain"},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                    "key": "password"}}},
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                       "key": "greeting"}}},
                {"name": "EXPANDED", "value": "$(GREETING)-$(POD_NAME)-$(UNDEFINED)"}],
        "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                         {"name": "settings", "mountPath": "/etc/settings"}]},
        volumes=[{"name": "creds", "secret": {"secretName": "creds"}},
                 {"name": "settings", "configMap": {"name": "settings"}}])
    plane.apply(ns, pod)
    line = wait_log(plane, ns, "env", "REPORT")
    report = json.loads(line.split("REPORT", 1)[1].splitlines()[0])
    live = plane.get("pod", "-n", ns, "env")
    assert report["env"] == {
        "PLAIN": "plain", "POD_NAME": "env", "POD_IP": live["status"]["podIP"],
        "NODE": live["spec"]["nodeName"], "PASSWORD": "hunter2", "GREETING": "hello",
        "EXPANDED": "hello-env-$(UNDEFINED)"}
    assert report["argv"] == ["hello", "$(GREETING)"]
    assert report["files"] == {"secret": "hunter2", "config": "hello", "namespace": ns}
    # The token is the pod's own service account's: authenticated, and refused by RBAC.
    assert f"system:serviceaccount:{ns}:default" in str(report["api"]), report["api"]


# --- safety -------------------------------------------------------------------------------------

def test_a_pod_reaches_the_plane_and_nothing_outside_it(plane: Plane, ns: str,
                                                        image: str) -> None:
    """198.51.100.1 (TEST-NET-2) stands for the world outside: the pod's packets to it must be
    dropped on the host (the firewall counts them); a Service address is unreachable at once."""
    outside = "198.51.100.1"
    dropped_before = hostnet.forward_drops()
    plane.apply(ns, python_pod("prober", f"""
        import socket, time
        def attempt(host, port):
            s = socket.socket()
            s.settimeout(3)
            try:
                s.connect((host, port))
                return "connected"
            except OSError as exc:
                return type(exc).__name__ + ":" + str(exc.errno)
        for host, port in [("{names.BRIDGE_IP}", {names.APISERVER_PORT}),
                           ("{outside}", 80), ("10.96.0.1", 443)]:
            print("RESULT", host, attempt(host, port))
        time.sleep(3600)
    """))
    log = wait_log(plane, ns, "prober", "RESULT 10.96.0.1")
    assert f"RESULT {names.BRIDGE_IP} connected" in log
    assert f"RESULT {outside} TimeoutError" in log, log
    assert "RESULT 10.96.0.1 OSError:113" in log, log    # EHOSTUNREACH from the route
    assert hostnet.forward_drops() > dropped_before, "the firewall saw nothing"


def test_pod_addresses_are_given_round_robin_and_announced(plane: Plane, ns: str,
                                                          image: str, tmp_path: Path) -> None:
    """An address just freed is the last one given again, and a pod's interface announces its
    address when it comes up: a neighbour still holding a deleted pod's MAC for it would send
    into the void until its entry expires (the operator waited 50 s on a recreated pod-0)."""
    fake = SimpleNamespace(root=tmp_path, index=1, node="kpl-node-1")
    first = Kubelet.allocate_ip(fake)  # type: ignore[arg-type]
    (tmp_path / "pods" / "a").mkdir(parents=True)
    (tmp_path / "pods" / "a" / "ip").write_text(first)
    second = Kubelet.allocate_ip(fake)  # type: ignore[arg-type]
    (tmp_path / "pods" / "a" / "ip").unlink()   # the first pod is gone
    assert Kubelet.allocate_ip(fake) not in (first, second)  # type: ignore[arg-type]
    plane.apply(ns, python_pod("announcer", "import time; time.sleep(3600)"))
    pod = plane.wait_for(lambda: (p := plane.pod(ns, "announcer"))
                         and (p.get("status") or {}).get("podIP") and p, 120, "a pod IP")
    netns = hostnet.pod_netns_name(pod["metadata"]["uid"])
    notify = subprocess.run(["ip", "netns", "exec", netns, "cat",
                             "/proc/sys/net/ipv4/conf/eth0/arp_notify"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert notify == "1"


# --- the Node's lease ---------------------------------------------------------------------------

def test_a_node_whose_lease_stops_is_marked_not_ready_by_the_controller_manager(
        plane: Plane) -> None:
    node = names.node_name(names.NODE_COUNT)
    kubelet = json.loads((names.RUN / f"kubelet-{node}.json").read_text())["pid"]

    def ready_status() -> str:
        conditions = plane.get("node", node)["status"]["conditions"]
        return next(c["status"] for c in conditions if c["type"] == "Ready")

    os.kill(kubelet, signal.SIGSTOP)   # the kubelet stops renewing its Lease
    try:
        plane.wait_for(lambda: ready_status() != "True", 90, f"{node} to be NotReady")
        taints = plane.get("node", node)["spec"].get("taints", [])
        assert any(t["key"] == "node.kubernetes.io/unreachable" for t in taints), taints
    finally:
        os.kill(kubelet, signal.SIGCONT)
    plane.wait_for(lambda: ready_status() == "True", 90, f"{node} to be Ready again")


# --- the fallback --------------------------------------------------------------------------------

def test_a_node_without_podman_runs_pods_as_local_processes_and_says_so(plane: Plane,
                                                                        ns: str) -> None:
    index = 9
    node = names.node_name(index)
    hostnet.node_address(index)
    kubelet = Daemon(f"kubelet-{node}", [sys.executable, "-m", "e2e.plane.kubelet", node],
                     env={"KONSUL_PLANE_RUNTIME": "process"})
    kubelet.start()
    try:
        plane.wait_for(lambda: plane.kubectl("get", "node", node, check=False).returncode == 0,
                       60, f"{node} to register")
        plane.kubectl("cordon", node)   # only pods bound to it by name run there
        conditions = plane.wait_for(
            lambda: {c["type"]: c for c in plane.get("node", node)["status"]["conditions"]}, 30,
            "conditions")
        assert conditions[FALLBACK_CONDITION]["status"] == "True"
        assert "KONSUL_PLANE_RUNTIME=process" in conditions[FALLBACK_CONDITION]["message"]
        assert plane.get("node", node)["status"]["nodeInfo"]["containerRuntimeVersion"] \
            .startswith("process://")
        pod = python_pod("local", """
            import socket, time
            print("HELLO from", socket.gethostname(), flush=True)
            time.sleep(3600)
        """, nodeName=node, automountServiceAccountToken=False)
        plane.apply(ns, pod)
        ready(plane, ns, "pod/local")
        assert plane.get("pod", "-n", ns, "local")["status"]["podIP"].startswith(
            f"10.244.{index}.")
        wait_log(plane, ns, "local", "HELLO from local")
        plane.kubectl("delete", "pod", "-n", ns, "local", "--wait=true", timeout=60)
    finally:
        kubelet.stop()
        plane.kubectl("delete", "node", node, "--ignore-not-found", check=False)
        hostnet.node_address(index, present=False)
