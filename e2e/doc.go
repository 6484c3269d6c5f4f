// Package e2e holds the end-to-end suite that runs against any cluster given
// by a kubeconfig, and the harness that brings up a local one.
package e2e
