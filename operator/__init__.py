"""The Konsul Kubernetes operator (kopf), importable as ``konsul_operator``."""
