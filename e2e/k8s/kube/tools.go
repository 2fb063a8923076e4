//go:build tools

// The programs of k8s.io/kubernetes the local plane runs. scripts/k8s/build.sh copies this
// file into a wrapper module it generates (go.mod with the release's own replace list), so
// nothing generated or built lives in the repository.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
