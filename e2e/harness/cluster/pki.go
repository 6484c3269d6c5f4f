package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/util/keyutil"
)

// certValidity is long enough for any test run and short enough that a stray
// copy of the CA is worthless soon.
const certValidity = 365 * 24 * time.Hour

// CertSpec describes one leaf certificate.
type CertSpec struct {
	Name   string // file stem: <Name>.crt / <Name>.key
	CA     string // stem of the signing CA
	CN     string
	Orgs   []string
	IPs    []net.IP
	DNS    []string
	Usages []x509.ExtKeyUsage
}

// PKISpec lists every certificate the cluster needs.
type PKISpec struct {
	CAs   []string
	Certs []CertSpec
}

// ClusterPKI returns the certificates for a cluster whose API server
// advertises hostIP and whose node is nodeName.
func ClusterPKI(hostIP net.IP, nodeName string) PKISpec {
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	return PKISpec{
		CAs: []string{"ca", "front-proxy-ca", "etcd-ca"},
		Certs: []CertSpec{
			{Name: "apiserver", CA: "ca", CN: "kube-apiserver", Usages: server,
				IPs: []net.IP{net.ParseIP("10.96.0.1"), hostIP, net.ParseIP("127.0.0.1")},
				DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", nodeName}},
			{Name: "apiserver-kubelet-client", CA: "ca", CN: "kube-apiserver-kubelet-client", Orgs: []string{"system:masters"}, Usages: client},
			{Name: "admin", CA: "ca", CN: "kubernetes-admin", Orgs: []string{"system:masters"}, Usages: client},
			{Name: "kubelet-client", CA: "ca", CN: "system:node:" + nodeName, Orgs: []string{"system:nodes"}, Usages: client},
			{Name: "kubelet-serving", CA: "ca", CN: nodeName, Usages: server,
				IPs: []net.IP{hostIP, net.ParseIP("127.0.0.1")}, DNS: []string{nodeName, "localhost"}},
			{Name: "controller-manager", CA: "ca", CN: "system:kube-controller-manager", Usages: client},
			{Name: "scheduler", CA: "ca", CN: "system:kube-scheduler", Usages: client},
			{Name: "kube-proxy", CA: "ca", CN: "system:kube-proxy", Usages: client},
			{Name: "front-proxy-client", CA: "front-proxy-ca", CN: "front-proxy-client", Usages: client},
			{Name: "etcd-server", CA: "etcd-ca", CN: "etcd", Usages: both,
				IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNS: []string{"localhost"}},
			{Name: "apiserver-etcd-client", CA: "etcd-ca", CN: "kube-apiserver-etcd-client", Usages: client},
		},
	}
}

// WritePKI creates every CA and certificate of spec in dir, plus the
// service-account key pair (sa.key, sa.pub). Existing files are kept so that a
// restarted cluster keeps trusting its own kubeconfigs.
func WritePKI(dir string, spec PKISpec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	cas := map[string]*keyPair{}
	for _, name := range spec.CAs {
		kp, err := loadOrCreate(dir, name, func() (*keyPair, error) { return newCA(name) })
		if err != nil {
			return err
		}
		cas[name] = kp
	}
	for _, c := range spec.Certs {
		ca, ok := cas[c.CA]
		if !ok {
			return fmt.Errorf("cert %s: unknown CA %q", c.Name, c.CA)
		}
		if _, err := loadOrCreate(dir, c.Name, func() (*keyPair, error) { return newLeaf(c, ca) }); err != nil {
			return err
		}
	}
	return writeSAKey(dir)
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func loadOrCreate(dir, name string, create func() (*keyPair, error)) (*keyPair, error) {
	crtPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if kp, err := loadPair(crtPath, keyPath); err == nil {
		return kp, nil
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(kp.key)
	if err != nil {
		return nil, fmt.Errorf("marshal %s key: %w", name, err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("write %s key: %w", name, err)
	}
	if err := os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.cert.Raw}), 0o644); err != nil {
		return nil, fmt.Errorf("write %s cert: %w", name, err)
	}
	return kp, nil
}

func loadPair(crtPath, keyPath string) (*keyPair, error) {
	crtPEM, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(crtPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", crtPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := keyutil.PrivateKeyFromFile(keyPath)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	return &keyPair{cert: cert, key: signer}, nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
}

func newCA(cn string) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "nodesuite-" + cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func newLeaf(c CertSpec, ca *keyPair) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: c.CN, Organization: c.Orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  c.Usages,
		IPAddresses:  c.IPs,
		DNSNames:     c.DNS,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

// writeSAKey writes the RSA key the API server signs ServiceAccount tokens
// with and the controller-manager uses; RS256 is what every client expects.
func writeSAKey(dir string) error {
	keyPath, pubPath := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service-account public key: %w", err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return fmt.Errorf("service-account public key: %w", err)
	}
	return nil
}
