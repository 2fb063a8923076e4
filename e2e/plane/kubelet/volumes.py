"""A pod's volumes as directories under its pod directory (or the host path they name), ready
to bind-mount. What a real kubelet does with tmpfs and atomic symlink swaps, this does with
plain files written once at pod start (and the service-account token refreshed with the pod's
sync); see docs/testing.md."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

from e2e.plane.kube import ApiError, Kube, Obj


class NotReady(Exception):
    """A volume cannot be set up yet (claim unbound, secret missing): the pod waits."""


def _write(directory: Path, files: dict[str, bytes], mode: int) -> None:
    for relative, data in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)


def _select(data: dict[str, bytes], items: list[Obj] | None, what: str,
            optional: bool) -> tuple[dict[str, bytes], dict[str, int]]:
    if not items:
        return data, {}
    chosen, modes = {}, {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise NotReady(f"{what} has no key {item['key']}")
        chosen[item["path"]] = data[item["key"]]
        if "mode" in item:
            modes[item["path"]] = item["mode"]
    return chosen, modes


async def _object_data(kube: Kube, kind: str, ns: str, name: str, optional: bool
                       ) -> dict[str, bytes] | None:
    try:
        obj = await kube.get(f"/api/v1/namespaces/{ns}/{kind}s/{name}")
    except ApiError as exc:
        if exc.status == 404 and optional:
            return None
        raise NotReady(f"{kind} {ns}/{name}: {exc}") from exc
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def field_value(pod: Obj, path: str) -> str:
    """A downward-API ``fieldPath`` of the pod (env and downwardAPI volumes)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        where, key = path[len("metadata."):].split("['", 1)
        return str(meta.get(where, {}).get(key.rstrip("']"), ""))
    simple: dict[str, Any] = {
        "metadata.name": meta["name"], "metadata.namespace": meta.get("namespace", "default"),
        "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""), "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs", [])),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs", [])),
        "metadata.labels": "\n".join(f'{k}="{v}"' for k, v in sorted(
            meta.get("labels", {}).items())),
        "metadata.annotations": "\n".join(f'{k}="{v}"' for k, v in sorted(
            meta.get("annotations", {}).items())),
    }
    if path not in simple:
        raise NotReady(f"unsupported fieldPath {path}")
    return str(simple[path])


async def _projected(kube: Kube, pod: Obj, sources: list[Obj]) -> tuple[dict[str, bytes],
                                                                         dict[str, int]]:
    ns = pod["metadata"].get("namespace", "default")
    files: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    for source in sources:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files[token["path"]] = (await request_token(kube, pod, token)).encode()
        for kind in ("secret", "configMap"):
            if kind in source:
                ref = source[kind]
                optional = bool(ref.get("optional"))
                data = await _object_data(kube, kind.lower(), ns, ref["name"], optional)
                chosen, item_modes = _select(data or {}, ref.get("items"), f"{kind} {ref['name']}",
                                             optional)
                files.update(chosen)
                modes.update(item_modes)
        if "downwardAPI" in source:
            for item in source["downwardAPI"].get("items", []):
                files[item["path"]] = field_value(pod, item["fieldRef"]["fieldPath"]).encode()
    return files, modes


async def request_token(kube: Kube, pod: Obj, token: Obj) -> str:
    """A TokenRequest bound to the pod, as a kubelet makes it (the Node authorizer lets a node
    ask only for its own pods' service accounts)."""
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    spec: Obj = {"expirationSeconds": token.get("expirationSeconds", 3607),
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                    "uid": meta["uid"]}}
    if token.get("audience"):
        spec["audiences"] = [token["audience"]]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    try:
        made = await kube.create(
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", body)
    except ApiError as exc:
        raise NotReady(f"service account token: {exc}") from exc
    return str(made["status"]["token"])


async def claim_path(kube: Kube, ns: str, claim: str) -> Path:
    try:
        pvc = await kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
    except ApiError as exc:
        raise NotReady(f"persistentvolumeclaim {claim}: {exc}") from exc
    volume = pvc.get("spec", {}).get("volumeName")
    if pvc.get("status", {}).get("phase") != "Bound" or not volume:
        raise NotReady(f"persistentvolumeclaim {claim} is not bound yet")
    pv = await kube.get(f"/api/v1/persistentvolumes/{volume}")
    source = pv["spec"].get("hostPath") or pv["spec"].get("local")
    if not source:
        raise NotReady(f"persistentvolume {volume} is neither hostPath nor local")
    path = Path(source["path"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def apply_fs_group(path: Path, group: int) -> None:
    """Group-own the volume, group-writable, setgid directories: what fsGroup means."""
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files, None]:
            target = Path(root) / name if name else Path(root)
            os.chown(target, -1, group, follow_symlinks=False)
            mode = target.stat().st_mode
            if target.is_dir():
                target.chmod((mode | 0o2070) & 0o7777)
            elif mode & 0o200:
                target.chmod((mode | 0o060) & 0o7777)
            else:
                target.chmod((mode | 0o040) & 0o7777)


async def prepare(kube: Kube, pod: Obj, pod_dir: Path) -> dict[str, Path]:
    """Volume name -> host directory, every volume of the pod set up (raises NotReady)."""
    ns = pod["metadata"].get("namespace", "default")
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        target = pod_dir / "volumes" / name
        group_managed = True
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)   # as a real emptyDir: writable by any user of the pod
        elif "persistentVolumeClaim" in volume:
            target = await claim_path(kube, ns, volume["persistentVolumeClaim"]["claimName"])
        elif "hostPath" in volume:
            target = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") in ("DirectoryOrCreate",):
                target.mkdir(parents=True, exist_ok=True)
            group_managed = False
        elif any(k in volume for k in ("secret", "configMap", "projected", "downwardAPI")):
            files, modes, default_mode = await _file_volume(kube, pod, volume)
            fresh = target.with_name(f".{name}.new")
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(parents=True)
            fresh.chmod(0o755)
            _write(fresh, files, default_mode)
            for relative, mode in modes.items():
                (fresh / relative).chmod(mode)
            if target.exists():
                shutil.rmtree(target)
            fresh.rename(target)
        else:
            raise NotReady(f"volume {name}: unsupported type {sorted(set(volume) - {'name'})}")
        if fs_group is not None and group_managed:
            apply_fs_group(target, int(fs_group))
        paths[name] = target
    return paths


async def _file_volume(kube: Kube, pod: Obj, volume: Obj) -> tuple[dict[str, bytes],
                                                                   dict[str, int], int]:
    ns = pod["metadata"].get("namespace", "default")
    if "projected" in volume:
        files, modes = await _projected(kube, pod, volume["projected"].get("sources", []))
        return files, modes, volume["projected"].get("defaultMode", 0o644)
    if "downwardAPI" in volume:
        files = {item["path"]: field_value(pod, item["fieldRef"]["fieldPath"]).encode()
                 for item in volume["downwardAPI"].get("items", [])}
        return files, {}, volume["downwardAPI"].get("defaultMode", 0o644)
    kind = "secret" if "secret" in volume else "configMap"
    ref = volume[kind]
    name = ref.get("secretName") if kind == "secret" else ref.get("name")
    optional = bool(ref.get("optional"))
    data = await _object_data(kube, kind.lower(), ns, str(name), optional)
    files, modes = _select(data or {}, ref.get("items"), f"{kind} {name}", optional)
    return files, modes, ref.get("defaultMode", 0o644)
