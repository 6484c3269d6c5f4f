package ipvs

import (
	"os/exec"
	"sort"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
)

// Small ipset changes go over netlink, large ones through ipset restore;
// both must leave the kernel's sets alike (read back with ipset save), for
// each kind of entry the plane writes. Runs in a network namespace of its
// own (ipsets are per namespace); needs root and the ipset command.
func TestUpdateIPSetsNetlinkAndRestore(t *testing.T) {
	if _, err := exec.LookPath("ipset"); err != nil {
		t.Skip("needs the ipset command")
	}
	inNewNetNS(t)

	l := &LinuxOS{}
	defer func() {
		if l.ipsetH != nil {
			l.ipsetH.Close()
		}
	}()
	sets := []IPSet{
		{"T-IPPORT", "hash:ip,port", v1.IPv4Protocol}, {"T-IPPORTIP", "hash:ip,port,ip", v1.IPv4Protocol},
		{"T-IPPORTNET", "hash:ip,port,net", v1.IPv4Protocol}, {"T-PORT", "bitmap:port", v1.IPv4Protocol},
		{"T-IPPORT6", "hash:ip,port", v1.IPv6Protocol}, {"T-IPPORTIP6", "hash:ip,port,ip", v1.IPv6Protocol},
	}
	if err := l.EnsureIPSets(sets); err != nil {
		t.Skipf("no ipset support in this kernel: %v", err)
	}
	var names []string
	for _, s := range sets {
		names = append(names, s.Name)
	}
	small := map[string][]string{
		"T-IPPORT":    {"10.96.0.10,tcp:80", "10.96.0.11,udp:53", "10.96.0.12,sctp:9"},
		"T-IPPORTIP":  {"10.244.0.2,tcp:8080,10.244.0.2"},
		"T-IPPORTNET": {"192.0.2.1,tcp:443,10.0.0.0/8"},
		"T-IPPORT6":   {"fd00::10,tcp:80"},
		"T-IPPORTIP6": {"fd00:244::2,udp:53,fd00:244::2"},
	}
	var large []string // past ipsetNetlinkMax: ipset restore
	for i := range ipsetNetlinkMax + 1 {
		large = append(large, "10.97.0.1,tcp:"+strconv.Itoa(1000+i))
	}
	// want is what the kernel should hold, applied step by step.
	want := map[string]map[string]bool{}
	for _, n := range names {
		want[n] = map[string]bool{}
	}
	for _, step := range []struct {
		name     string
		netlink  bool // only over netlink (no fallback to ipset restore)
		add, del map[string][]string
	}{
		{name: "small add", netlink: true, add: small},
		{name: "again: already there (-exist)", netlink: true, add: small},
		{name: "small delete (one absent: -exist) and add", netlink: true,
			del: map[string][]string{"T-IPPORT": {"10.96.0.11,udp:53", "10.96.0.99,tcp:1"}, "T-IPPORTIP6": {"fd00:244::2,udp:53,fd00:244::2"}},
			add: map[string][]string{"T-IPPORT6": {"fd00::11,udp:53"}}},
		{name: "bitmap ports (ipset restore)", add: map[string][]string{"T-PORT": {"30080", "30081"}, "T-IPPORT": {"10.96.0.13,tcp:81"}}},
		{name: "large add (ipset restore)", add: map[string][]string{"T-IPPORT": large}, del: map[string][]string{"T-PORT": {"30080"}}},
	} {
		update := l.UpdateIPSets
		if step.netlink {
			// Not through UpdateIPSets: its fallback to ipset restore
			// would hide a wrong netlink request.
			update = l.updateIPSetsNetlink
		}
		if err := update(step.add, step.del); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for n, es := range step.del {
			for _, e := range es {
				delete(want[n], e)
			}
		}
		for n, es := range step.add {
			for _, e := range es {
				want[n][e] = true
			}
		}
		got, err := l.IPSetEntries(names...)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(sortedSets(want), sortedSets(got)); d != "" {
			t.Errorf("%s: sets (-want +got):\n%s", step.name, d)
		}
	}
	// UpdateIPSets sends a small change over netlink.
	l.ipsetH.Close()
	l.ipsetH = nil
	if err := l.UpdateIPSets(map[string][]string{"T-IPPORT": {"10.96.0.14,tcp:82"}}, nil); err != nil {
		t.Fatal(err)
	}
	if l.ipsetH == nil {
		t.Error("a small change did not go over netlink")
	}
}

func sortedSets[S map[string]bool | []string](m map[string]S) map[string][]string {
	out := map[string][]string{}
	for n, es := range m {
		c := []string{}
		switch es := any(es).(type) {
		case map[string]bool:
			for e := range es {
				c = append(c, e)
			}
		case []string:
			c = append(c, es...)
		}
		sort.Strings(c)
		out[n] = c
	}
	return out
}
