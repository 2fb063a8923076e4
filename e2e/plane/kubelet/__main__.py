"""python -m e2e.plane.kubelet <node>: one Node of the local plane (launcher.py starts one per
node). It logs to stdout; the launcher sends that to build/k8s/logs/kubelet-<node>.log."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
from collections import defaultdict

from e2e.plane import hostnet, names, pki
from e2e.plane.kube import Informer, Kube, Obj
from e2e.plane.kubelet import node as node_status
from e2e.plane.kubelet.pods import PodWorker
from e2e.plane.kubelet.runtime import Handle, Runtime, choose
from e2e.plane.kubelet.server import Server

log = logging.getLogger("kubelet")


class Kubelet:
    def __init__(self, node: str, runtime: Runtime) -> None:
        self.node, self.runtime = node, runtime
        self.index = names.node_index(node)
        self.ip = str(names.node_ip(self.index))
        self.port = names.KUBELET_PORT + self.index
        self.root = names.KUBELET_ROOT / node
        self.kube = Kube(pki.kubelet_client(node))
        self.workers: dict[str, PodWorker] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.adopted: dict[str, list[Handle]] = defaultdict(list)

    def worker_by_name(self, ns: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            meta = worker.pod["metadata"]
            if meta.get("namespace") == ns and meta["name"] == name:
                return worker
        return None

    def allocate_ip(self) -> str:
        """The next free address after the last one given, as CNI's host-local IPAM does: an
        address just freed is the last to be given again."""
        used = {p.read_text().strip() for p in (self.root / "pods").glob("*/ip")}
        pool = [str(a) for a in names.node_pod_range(self.index)]
        last_file = self.root / "last-ip"
        last = last_file.read_text().strip() if last_file.exists() else ""
        start = pool.index(last) + 1 if last in pool else 0
        for candidate in pool[start:] + pool[:start]:
            if candidate not in used:
                last_file.write_text(candidate)
                return candidate
        raise RuntimeError(f"{self.node}: no pod address left")

    async def pod_changed(self, key: str, pod: Obj | None) -> None:
        if pod is None:
            for worker in list(self.workers.values()):
                if f"{worker.pod['metadata'].get('namespace')}/{worker.pod['metadata']['name']}" \
                        == key:
                    worker.removed()
            return
        uid = pod["metadata"]["uid"]
        if uid in self.workers:
            self.workers[uid].update(pod)
            return
        worker = PodWorker(self, pod, self.adopted.pop(uid, []))
        self.workers[uid] = worker
        self.tasks[uid] = asyncio.create_task(worker.run())
        self.tasks[uid].add_done_callback(lambda _t: self.forget(uid))

    def forget(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self.tasks.pop(uid, None)

    async def clean_orphans(self, known: set[str]) -> None:
        """Containers, namespaces and pod directories of pods the API no longer has (deleted
        while this kubelet was down)."""
        for uid, handles in list(self.adopted.items()):
            if uid not in known:
                for handle in handles:
                    await self.runtime.stop(handle, 0)
                    await self.runtime.remove(handle)
                del self.adopted[uid]
        pods_dir = self.root / "pods"
        for directory in pods_dir.glob("*") if pods_dir.exists() else []:
            if directory.name not in known:
                await asyncio.to_thread(hostnet.delete_pod_netns, directory.name)
                await asyncio.to_thread(shutil.rmtree, directory, True)
                log.info("removed the remains of pod %s", directory.name)

    async def main(self) -> None:
        node = node_status.node_object(self.node, self.ip, self.port, self.runtime)
        if self.runtime.fallback:
            log.warning("PODMAN NOT USED: %s; pods run as local processes", self.runtime.fallback)
        await node_status.register(self.kube, node)
        await Server(self).start(self.node, self.ip, self.port)
        for handle in await self.runtime.adopt(self.node):
            self.adopted[handle.labels.get("pod-uid", "")].append(handle)
        pods = Informer(self.kube, "/api/v1/pods", self.pod_changed,
                        fieldSelector=f"spec.nodeName={self.node}")
        background = [asyncio.create_task(pods.run()),
                      asyncio.create_task(node_status.keep_lease(self.kube, self.node)),
                      asyncio.create_task(node_status.keep_status(self.kube, node, self.runtime))]
        await pods.synced.wait()
        await self.clean_orphans({p["metadata"]["uid"] for p in pods.items.values()})
        log.info("%s ready on %s:%d (%s)", self.node, self.ip, self.port, self.runtime.version)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        # Containers keep running, as they do when a real kubelet stops: the next kubelet
        # process adopts them, `make k8s-down` removes them.
        for task in [*background, *self.tasks.values()]:
            task.cancel()
        await self.kube.close()


async def amain(node: str) -> None:
    runtime = await choose()
    (names.KUBELET_ROOT / node).mkdir(parents=True, exist_ok=True)
    await Kubelet(node, runtime).main()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    if len(sys.argv) != 2 or not sys.argv[1].startswith(names.NODE_PREFIX):
        sys.exit(f"usage: python -m e2e.plane.kubelet {names.NODE_PREFIX}<n>")
    asyncio.run(amain(sys.argv[1]))

