package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

func resolve(t *testing.T, file string, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("proxy", pflag.ContinueOnError)
	f := AddFlags(fs)
	if file != "" {
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config="+p)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c, err := f.Resolve()
	if c != nil {
		c.ConfigFile = ""
	}
	return c, err
}

const head = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

func TestResolve(t *testing.T) {
	defaults := Config{HealthzBindAddress: "0.0.0.0:10256", MetricsBindAddress: "127.0.0.1:10249",
		ConfigSyncPeriod: 15 * time.Minute, SyncPeriod: 30 * time.Second, ClientQPS: 5, ClientBurst: 10}
	tests := []struct {
		name    string
		file    string
		args    []string
		want    func(c *Config)
		wantErr error
	}{{
		name: "flags only",
		args: []string{"--proxy-mode=ipvs", "--cluster-cidr=10.244.0.0/16,fd00:10::/56", "--ipvs-scheduler=lc",
			"--ipvs-min-sync-period=1s", "--nodeport-addresses=primary,192.0.2.0/24", "--masquerade-all", "--hostname-override=n1"},
		want: func(c *Config) {
			c.Mode, c.HostnameOverride, c.MasqueradeAll, c.MinSyncPeriod = "ipvs", "n1", true, time.Second
			c.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10::/56")}
			c.IPVS.Scheduler = "lc"
			c.NodePortAddresses = []string{"primary", "192.0.2.0/24"}
		},
	}, {
		name: "file with the ipvs section; an explicit flag overrides it",
		file: head + `mode: ipvs
clusterCIDR: 10.244.0.0/16
clientConnection: {kubeconfig: /k, qps: 0}
iptables: {masqueradeAll: false, masqueradeBit: null, minSyncPeriod: 0s}
ipvs:
  scheduler: sh
  syncPeriod: 10s
  minSyncPeriod: 2s
  strictARP: true
  excludeCIDRs: [172.16.0.0/12]
  tcpTimeout: 900s
  tcpFinTimeout: 30s
  udpTimeout: 10s
`,
		args: []string{"--ipvs-scheduler=wrr"},
		want: func(c *Config) {
			c.Mode, c.Kubeconfig, c.SyncPeriod, c.MinSyncPeriod = "ipvs", "/k", 10*time.Second, 2*time.Second
			c.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
			c.IPVS = IPVS{Scheduler: "wrr", StrictARP: true, ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")},
				TCPTimeout: 900 * time.Second, TCPFinTimeout: 30 * time.Second, UDP: 10 * time.Second}
		},
	}, {
		name:    "unknown field",
		file:    head + "ipvs: {schedular: rr}\n",
		wantErr: ErrInvalid,
	}, {
		name:    "unsupported field set",
		file:    head + "winkernel: {enableDSR: true}\nfeatureGates: {Foo: true}\n",
		wantErr: ErrUnsupported,
	}, {
		name:    "wrong kind",
		file:    "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n",
		wantErr: ErrInvalid,
	}, {
		name:    "iptables mode",
		args:    []string{"--proxy-mode=iptables"},
		wantErr: ErrInvalid,
	}, {
		name:    "bad nodePortAddresses",
		args:    []string{"--nodeport-addresses=eth0"},
		wantErr: ErrInvalid,
	}, {
		name:    "minSyncPeriod above syncPeriod",
		args:    []string{"--ipvs-min-sync-period=1m", "--ipvs-sync-period=30s"},
		wantErr: ErrInvalid,
	}, {
		name:    "bad scheduler",
		args:    []string{"--ipvs-scheduler=fastest"},
		wantErr: ErrInvalid,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolve(t, tt.file, tt.args...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			tt.want(&want)
			if d := cmp.Diff(&want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestUnsupportedNamesField(t *testing.T) {
	_, err := Decode([]byte(head + "winkernel: {enableDSR: true}\nportRange: 30000-30100\n"))
	if err == nil || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"winkernel.enableDSR", "portRange"} {
		if !contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// The shipped ConfigMap must be a configuration this proxy accepts.
func TestDeployConfigMapDecodes(t *testing.T) {
	data, err := os.ReadFile("../../../deploy/proxy/configmap.yaml")
	if err != nil {
		t.Skipf("deploy manifest not in this tree: %v", err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		t.Fatal(err)
	}
	kp, err := Decode([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if kp.Mode != "ipvs" || kp.IPVS.Scheduler != "rr" {
		t.Errorf("decoded %+v", kp)
	}
}
