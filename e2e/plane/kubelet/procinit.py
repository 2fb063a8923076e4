"""The process fallback's stand-in for a container runtime's init: run as root inside the pod's
network namespace and a private mount + UTS namespace (runtime.ProcessRuntime), it sets the
hostname, bind-mounts the volumes at their paths, drops to the pod's user and execs the
container's command with the venv's programs first on PATH."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    socket.sethostname(spec["hostname"])
    for source, target, read_only in spec["mounts"]:
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):   # a file mounted over a file, as /etc/hosts
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        subprocess.run(["mount", "--bind", source, target], check=True)
        if read_only:
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
    env = {"PATH": f"{spec['path']}:/usr/local/bin:/usr/bin:/bin", "HOME": "/",
           **spec["env"]}
    if spec["groups"]:
        os.setgroups(spec["groups"])
    if spec["group"] is not None:
        os.setgid(spec["group"])
    if spec["user"] is not None:
        os.setuid(spec["user"])
    os.chdir(spec["workdir"] or "/")
    argv = spec["command"] + spec["args"]
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main(sys.argv[1])
