package containerconfig

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "a", "B": "b"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"$(A)":         "a",
		"x$(A)y$(B)z":  "xaybz",
		"$$(A)":        "$(A)",
		"$(UNKNOWN)":   "$(UNKNOWN)",
		"$(A":          "$(A",
		"$":            "$",
		"a$b":          "a$b",
		"$()":          "$()",
		"$$$(A)":       "$a",
		"no refs here": "no refs here",
	} {
		if got := Expand(in, lookup); got != want {
			t.Errorf("Expand(%q) = %q, want %q", in, got, want)
		}
	}
}

type fakeSources struct {
	cms      map[string]*v1.ConfigMap
	secrets  map[string]*v1.Secret
	services []*v1.Service
}

var errNotFound = errors.New("not found")

func (f fakeSources) ConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	if c, ok := f.cms[ns+"/"+name]; ok {
		return c, nil
	}
	return nil, errNotFound
}

func (f fakeSources) Secret(_ context.Context, ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, errNotFound
}

func (f fakeSources) Services(context.Context) ([]*v1.Service, error) { return f.services, nil }

func TestEnv(t *testing.T) {
	src := fakeSources{
		cms:     map[string]*v1.ConfigMap{"ns/cm": {Data: map[string]string{"k": "cmval", "other": "o"}}},
		secrets: map[string]*v1.Secret{"ns/sec": {Data: map[string][]byte{"pw": []byte("s3cret")}}},
		services: []*v1.Service{
			{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}, Spec: v1.ServiceSpec{ClusterIP: "10.96.0.1",
				Ports: []v1.ServicePort{{Name: "https", Port: 443, Protocol: v1.ProtocolTCP}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "my-svc", Namespace: "ns"}, Spec: v1.ServiceSpec{ClusterIP: "10.96.5.5",
				Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "ns"}, Spec: v1.ServiceSpec{ClusterIP: "None"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "other"}, Spec: v1.ServiceSpec{ClusterIP: "10.96.6.6",
				Ports: []v1.ServicePort{{Port: 81}}}},
		},
	}
	noLinks := false
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"app": "x"}},
		Spec: v1.PodSpec{ServiceAccountName: "sa"}}
	c := &v1.Container{Name: "c",
		Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}},
		EnvFrom:   []v1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cm"}}}},
		Env: []v1.EnvVar{
			{Name: "PLAIN", Value: "v"},
			{Name: "EXPANDED", Value: "$(PLAIN)-$(CM_k)-$(MISSING)"},
			{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "MEM", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "CPU", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "CMK", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cm"}, Key: "k"}}},
			{Name: "PW", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "pw"}}},
		}}
	got, err := Env(context.Background(), src, pod, c, PodEnv{NodeName: "n", HostIPs: []string{"192.0.2.2"}, PodIPs: []string{"10.244.0.9"},
		NodeAllocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}})
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{"APP", "x"}, {"CMK", "cmval"}, {"CM_k", "cmval"}, {"CM_other", "o"}, {"CPU", "2"},
		{"EXPANDED", "v-cmval-$(MISSING)"},
		{"KUBERNETES_PORT", "tcp://10.96.0.1:443"}, {"KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"},
		{"KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"}, {"KUBERNETES_PORT_443_TCP_PORT", "443"}, {"KUBERNETES_PORT_443_TCP_PROTO", "tcp"},
		{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}, {"KUBERNETES_SERVICE_PORT_HTTPS", "443"},
		{"MEM", "64"},
		{"MY_SVC_PORT", "tcp://10.96.5.5:80"}, {"MY_SVC_PORT_80_TCP", "tcp://10.96.5.5:80"}, {"MY_SVC_PORT_80_TCP_ADDR", "10.96.5.5"},
		{"MY_SVC_PORT_80_TCP_PORT", "80"}, {"MY_SVC_PORT_80_TCP_PROTO", "tcp"}, {"MY_SVC_SERVICE_HOST", "10.96.5.5"}, {"MY_SVC_SERVICE_PORT", "80"},
		{"PLAIN", "v"}, {"POD_IP", "10.244.0.9"}, {"POD_NAME", "p"}, {"PW", "s3cret"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}

	// enableServiceLinks: false keeps only the master services.
	pod.Spec.EnableServiceLinks = &noLinks
	got, _ = Env(context.Background(), src, pod, &v1.Container{Name: "c"}, PodEnv{})
	for _, e := range got {
		if e.Name == "MY_SVC_SERVICE_HOST" {
			t.Errorf("service link with enableServiceLinks=false")
		}
	}

	// A missing key is a config error (CreateContainerConfigError); optional is skipped.
	opt := true
	_, err = Env(context.Background(), src, pod, &v1.Container{Name: "c", Env: []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{
		ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cm"}, Key: "nope"}}}}}, PodEnv{})
	if !errors.Is(err, ErrConfig) {
		t.Errorf("missing key: %v", err)
	}
	if _, err = Env(context.Background(), src, pod, &v1.Container{Name: "c", Env: []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{
		ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "gone"}, Key: "k", Optional: &opt}}}}}, PodEnv{}); err != nil {
		t.Errorf("optional: %v", err)
	}
}

func TestDNS(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\nsearch example.org\noptions timeout:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := Node{ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "cluster.local", ResolvConf: resolv}
	two := "2"
	for _, tc := range []struct {
		name string
		spec v1.PodSpec
		want [3][]string // servers, searches, options
	}{
		{"ClusterFirst", v1.PodSpec{DNSPolicy: v1.DNSClusterFirst},
			[3][]string{{"10.96.0.10"}, {"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.org"}, {"ndots:5"}}},
		{"ClusterFirst on host network is Default", v1.PodSpec{DNSPolicy: v1.DNSClusterFirst, HostNetwork: true},
			[3][]string{{"192.0.2.53"}, {"example.org"}, {"timeout:1"}}},
		{"ClusterFirstWithHostNet", v1.PodSpec{DNSPolicy: v1.DNSClusterFirstWithHostNet, HostNetwork: true},
			[3][]string{{"10.96.0.10"}, {"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.org"}, {"ndots:5"}}},
		{"None with dnsConfig", v1.PodSpec{DNSPolicy: v1.DNSNone, DNSConfig: &v1.PodDNSConfig{Nameservers: []string{"1.2.3.4"},
			Searches: []string{"a.b"}, Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: &two}}}},
			[3][]string{{"1.2.3.4"}, {"a.b"}, {"ndots:2"}}},
		{"ClusterFirst overriding ndots", v1.PodSpec{DNSPolicy: v1.DNSClusterFirst, DNSConfig: &v1.PodDNSConfig{
			Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: &two}}}},
			[3][]string{{"10.96.0.10"}, {"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "example.org"}, {"ndots:2"}}},
	} {
		cfg, err := DNS(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: tc.spec}, n)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, [3][]string{cfg.Servers, cfg.Searches, cfg.Options}); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestCgroupParentAndQOS(t *testing.T) {
	mk := func(req, lim string) *v1.Pod {
		c := v1.Container{Name: "c"}
		if req != "" {
			c.Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse(req), v1.ResourceMemory: resource.MustParse("10Mi")}
		}
		if lim != "" {
			c.Resources.Limits = v1.ResourceList{v1.ResourceCPU: resource.MustParse(lim), v1.ResourceMemory: resource.MustParse("10Mi")}
		}
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1"}, Spec: v1.PodSpec{Containers: []v1.Container{c}}}
	}
	for _, tc := range []struct {
		pod  *v1.Pod
		want string
	}{
		{mk("", ""), "/nodesuite/kubepods/besteffort/podu1"},
		{mk("100m", ""), "/nodesuite/kubepods/burstable/podu1"},
		{mk("100m", "100m"), "/nodesuite/kubepods/podu1"},
	} {
		if got := CgroupParent(tc.pod, "cgroupfs", "/nodesuite"); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}
