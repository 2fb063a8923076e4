"""``konsulctl``: Konsul from the shell. Readable tables by default, ``--json`` for scripts.

Addresses come from ``--addr`` (repeatable, or comma-separated), else ``KONSUL_HTTP_ADDR``, else
``127.0.0.1:8500``. Exit status: 0 on success, 1 when Konsul answers an error or cannot be
reached (one line on stderr), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from konsul.backup import file as backup_file
from konsul.client import DEFAULT_RETRIES, Client, KonsulClientError, KonsulHTTPError

Handler = Callable[[Client, argparse.Namespace], Any]


class UsageError(Exception):
    """Bad arguments found after parsing (exit status 2)."""


# ---------------------------------------------------------------- output


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _short(text: object, limit: int = 40) -> str:
    s = str(text).replace("\n", "\\n")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _shown(entry: dict[str, Any]) -> str:
    """A listed value, short; one that is not text as its size."""
    if entry["value"] is None:
        return f"<{len(base64.b64decode(entry['value_base64']))} bytes, not text>"
    return _short(entry["value"])


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must be KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _read_json_file(path: str) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON: {exc}") from None


# ---------------------------------------------------------------- commands: KV


def kv_get(c: Client, a: argparse.Namespace) -> Any:
    entry = c.kv_get(a.key, consistent=a.consistent)
    if a.json:
        return entry
    if entry["value"] is None:  # not UTF-8 text (docs/api.md): its bytes, as they are
        sys.stdout.flush()
        sys.stdout.buffer.write(base64.b64decode(entry["value_base64"]))
        sys.stdout.buffer.flush()
        return None
    sys.stdout.write(entry["value"] + ("" if entry["value"].endswith("\n") else "\n"))
    return None


def kv_put(c: Client, a: argparse.Namespace) -> Any:
    value = _read_text("-") if a.value == "-" else a.value
    result = c.kv_put(a.key, value, flags=a.flags, cas=a.cas)
    if a.json:
        return result
    print(f"Set {result['key']} (modify_index {result['modify_index']})")
    return None


def kv_delete(c: Client, a: argparse.Namespace) -> Any:
    result = c.kv_delete(a.key, cas=a.cas, recurse=a.recurse)
    if a.json:
        return result
    print(f"Deleted {result['deleted']} key(s)")
    return None


def kv_list(c: Client, a: argparse.Namespace) -> Any:
    result = c.kv_list(a.prefix, keys=a.keys, separator=a.separator, consistent=a.consistent)
    if a.json:
        return result
    if a.keys:
        for name in result:
            print(name)
        return None
    rows = [(e["key"], e["flags"], e["modify_index"], _shown(e)) for e in result]
    table(rows, ("KEY", "FLAGS", "MODIFY_INDEX", "VALUE"), sys.stdout)
    return None


# ---------------------------------------------------------------- commands: services and health


def _service_body(a: argparse.Namespace) -> dict[str, Any]:
    if a.file:
        body = _read_json_file(a.file)
        if not isinstance(body, dict):
            raise UsageError(f"{a.file}: expected a JSON object")
        return body
    if not a.name:
        raise UsageError("service register needs --name (or --file)")
    body = {"name": a.name, "address": a.address, "port": a.port, "tags": a.tag}
    body["meta"] = _pairs(a.meta, "--meta")
    if a.id:
        body["id"] = a.id
    if a.ttl:
        body["ttl"] = a.ttl
    check: dict[str, Any] = {}
    for kind in ("http", "tcp", "ttl"):
        target = getattr(a, f"check_{kind}")
        if target:
            check[kind] = target
    if len(check) > 1:
        raise UsageError("give at most one of --check-http, --check-tcp, --check-ttl")
    if check:
        for opt in ("interval", "timeout", "deregister_critical_after"):
            value = getattr(a, f"check_{opt}")
            if value:
                check[opt] = value
        body["checks"] = [check]
    return body


def service_register(c: Client, a: argparse.Namespace) -> Any:
    result = c.register(_service_body(a))
    if a.json:
        return result
    print(f"Registered {result['id']} (modify_index {result['modify_index']})")
    return None


def _service_rows(services: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    return [
        (
            s["id"],
            s["name"],
            s.get("address", ""),
            s.get("port", ""),
            ",".join(s.get("tags", [])),
            s.get("status", ""),
        )
        for s in services
    ]


def service_list(c: Client, a: argparse.Namespace) -> Any:
    result = c.services(a.name, tags=a.tag, meta=_pairs(a.meta, "--meta"), passing=a.passing)
    if a.json:
        return result
    table(_service_rows(result), ("ID", "NAME", "ADDRESS", "PORT", "TAGS", "STATUS"), sys.stdout)
    return None


def service_deregister(c: Client, a: argparse.Namespace) -> Any:
    result = c.deregister(a.id)
    if a.json:
        return result
    print(f"Deregistered {a.id}")
    return None


def service_heartbeat(c: Client, a: argparse.Namespace) -> Any:
    result = c.heartbeat(a.id)
    if a.json:
        return result
    print(f"Heartbeat sent for {a.id}")
    return None


def _print_checks(checks: list[dict[str, Any]]) -> None:
    rows = [
        (k["id"], k.get("name", ""), k.get("service_id", ""), k.get("type", ""),
         k["status"], _short(k.get("output", "")))
        for k in checks
    ]
    table(rows, ("ID", "NAME", "SERVICE", "TYPE", "STATUS", "OUTPUT"), sys.stdout)


def health_checks(c: Client, a: argparse.Namespace) -> Any:
    result = c.health_checks()
    if a.json:
        return result
    _print_checks(result)
    return None


def health_service(c: Client, a: argparse.Namespace) -> Any:
    result = c.health_service(a.name)
    if a.json:
        return result
    _print_checks(result)
    return None


def health_update(c: Client, a: argparse.Namespace) -> Any:
    result = c.update_check(a.id, a.status, a.output)
    if a.json:
        return result
    print(f"Check {a.id} is {a.status}")
    return None


# ---------------------------------------------------------------- commands: cluster and data


def cluster_status(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_status()
    if a.json:
        return result
    for name in ("node_id", "state", "term", "leader_id", "leader_addr", "address",
                 "http_address", "commit_index", "applied_index", "last_index", "fsm_pending",
                 "last_snapshot_index", "last_contact_ms"):
        if name in result:
            value = result[name]
            print(f"{name + ':':<21}{'' if value is None else value}")
    print("peers:")
    _print_peers(result.get("peers", []))
    return None


def _print_peers(peers: list[dict[str, Any]]) -> None:
    rows = [(p["id"], p["address"], p.get("voter", ""), p.get("http_address", "")) for p in peers]
    table(rows, ("ID", "ADDRESS", "VOTER", "HTTP_ADDRESS"), sys.stdout)


def cluster_leader(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_leader()
    if a.json:
        return result
    http_addr = result.get("leader_http_addr", "")
    print(f"{result['leader_id']} {result['leader_addr']} {http_addr}".rstrip())
    return None


def cluster_peers(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_peers()
    if a.json:
        return result
    _print_peers(result["peers"])
    return None


def cluster_join(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_join(a.node_id, a.address, a.http_address)
    if a.json:
        return result
    print(f"Joined {a.node_id} at {a.address}")
    return None


def cluster_leave(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_leave(a.node_id)
    if a.json:
        return result
    print(f"Removed {a.node_id}")
    return None


def cluster_snapshot(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_snapshot()
    if a.json:
        return result
    print(
        f"Snapshot at index {result['index']} term {result['term']} "
        f"({result['size_bytes']} bytes)"
    )
    return None


def cluster_transfer(c: Client, a: argparse.Namespace) -> Any:
    result = c.transfer_leadership(a.node_id)
    if a.json:
        return result
    leader = result.get("leader_id", a.node_id) if isinstance(result, dict) else a.node_id
    print(f"Leadership transferred to {leader}")
    return None


def cluster_bootstrap(c: Client, a: argparse.Namespace) -> Any:
    result = c.bootstrap_from(a.from_file) if a.from_file else c.bootstrap()
    if a.json:
        return result
    if a.from_file:
        print(f"Bootstrapped a one-voter cluster from {a.from_file}: {result['kv_keys']} key(s), "
              f"{result['services']} service(s), index {result['index']}, new cluster id "
              f"{result['cluster_id']}")
    else:
        print("Bootstrapped a one-voter cluster")
    return None


def cluster_recover(c: Client, a: argparse.Namespace) -> Any:
    result = c.cluster_recover()
    if a.json:
        return result
    removed = ", ".join(result["removed"]) or "none"
    print(f"Recovered: this node is now the only voter of cluster {result['cluster_id']} "
          f"(removed: {removed}); join the others again as new, empty members")
    return None


# ---------------------------------------------------------------- commands: backups


def snapshot_save(c: Client, a: argparse.Namespace) -> Any:
    if (a.file is None) == (a.dir is None):
        raise UsageError("give FILE, or --dir DIR (a name is chosen there)")
    if a.keep is not None and (a.dir is None or a.keep < 1):
        raise UsageError("--keep N (N >= 1) needs --dir")
    path = a.file or os.path.join(a.dir, f"{a.prefix}-{_utc_stamp()}{backup_file.SUFFIX}")
    result = c.snapshot_save(path, stale=a.stale)
    if a.keep is not None:
        result["deleted"] = _keep_newest(a.dir, a.prefix, a.keep)
        result["kept"] = len(_backups_in(a.dir, a.prefix))
    if a.json:
        return result
    print(f"Saved {path}: index {result['index']}, term {result['term']}, "
          f"{result['size_bytes']} bytes, {result['kv_keys']} key(s), "
          f"{result['services']} service(s), checksum ok")
    for name in result.get("deleted", []):
        print(f"Deleted {name} (keeping the newest {a.keep})")
    return None


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _backups_in(directory: str, prefix: str) -> list[str]:
    """Backups that ``save --dir`` wrote with this prefix, oldest first (the names sort by
    time)."""
    pattern = re.compile(re.escape(prefix) + r"-\d{8}T\d{6}Z" + re.escape(backup_file.SUFFIX))
    return sorted(n for n in os.listdir(directory) if pattern.fullmatch(n))


def _keep_newest(directory: str, prefix: str, keep: int) -> list[str]:
    doomed = _backups_in(directory, prefix)[:-keep]
    for name in doomed:
        os.unlink(os.path.join(directory, name))
    return doomed


def snapshot_inspect(c: Client, a: argparse.Namespace) -> Any:
    try:
        checked = backup_file.inspect(backup_file.read_file(a.file))
    except backup_file.BadBackup as exc:
        raise KonsulClientError(f"{a.file}: {exc}") from None
    header = checked.header
    result = {
        **header.to_wire(), "size_bytes": checked.size, "snapshot_bytes": checked.body_size,
        "kv_keys": checked.kv_count, "services": checked.service_count,
        "checks": checked.check_count, "checksum": "ok",
    }
    if a.json:
        return result
    rows = [(name, result[name]) for name in (
        "index", "term", "created", "cluster_id", "node_id", "size_bytes", "kv_keys",
        "services", "checks", "checksum")]
    table(rows, ("FIELD", "VALUE"), sys.stdout)
    return None


def snapshot_restore(c: Client, a: argparse.Namespace) -> Any:
    result = c.snapshot_restore(a.file)
    if a.json:
        return result
    print(f"Restored {a.file} (index {result['source']['index']} of cluster "
          f"{result['source']['cluster_id'] or '?'}): {result['kv_keys']} key(s), "
          f"{result['services']} service(s); in effect from index {result['index']}")
    return None


def export_cmd(c: Client, a: argparse.Namespace) -> Any:
    document = c.export()
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if a.output and a.output != "-":
        with open(a.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not a.json:
            print(f"Exported {len(document['kv'])} key(s) and "
                  f"{len(document['services'])} service(s) to {a.output}")
        return None
    sys.stdout.write(text)
    return None


def import_cmd(c: Client, a: argparse.Namespace) -> Any:
    document = _read_json_file(a.file)
    if not isinstance(document, dict):
        raise UsageError(f"{a.file}: expected an export document (a JSON object)")
    result = c.import_data(document)
    if a.json:
        return result
    print(f"Imported {result.get('kv', 0)} key(s) and {result.get('services', 0)} service(s)")
    return None


# ---------------------------------------------------------------- commands: ACL


def _rules(a: argparse.Namespace) -> dict[str, Any] | None:
    """``--rules`` as inline JSON, or ``@FILE`` / ``-`` to read it."""
    if a.rules is None:
        return None
    text = a.rules
    if text == "-" or text.startswith("@"):
        text = _read_text(text if text == "-" else text[1:])
    try:
        rules = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--rules is not valid JSON: {exc}") from None
    if not isinstance(rules, dict):
        raise UsageError("--rules must be a JSON object")
    return rules


def _print_token(token: dict[str, Any]) -> None:
    print(f"{'accessor_id:':<14}{token['accessor_id']}")
    if "secret_id" in token:
        print(f"{'secret_id:':<14}{token['secret_id']}  (shown once: keep it now)")
    print(f"{'description:':<14}{token.get('description', '')}")
    print(f"{'policies:':<14}{', '.join(p['name'] for p in token.get('policies', []))}")


def _print_policy(policy: dict[str, Any]) -> None:
    print(f"{'id:':<14}{policy['id']}")
    print(f"{'name:':<14}{policy['name']}")
    print(f"{'description:':<14}{policy.get('description', '')}")
    print(f"{'rules:':<14}{json.dumps(policy.get('rules', {}), sort_keys=True)}")


def acl_bootstrap(c: Client, a: argparse.Namespace) -> Any:
    token = c.acl_bootstrap()
    if a.json:
        return token
    _print_token(token)
    return None


def acl_policy_list(c: Client, a: argparse.Namespace) -> Any:
    policies = c.acl_policies()
    if a.json:
        return policies
    rows = [(p["name"], p["id"], json.dumps(p.get("rules", {}), sort_keys=True))
            for p in policies]
    table(rows, ("NAME", "ID", "RULES"), sys.stdout)
    return None


def acl_policy_read(c: Client, a: argparse.Namespace) -> Any:
    policy = c.acl_policy(a.policy)
    if a.json:
        return policy
    _print_policy(policy)
    return None


def acl_policy_create(c: Client, a: argparse.Namespace) -> Any:
    policy = c.acl_policy_create(a.name, _rules(a), a.description or "")
    if a.json:
        return policy
    _print_policy(policy)
    return None


def acl_policy_update(c: Client, a: argparse.Namespace) -> Any:
    changes: dict[str, Any] = {}
    rules = _rules(a)
    if rules is not None:
        changes["rules"] = rules
    if a.name is not None:
        changes["name"] = a.name
    if a.description is not None:
        changes["description"] = a.description
    policy = c.acl_policy_update(a.policy, **changes)
    if a.json:
        return policy
    _print_policy(policy)
    return None


def acl_policy_delete(c: Client, a: argparse.Namespace) -> Any:
    result = c.acl_policy_delete(a.policy)
    if a.json:
        return result
    print(f"Deleted policy {result['deleted']}")
    return None


def acl_token_list(c: Client, a: argparse.Namespace) -> Any:
    tokens = c.acl_tokens()
    if a.json:
        return tokens
    rows = [(t["accessor_id"], t.get("description", ""),
             ", ".join(p["name"] for p in t.get("policies", []))) for t in tokens]
    table(rows, ("ACCESSOR_ID", "DESCRIPTION", "POLICIES"), sys.stdout)
    return None


def acl_token_read(c: Client, a: argparse.Namespace) -> Any:
    token = c.acl_token_self() if a.accessor_id == "self" else c.acl_token(a.accessor_id)
    if a.json:
        return token
    _print_token(token)
    return None


def acl_token_create(c: Client, a: argparse.Namespace) -> Any:
    token = c.acl_token_create(a.policy, a.description or "", a.secret)
    if a.json:
        return token
    _print_token(token)
    return None


def acl_token_update(c: Client, a: argparse.Namespace) -> Any:
    token = c.acl_token_update(a.accessor_id, policies=a.policy or None,
                               description=a.description)
    if a.json:
        return token
    _print_token(token)
    return None


def acl_token_delete(c: Client, a: argparse.Namespace) -> Any:
    result = c.acl_token_delete(a.accessor_id)
    if a.json:
        return result
    print(f"Deleted token {result['deleted']}")
    return None


# ---------------------------------------------------------------- parser


def _group(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
           help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    parser = parent.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return sub


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", action="append", default=argparse.SUPPRESS, metavar="HOST:PORT",
                        help="a Konsul node (repeatable or comma-separated; "
                             "default $KONSUL_HTTP_ADDR or 127.0.0.1:8500)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the API's JSON answer instead of a table")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds per request (default 10)")
    common.add_argument("--retries", type=int, default=argparse.SUPPRESS,
                        help="retries while no leader is known or no node answers (default 8, "
                             "with a backoff from 50ms to 1s)")
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help="ACL token (default $KONSUL_HTTP_TOKEN)")
    common.add_argument("--token-file", default=argparse.SUPPRESS, metavar="FILE",
                        help="read the ACL token from a file (default $KONSUL_HTTP_TOKEN_FILE)")
    common.add_argument("--ca-file", default=argparse.SUPPRESS, metavar="FILE",
                        help="CA certificate(s) that sign the nodes' certificates, for https:// "
                             "addresses (default $KONSUL_CACERT)")
    common.add_argument("--client-cert", default=argparse.SUPPRESS, metavar="FILE",
                        help="client certificate, when the nodes require one "
                             "(default $KONSUL_CLIENT_CERT)")
    common.add_argument("--client-key", default=argparse.SUPPRESS, metavar="FILE",
                        help="its private key (default $KONSUL_CLIENT_KEY)")
    common.add_argument("--report", default=argparse.SUPPRESS, metavar="FILE",
                        help="also write the JSON answer to FILE (a Job's termination log)")
    parser = argparse.ArgumentParser(
        prog="konsulctl", description="Talk to a Konsul cluster.", parents=[common]
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
            handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    kv = _group(top, "kv", "read and write keys")
    p = sub(kv, "get", kv_get, "print a key's value")
    p.add_argument("key")
    p.add_argument("--consistent", action="store_true", help="linearizable read")
    p = sub(kv, "put", kv_put, "set a key ('-' as VALUE reads stdin)")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--flags", type=int)
    p.add_argument("--cas", type=int, help="only if the key's modify_index is this (0: create)")
    p = sub(kv, "delete", kv_delete, "delete a key (or a prefix with --recurse)")
    p.add_argument("key")
    p.add_argument("--recurse", action="store_true")
    p.add_argument("--cas", type=int)
    p = sub(kv, "list", kv_list, "list keys under a prefix")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--keys", action="store_true", help="names only")
    p.add_argument("--separator", help="stop at the next separator (e.g. /)")
    p.add_argument("--consistent", action="store_true")

    svc = _group(top, "service", "register and list service instances")
    p = sub(svc, "register", service_register, "register (or update) a service instance")
    p.add_argument("--file", help="a JSON service definition ('-' for stdin)")
    p.add_argument("--name")
    p.add_argument("--id")
    p.add_argument("--address", default="")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ttl", help="heartbeat interval, e.g. 30s")
    p.add_argument("--check-http", metavar="URL")
    p.add_argument("--check-tcp", metavar="HOST:PORT")
    p.add_argument("--check-ttl", metavar="DURATION")
    p.add_argument("--check-interval")
    p.add_argument("--check-timeout")
    p.add_argument("--check-deregister-critical-after")
    p = sub(svc, "list", service_list, "list service instances")
    p.add_argument("--name")
    p.add_argument("--tag", action="append", default=[])
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--passing", action="store_true", help="only instances whose checks pass")
    p = sub(svc, "deregister", service_deregister, "remove a service instance")
    p.add_argument("id")
    p = sub(svc, "heartbeat", service_heartbeat, "renew a service instance's TTL")
    p.add_argument("id")

    health = _group(top, "health", "health checks")
    sub(health, "checks", health_checks, "list every check")
    p = sub(health, "service", health_service, "list the checks of one service")
    p.add_argument("name")
    p = sub(health, "update", health_update, "report the status of a TTL check")
    p.add_argument("id")
    p.add_argument("status", choices=("passing", "warning", "critical"))
    p.add_argument("--output")

    cluster = _group(top, "cluster", "Raft cluster membership and state")
    sub(cluster, "status", cluster_status, "this node's Raft status")
    sub(cluster, "leader", cluster_leader, "the current leader")
    sub(cluster, "peers", cluster_peers, "the Raft configuration")
    p = sub(cluster, "join", cluster_join, "add a node to the cluster")
    p.add_argument("node_id")
    p.add_argument("address", help="its Raft address, host:port")
    p.add_argument("--http-address")
    p = sub(cluster, "leave", cluster_leave, "remove a node from the cluster")
    p.add_argument("node_id")
    sub(cluster, "snapshot", cluster_snapshot, "take a snapshot now")
    p = sub(cluster, "transfer-leadership", cluster_transfer, "hand leadership to another voter")
    p.add_argument("node_id", nargs="?")
    p = sub(cluster, "bootstrap", cluster_bootstrap, "make this empty node a one-voter cluster")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="a backup: the new cluster starts with its data")
    sub(cluster, "recover", cluster_recover, "make this survivor a cluster of one when a "
        "quorum is lost for good (refused while a quorum is reachable)")

    snap = _group(top, "snapshot", "backups: save, inspect, restore (docs/backup.md)")
    p = sub(snap, "save", snapshot_save, "write a consistent backup of the cluster to FILE")
    p.add_argument("file", nargs="?")
    p.add_argument("--dir", help="write it in DIR as PREFIX-<UTC time>.snap instead")
    p.add_argument("--prefix", default="konsul", help="file name prefix with --dir")
    p.add_argument("--keep", type=int, metavar="N",
                   help="with --dir: then delete all but the newest N backups of that prefix")
    p.add_argument("--stale", action="store_true",
                   help="from the addressed node's own replica, without asking the leader")
    p = sub(snap, "inspect", snapshot_inspect, "check a backup file and show what it holds")
    p.add_argument("file")
    p = sub(snap, "restore", snapshot_restore,
            "replace the running cluster's data with a backup's (through Raft)")
    p.add_argument("file")

    p = sub(top, "export", export_cmd, "write every key and service as JSON")
    p.add_argument("--output", "-o", help="a file (default stdout)")
    p = sub(top, "import", import_cmd, "load an export document ('-' for stdin)")
    p.add_argument("file")

    acl = _group(top, "acl", "access control: policies and tokens")
    sub(acl, "bootstrap", acl_bootstrap, "make the first management token (once per cluster)")
    policy = _group(acl, "policy", "policies: rules on keys, services and operator")
    sub(policy, "list", acl_policy_list, "list policies")
    p = sub(policy, "read", acl_policy_read, "show a policy")
    p.add_argument("policy", help="id or name")
    rules_help = ('JSON rules, e.g. \'{"key_prefix": {"app/": "read"}}\'; @FILE or - '
                  "reads them")
    p = sub(policy, "create", acl_policy_create, "create a policy")
    p.add_argument("--name", required=True)
    p.add_argument("--description")
    p.add_argument("--rules", help=rules_help)
    p = sub(policy, "update", acl_policy_update, "change a policy's name, description or rules")
    p.add_argument("policy", help="id or name")
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--rules", help=rules_help)
    p = sub(policy, "delete", acl_policy_delete, "delete a policy (its tokens lose it)")
    p.add_argument("policy", help="id or name")
    token = _group(acl, "token", "tokens: secrets that hold policies")
    sub(token, "list", acl_token_list, "list tokens (never their secrets)")
    p = sub(token, "read", acl_token_read, "show a token ('self': the one in use)")
    p.add_argument("accessor_id")
    p = sub(token, "create", acl_token_create, "create a token; prints its secret once")
    p.add_argument("--policy", action="append", default=[], help="id or name (repeatable)")
    p.add_argument("--description")
    p.add_argument("--secret", help="use this secret (16+ characters) instead of a random one")
    p = sub(token, "update", acl_token_update, "change a token's policies or description")
    p.add_argument("accessor_id")
    p.add_argument("--policy", action="append", default=[], help="id or name (repeatable; "
                   "replaces the token's policies)")
    p.add_argument("--description")
    p = sub(token, "delete", acl_token_delete, "delete a token: its secret stops working")
    p.add_argument("accessor_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.json = getattr(args, "json", False)
    given = getattr(args, "addr", [])
    addresses = [a for item in given for a in item.split(",") if a.strip()] or None
    try:
        client = Client(
            addresses,
            timeout=getattr(args, "timeout", 10.0),
            retries=getattr(args, "retries", DEFAULT_RETRIES),
            token=getattr(args, "token", None),
            token_file=getattr(args, "token_file", None),
            ca_file=getattr(args, "ca_file", None),
            client_cert=getattr(args, "client_cert", None),
            client_key=getattr(args, "client_key", None),
        )
    except (ValueError, OSError) as exc:  # a bad address, an unreadable token file
        print(f"konsulctl: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    report = getattr(args, "report", None)
    if report:
        args.json = True  # (the JSON answer is what the report holds)
    try:
        with client:
            result = handler(client, args)
        if report:
            with open(report, "w", encoding="utf-8") as out:
                json.dump(result, out, sort_keys=True)
    except UsageError as exc:
        print(f"konsulctl: {exc}", file=sys.stderr)
        return 2
    except KonsulHTTPError as exc:
        print(f"konsulctl: error: {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (KonsulClientError, OSError) as exc:
        print(f"konsulctl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_stdout()
    if result is not None:
        try:
            sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return _closed_stdout()
    return 0


def _closed_stdout() -> int:
    """``konsulctl ... | head``: the reader left; exit quietly as a shell tool does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # no second BrokenPipeError at interpreter exit
    return 141


if __name__ == "__main__":
    sys.exit(main())
