"""The kubelet's own HTTPS API, as far as the API server needs it here: container logs
(`kubectl logs`, with follow, tailLines, previous, timestamps, limitBytes, sinceSeconds).
Clients must present a certificate of the plane's CA (the API server's kubelet client).
exec, attach and port-forward answer 501: not supported by this kubelet."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from e2e.plane import pki

if TYPE_CHECKING:
    from e2e.plane.kubelet.__main__ import Kubelet


def parse_line(line: str) -> tuple[str, str, bool]:
    """A CRI log line ``<RFC3339Nano> <stream> <P|F> <text>`` -> (time, text, complete).
    Lines in another form (the process fallback writes plain output) pass through."""
    parts = line.split(" ", 3)
    if len(parts) == 4 and parts[1] in ("stdout", "stderr") and parts[2] in ("P", "F"):
        return parts[0].replace("+00:00", "Z"), parts[3], parts[2] == "F"   # as CRI writes it
    return "", line, True


def render(lines: list[str], timestamps: bool, since: datetime.datetime | None) -> str:
    out, partial = [], ""
    for raw in lines:
        when, text, complete = parse_line(raw)
        if since and when and when[:19] < since.strftime("%Y-%m-%dT%H:%M:%S"):
            continue
        partial += text
        if complete:
            out.append((f"{when} " if timestamps and when else "") + partial + "\n")
            partial = ""
    return "".join(out)


class Server:
    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet

    async def start(self, node: str, ip: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_get("/healthz", self.healthz)
        for verb in ("exec", "attach", "portForward", "run"):
            app.router.add_route("*", f"/{verb}/{{tail:.*}}", self.unsupported)
        serving = pki.kubelet_serving(node, ipaddress.ip_address(ip))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca().cert))
        context.load_cert_chain(str(serving.cert), str(serving.key))
        context.verify_mode = ssl.CERT_REQUIRED
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, ip, port, ssl_context=context).start()

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def unsupported(self, request: web.Request) -> web.Response:
        return web.Response(status=501, text="the local plane's kubelet does not support "
                            f"{request.path.split('/')[1]} (see docs/testing.md)\n")

    def log_file(self, ns: str, pod: str, container: str, previous: bool) -> Path | None:
        worker = self.kubelet.worker_by_name(ns, pod)
        if worker is None or container not in worker.containers:
            return None
        c = worker.containers[container]
        restart = c.restarts
        if previous and (c.handle is not None or c.exit is None):
            restart -= 1   # a container waiting to restart: its previous run is the last one
        path = worker.dir / "logs" / container / f"{restart}.log"
        return path if path.exists() else None

    async def logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        ns, pod, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        previous = q.get("previous") == "true"
        path = self.log_file(ns, pod, container, previous)
        if path is None:
            what = "previous terminated container" if previous else "container"
            raise web.HTTPBadRequest(text=f"{what} \"{container}\" in pod \"{pod}\" has no log\n")
        timestamps = q.get("timestamps") == "true"
        since = None
        if q.get("sinceSeconds"):
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
                seconds=int(q["sinceSeconds"]))
        lines = path.read_text(errors="replace").splitlines()
        if q.get("tailLines"):
            lines = lines[-int(q["tailLines"]):] if int(q["tailLines"]) else []
        body = render(lines, timestamps, since)
        if q.get("limitBytes"):
            body = body[:int(q["limitBytes"])]
        if q.get("follow") != "true":
            return web.Response(text=body)
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        await response.write(body.encode())
        offset = path.stat().st_size
        while self.log_file(ns, pod, container, previous) == path:
            await asyncio.sleep(0.5)
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read(size - offset).decode(errors="replace")
                offset = size
                await response.write(render(chunk.splitlines(), timestamps, None).encode())
            worker = self.kubelet.worker_by_name(ns, pod)
            if worker is None or worker.containers[container].handle is None:
                break
        return response
