"""The plane's kubelet: one process per Node (``python -m e2e.plane.kubelet kpl-node-1``).

  node.py     registers the Node, keeps its Lease fresh, reports its status
  pods.py     one worker per Pod bound to the Node: namespace, volumes, containers, probes,
              restarts with back-off, graceful termination, status
  runtime.py  how a container runs: podman (the real image) or, where podman cannot run, a
              local process from the project's venv (said in the Node's status, never silently)
  podspec.py  what a container is started with: env, mounts, user, command
  volumes.py  emptyDir, secret, configMap, projected (service-account token), downwardAPI,
              persistentVolumeClaim, hostPath
  probes.py   HTTP, TCP and exec probes
  server.py   the kubelet API the API server calls: container logs
docs/testing.md lists every place where it differs from a real kubelet.
"""
