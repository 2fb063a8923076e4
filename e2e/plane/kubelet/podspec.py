"""What one container of a pod starts with: its environment (values, the downward API, secret
and configMap keys, envFrom, ``$(VAR)`` expansion), its mounts, its user and its command; and the
pod's own /etc/hosts, /etc/resolv.conf and /etc/hostname."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from e2e.plane import names
from e2e.plane.kube import ApiError, Kube, Obj
from e2e.plane.kubelet.runtime import Launch, Mount
from e2e.plane.kubelet.volumes import NotReady, field_value

ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be created as specified (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` is a literal ``$``,
    anything else stays as written."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def service_env() -> dict[str, str]:
    """The `kubernetes` Service's variables. There is no kube-proxy, so they name the API
    server's own address on the bridge instead of the Service's ClusterIP."""
    host, port = str(names.BRIDGE_IP), str(names.APISERVER_PORT)
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host}


async def _key(kube: Kube, kind: str, ns: str, ref: Obj) -> str | None:
    try:
        obj = await kube.get(f"/api/v1/namespaces/{ns}/{kind}s/{ref['name']}")
    except ApiError as exc:
        if exc.status == 404 and ref.get("optional"):
            return None
        raise ConfigError(f"{kind} \"{ref['name']}\" not found") from exc
    data = obj.get("data") or {}
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
    value = data[ref["key"]]
    return base64.b64decode(value).decode() if kind == "secret" else str(value)


async def environment(kube: Kube, pod: Obj, container: Obj) -> dict[str, str]:
    ns = pod["metadata"].get("namespace", "default")
    env = service_env()
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind in ("configMap", "secret"):
            ref = source.get(f"{kind}Ref")
            if not ref:
                continue
            try:
                obj = await kube.get(f"/api/v1/namespaces/{ns}/{kind.lower()}s/{ref['name']}")
            except ApiError as exc:
                if exc.status == 404 and ref.get("optional"):
                    continue
                raise ConfigError(f"{kind} \"{ref['name']}\" not found") from exc
            for k, v in (obj.get("data") or {}).items():
                if ENV_NAME.match(prefix + k):
                    env[prefix + k] = base64.b64decode(v).decode() if kind == "secret" else v
    for var in container.get("env") or []:
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        value: str | None
        if "fieldRef" in source:
            try:
                value = field_value(pod, source["fieldRef"]["fieldPath"])
            except NotReady as exc:
                raise ConfigError(str(exc)) from exc
        elif "secretKeyRef" in source:
            value = await _key(kube, "secret", ns, source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = await _key(kube, "configmap", ns, source["configMapKeyRef"])
        elif "resourceFieldRef" in source:
            value = _resource(container, source["resourceFieldRef"]["resource"])
        else:
            raise ConfigError(f"env {var['name']}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[var["name"]] = value
    return env


def _resource(container: Obj, resource: str) -> str:
    kind, _, name = resource.partition(".")
    value = (container.get("resources") or {}).get(kind, {}).get(name)
    return str(value) if value is not None else "0"


def _security(pod: Obj, container: Obj, field: str) -> Any:
    own = (container.get("securityContext") or {}).get(field)
    return own if own is not None else (pod["spec"].get("securityContext") or {}).get(field)


def hostname(pod: Obj) -> str:
    return str(pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]


def write_pod_files(pod: Obj, pod_dir: Path, ip: str) -> dict[str, Path]:
    """/etc/hosts, /etc/resolv.conf and /etc/hostname as the pod sees them."""
    ns, spec = pod["metadata"].get("namespace", "default"), pod["spec"]
    host = hostname(pod)
    own = f"{ip}\t{host}"
    if spec.get("subdomain"):
        own = f"{ip}\t{host}.{spec['subdomain']}.{ns}.svc.{names.CLUSTER_DOMAIN}\t{host}"
    hosts = ["# Kubernetes-managed hosts file (the local plane's kubelet).",
             "127.0.0.1\tlocalhost", own]
    for alias in spec.get("hostAliases") or []:
        hosts.append(f"{alias['ip']}\t" + "\t".join(alias.get("hostnames", [])))
    dns = spec.get("dnsConfig") or {}
    search = [f"{ns}.svc.{names.CLUSTER_DOMAIN}", f"svc.{names.CLUSTER_DOMAIN}",
              names.CLUSTER_DOMAIN, *dns.get("searches", [])]
    options = ["ndots:5"] + [
        o["name"] + (f":{o['value']}" if o.get("value") else "") for o in dns.get("options", [])]
    resolv = [f"search {' '.join(search)}", f"nameserver {names.BRIDGE_IP}",
              *(f"nameserver {n}" for n in dns.get("nameservers", [])),
              f"options {' '.join(options)}"]
    etc = pod_dir / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    files = {"/etc/hosts": "\n".join(hosts), "/etc/resolv.conf": "\n".join(resolv),
             "/etc/hostname": host}
    paths = {}
    for target, text in files.items():
        path = etc / Path(target).name
        path.write_text(text + "\n")
        path.chmod(0o644)
        paths[target] = path
    return paths


async def launch(kube: Kube, node: str, pod: Obj, container: Obj,
                 restart: int, netns: str, volumes: dict[str, Path], pod_files: dict[str, Path],
                 log_path: Path, image_runs_as_root: bool) -> Launch:
    meta = pod["metadata"]
    env = await environment(kube, pod, container)
    mounts = [Mount(path, target, read_only=False) for target, path in pod_files.items()]
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise ConfigError(f"volume {mount['name']} is not in the pod")
        source = volumes[mount["name"]]
        if mount.get("subPath"):
            source = source / expand(mount["subPath"], env)
            source.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
    user = _security(pod, container, "runAsUser")
    if _security(pod, container, "runAsNonRoot") and (
            user == 0 or (user is None and image_runs_as_root)):
        raise ConfigError("container has runAsNonRoot and image will run as root")
    pod_security = pod["spec"].get("securityContext") or {}
    groups = list(pod_security.get("supplementalGroups") or [])
    if pod_security.get("fsGroup") is not None:
        groups.insert(0, int(pod_security["fsGroup"]))
    own = container.get("securityContext") or {}
    capabilities = own.get("capabilities") or {}
    command = container.get("command")
    args = container.get("args")
    return Launch(
        name=f"kpl_{node}_{meta['uid'][:13]}_{container['name']}_{restart}", node=node,
        pod_uid=meta["uid"], container=container["name"], restart=restart,
        image=container["image"], netns=netns, hostname=hostname(pod),
        command=[expand(c, env) for c in command] if command is not None else None,
        args=[expand(a, env) for a in args] if args is not None else (
            [] if command is not None else None),
        env=env, workdir=container.get("workingDir"), mounts=mounts,
        user=user, group=_security(pod, container, "runAsGroup"), groups=groups,
        read_only_root=bool(own.get("readOnlyRootFilesystem")),
        privileged=bool(own.get("privileged")),
        no_new_privileges=own.get("allowPrivilegeEscalation") is False,
        cap_add=list(capabilities.get("add") or []), cap_drop=list(capabilities.get("drop") or []),
        log_path=log_path)
