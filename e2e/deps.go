package e2e

// The suite's tests and the harness both use client-go; pinning it here keeps
// the module's requirements stable while packages are added.
import _ "k8s.io/client-go/kubernetes"
