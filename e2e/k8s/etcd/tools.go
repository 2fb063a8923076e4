//go:build tools

// etcd for the local plane, in a wrapper module of its own so that minimal version selection
// never raises grpc or OpenTelemetry under the Kubernetes programs (scripts/k8s/build.sh).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
