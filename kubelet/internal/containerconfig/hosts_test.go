package containerconfig

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHostsFile(t *testing.T) {
	base := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	aliases := []v1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo", "bar"}}}
	tests := []struct {
		name string
		spec v1.PodSpec
		want string
	}{
		{"plain", v1.PodSpec{}, base + "10.244.0.5\tweb\n"},
		{"subdomain and aliases", v1.PodSpec{Hostname: "h", Subdomain: "sub", HostAliases: aliases},
			base + "10.244.0.5\th.sub.ns.svc.cluster.local\th\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"},
		{"host network", v1.PodSpec{HostNetwork: true, HostAliases: aliases},
			"# Kubernetes-managed hosts file (host network).\n127.0.0.1 node\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"},
	}
	for _, tc := range tests {
		pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: tc.spec}
		got := string(HostsFile(pod, []string{"10.244.0.5"}, "cluster.local", []byte("127.0.0.1 node\n")))
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
