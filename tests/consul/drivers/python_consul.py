"""Drives python-consul (Debian's python3-consul, 0.7.1) against a Konsul node.

It installs for Debian's own interpreter, not for the venv's, so the tests run this script as
``/usr/bin/python3 -I python_consul.py HOST PORT PREFIX`` (isolated: neither the repository nor
the venv is on its path). It prints one JSON object: what each call returned, for the test to
check. The client sends its token as ``?token=`` and reads ``X-Consul-Index`` on every 404.
"""

import base64
import json
import sys

import consul


def main(host, port, prefix):
    client = consul.Consul(host=host, port=int(port), token="python-consul-token")
    out = {"version": consul.__version__}
    out["put"] = client.kv.put(prefix + "/greeting", "hello")
    out["put_flags"] = client.kv.put(prefix + "/other", "x", flags=3)
    out["cas_miss"] = client.kv.put(prefix + "/greeting", "again", cas=0)
    index, entry = client.kv.get(prefix + "/greeting")
    out["get"] = {"index": index, "key": entry["Key"], "value": entry["Value"].decode()}
    index, missing = client.kv.get(prefix + "/missing")
    out["missing"] = {"index": index, "value": missing}
    _, entries = client.kv.get(prefix + "/", recurse=True)
    out["recurse"] = [[e["Key"], e["Flags"]] for e in entries]
    out["delete"] = client.kv.delete(prefix + "/other")

    name = prefix.replace("/", "-")
    out["register"] = client.agent.service.register(
        name, service_id=name + "-1", address="127.0.0.1", port=8080, tags=["blue"],
        check=consul.Check.ttl("30s"))
    out["ttl_pass"] = client.agent.check.ttl_pass("service:" + name + "-1", "fine")
    _, services = client.catalog.services()
    out["catalog_services"] = services.get(name)
    _, instances = client.catalog.service(name)
    out["catalog_service"] = [[i["ServiceID"], i["ServicePort"]] for i in instances]
    _, healthy = client.health.service(name, passing=True)
    out["health_passing"] = [h["Service"]["ID"] for h in healthy]
    out["deregister"] = client.agent.service.deregister(name + "-1")
    _, services = client.catalog.services()
    out["after_deregister"] = name in services
    out["base64_ok"] = base64.b64encode(b"x").decode() == "eA=="
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
