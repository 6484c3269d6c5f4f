package cluster

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig builds a kubeconfig for the client certificate certName of
// pkiDir, talking to server. Paths are absolute so the file works from any
// directory.
func Kubeconfig(server, pkiDir, user, certName string) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["nodesuite"] = &clientcmdapi.Cluster{
		Server:               server,
		CertificateAuthority: filepath.Join(pkiDir, "ca.crt"),
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{
		ClientCertificate: filepath.Join(pkiDir, certName+".crt"),
		ClientKey:         filepath.Join(pkiDir, certName+".key"),
	}
	cfg.Contexts["nodesuite"] = &clientcmdapi.Context{Cluster: "nodesuite", AuthInfo: user}
	cfg.CurrentContext = "nodesuite"
	return cfg
}

// kubeconfigs are the files WriteKubeconfigs writes: file stem -> (user, cert).
var kubeconfigs = []struct{ file, user, cert string }{
	{"admin", "kubernetes-admin", "admin"},
	{"kubelet", "kubelet", "kubelet-client"},
	{"controller-manager", "system:kube-controller-manager", "controller-manager"},
	{"scheduler", "system:kube-scheduler", "scheduler"},
	{"kube-proxy", "system:kube-proxy", "kube-proxy"},
}

// WriteKubeconfigs writes <dir>/<name>.kubeconfig for every client.
func WriteKubeconfigs(dir, server, pkiDir string) error {
	for _, k := range kubeconfigs {
		path := filepath.Join(dir, k.file+".kubeconfig")
		if err := clientcmd.WriteToFile(*Kubeconfig(server, pkiDir, k.user, k.cert), path); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", k.file, err)
		}
	}
	return nil
}
