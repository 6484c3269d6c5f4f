package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type certFacts struct {
	CN     string
	Orgs   []string
	IPs    []string
	DNS    []string
	Usages []x509.ExtKeyUsage
	Issuer string
}

func TestWritePKI(t *testing.T) {
	dir := t.TempDir()
	host := net.ParseIP("192.0.2.2")
	if err := WritePKI(dir, ClusterPKI(host, "vm")); err != nil {
		t.Fatal(err)
	}
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	want := map[string]certFacts{
		"apiserver": {CN: "kube-apiserver", IPs: []string{"10.96.0.1", "192.0.2.2", "127.0.0.1"}, Usages: server, Issuer: "ca",
			DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "vm"}},
		"apiserver-kubelet-client": {CN: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}, Usages: client, Issuer: "ca"},
		"admin":                    {CN: "kubernetes-admin", Orgs: []string{"system:masters"}, Usages: client, Issuer: "ca"},
		"kubelet-client":           {CN: "system:node:vm", Orgs: []string{"system:nodes"}, Usages: client, Issuer: "ca"},
		"kubelet-serving":          {CN: "vm", IPs: []string{"192.0.2.2", "127.0.0.1"}, DNS: []string{"vm", "localhost"}, Usages: server, Issuer: "ca"},
		"controller-manager":       {CN: "system:kube-controller-manager", Usages: client, Issuer: "ca"},
		"scheduler":                {CN: "system:kube-scheduler", Usages: client, Issuer: "ca"},
		"kube-proxy":               {CN: "system:kube-proxy", Usages: client, Issuer: "ca"},
		"front-proxy-client":       {CN: "front-proxy-client", Usages: client, Issuer: "front-proxy-ca"},
		"etcd-server":              {CN: "etcd", IPs: []string{"127.0.0.1"}, DNS: []string{"localhost"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, Issuer: "etcd-ca"},
		"apiserver-etcd-client":    {CN: "kube-apiserver-etcd-client", Usages: client, Issuer: "etcd-ca"},
	}
	got := map[string]certFacts{}
	for name, w := range want {
		c := readCert(t, filepath.Join(dir, name+".crt"))
		f := certFacts{CN: c.Subject.CommonName, Orgs: c.Subject.Organization, DNS: c.DNSNames, Usages: c.ExtKeyUsage}
		for _, ip := range c.IPAddresses {
			f.IPs = append(f.IPs, ip.String())
		}
		// Verify the chain for the usage the cert is meant for.
		ca := readCert(t, filepath.Join(dir, w.Issuer+".crt"))
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: w.Usages}); err != nil {
			t.Errorf("%s does not verify against %s: %v", name, w.Issuer, err)
		} else {
			f.Issuer = w.Issuer
		}
		// A cert must not verify against a CA that did not sign it.
		other := "ca"
		if w.Issuer == "ca" {
			other = "etcd-ca"
		}
		wrong := x509.NewCertPool()
		wrong.AddCert(readCert(t, filepath.Join(dir, other+".crt")))
		if _, err := c.Verify(x509.VerifyOptions{Roots: wrong, KeyUsages: w.Usages}); err == nil {
			t.Errorf("%s verifies against %s, which did not sign it", name, other)
		}
		if w.IPs != nil && len(w.DNS) > 0 && w.Usages[0] == x509.ExtKeyUsageServerAuth {
			for _, ip := range w.IPs {
				if err := c.VerifyHostname(ip); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
		got[name] = f
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("certificates (-want +got):\n%s", d)
	}
	for _, f := range []string{"sa.key", "sa.pub", "ca.key", "front-proxy-ca.key", "etcd-ca.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	// A second run keeps every file: kubeconfigs written earlier stay valid.
	before := readCert(t, filepath.Join(dir, "ca.crt")).SerialNumber
	if err := WritePKI(dir, ClusterPKI(host, "vm")); err != nil {
		t.Fatal(err)
	}
	if after := readCert(t, filepath.Join(dir, "ca.crt")).SerialNumber; before.Cmp(after) != 0 {
		t.Errorf("CA regenerated on second run")
	}
}

func TestKeyFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	if err := WritePKI(dir, ClusterPKI(net.ParseIP("192.0.2.2"), "vm")); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	sort.Strings(keys)
	if len(keys) != 15 {
		t.Errorf("got %d keys, want 15 (3 CAs, 11 leaves, sa)", len(keys))
	}
	for _, k := range keys {
		fi, err := os.Stat(k)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", k, fi.Mode().Perm())
		}
	}
}
