package admission

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"
)

func kernel(v string) func() (*version.Version, error) {
	return func() (*version.Version, error) { return version.MustParseGeneric(v), nil }
}

func sysctlPod(hostNet, hostIPC bool, hostUsers *bool, names ...string) *v1.Pod {
	p := podReq("", "")
	p.Spec.HostNetwork, p.Spec.HostIPC, p.Spec.HostUsers = hostNet, hostIPC, hostUsers
	p.Spec.SecurityContext = &v1.PodSecurityContext{}
	for _, n := range names {
		p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, v1.Sysctl{Name: n, Value: "1"})
	}
	return p
}

func forbidden(msg string) Result {
	return Result{Reason: "SysctlForbidden", Message: msg}
}

func TestAdmitSysctls(t *testing.T) {
	no, yes := new(false), new(true)
	unsafe := []string{"kernel.msg*", "kernel.sem", "net.b.*", "user.*", "net/core/somaxconn"}
	for _, tc := range []struct {
		name   string
		unsafe []string
		kernel string
		pod    *v1.Pod
		want   Result
	}{
		{"none", nil, "6.1", sysctlPod(false, false, nil), Result{Admit: true}},
		{"safe", nil, "6.1", sysctlPod(false, false, nil, "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range"), Result{Admit: true}},
		{"safe slash separated", nil, "6.1", sysctlPod(false, false, nil, "net/ipv4/tcp_syncookies"), Result{Admit: true}},
		{"safe on new kernel", nil, "4.15.0", sysctlPod(false, false, nil, "net.ipv4.tcp_rmem"), Result{Admit: true}},
		{"safe needs newer kernel", nil, "4.14.300", sysctlPod(false, false, nil, "net.ipv4.tcp_rmem"),
			forbidden(`forbidden sysctl: "net.ipv4.tcp_rmem" not allowlisted`)},
		{"unsafe not allowed", nil, "6.1", sysctlPod(false, false, nil, "kernel.shm_rmid_forced", "net.core.somaxconn"),
			forbidden(`forbidden sysctl: "net.core.somaxconn" not allowlisted`)},
		{"unsafe slash name reported with dots", nil, "6.1", sysctlPod(false, false, nil, "net/core/somaxconn"),
			forbidden(`forbidden sysctl: "net.core.somaxconn" not allowlisted`)},
		{"unsafe allowed by slash entry", unsafe, "6.1", sysctlPod(false, false, nil, "net.core.somaxconn"), Result{Admit: true}},
		{"unsafe allowed exact", unsafe, "6.1", sysctlPod(false, false, nil, "kernel.sem"), Result{Admit: true}},
		{"unsafe allowed by prefix", unsafe, "6.1", sysctlPod(false, false, nil, "kernel.msgmax", "net.b.c"), Result{Admit: true}},
		{"exact entry is not a prefix", unsafe, "6.1", sysctlPod(false, false, nil, "kernel.sem.x"),
			forbidden(`forbidden sysctl: "kernel.sem.x" not allowlisted`)},
		{"safe net with host network", nil, "6.1", sysctlPod(true, false, nil, "net.ipv4.ip_local_port_range"),
			forbidden(`forbidden sysctl: "net.ipv4.ip_local_port_range" not allowed with host Net enabled`)},
		{"prefix net with host network", unsafe, "6.1", sysctlPod(true, false, nil, "net.b.c"),
			forbidden(`forbidden sysctl: "net.b.c" not allowed with host Net enabled`)},
		{"ipc with host ipc", nil, "6.1", sysctlPod(false, true, nil, "kernel.shm_rmid_forced"),
			forbidden(`forbidden sysctl: "kernel.shm_rmid_forced" not allowed with host IPC enabled`)},
		{"prefix ipc with host ipc", unsafe, "6.1", sysctlPod(false, true, nil, "kernel.msgmax"),
			forbidden(`forbidden sysctl: "kernel.msgmax" not allowed with host IPC enabled`)},
		{"ipc with host network", nil, "6.1", sysctlPod(true, false, nil, "kernel.shm_rmid_forced"), Result{Admit: true}},
		{"user with default host users", unsafe, "6.1", sysctlPod(false, false, nil, "user.max_user_namespaces"),
			forbidden(`forbidden sysctl: "user.max_user_namespaces" not allowed with host User enabled`)},
		{"user with host users", unsafe, "6.1", sysctlPod(false, false, yes, "user.max_user_namespaces"),
			forbidden(`forbidden sysctl: "user.max_user_namespaces" not allowed with host User enabled`)},
		{"user in own user namespace", unsafe, "6.1", sysctlPod(false, false, no, "user.max_user_namespaces"), Result{Admit: true}},
	} {
		n := Node{AllowedUnsafeSysctls: tc.unsafe, KernelVersion: kernel(tc.kernel)}
		if d := cmp.Diff(tc.want, Admit(n, nil, tc.pod)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

// TestSafeSysctlsByKernel: a kernel version that cannot be read keeps only the
// sysctls namespaced in every kernel, as upstream.
func TestSafeSysctlsByKernel(t *testing.T) {
	base := []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
		"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
	for _, tc := range []struct {
		name   string
		kernel func() (*version.Version, error)
		want   []string
	}{
		{"unknown", func() (*version.Version, error) { return nil, errors.New("no osrelease") }, base},
		{"3.10", kernel("3.10.0"), base},
		{"4.5", kernel("4.5.0"), append(base[:len(base):len(base)], "net.ipv4.ip_local_reserved_ports",
			"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes")},
		{"6.1", kernel("6.1.0-rc1"), append(base[:len(base):len(base)], "net.ipv4.ip_local_reserved_ports",
			"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
			"net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
			"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat")},
	} {
		if d := cmp.Diff(tc.want, safeSysctlAllowlist(tc.kernel)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestValidateAllowedUnsafeSysctls(t *testing.T) {
	const rx = `([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*([a-z0-9][-_a-z0-9]*)?[a-z0-9*]`
	for _, tc := range []struct {
		patterns []string
		want     string // "" is valid
	}{
		{[]string{"kernel.msg*", "kernel.sem"}, ""},
		{[]string{"kernel/msg*", "kernel/sem", "net.*", "fs.mqueue.*", "user.*"}, ""},
		{[]string{" kernel.msg*"}, `sysctl " kernel.msg*" must have at most 253 characters and match regex ` + rx},
		{[]string{"kernel.msg* "}, `sysctl "kernel.msg* " must have at most 253 characters and match regex ` + rx},
		{[]string{"net.-"}, `sysctl "net.-" must have at most 253 characters and match regex ` + rx},
		{[]string{"net.*.foo"}, `sysctl "net.*.foo" must have at most 253 characters and match regex ` + rx},
		{[]string{"net.*/foo"}, `sysctl "net.*/foo" must have at most 253 characters and match regex ` + rx},
		{[]string{"foo"}, `the sysctls "foo" are not known to be namespaced`},
		{[]string{"foo*"}, `the sysctls "foo" are not known to be namespaced`},
		{[]string{"kernel.*"}, `the sysctls "kernel." are not known to be namespaced`},
	} {
		got := ""
		if err := ValidateAllowedUnsafeSysctls(tc.patterns); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.patterns, got, tc.want)
		}
	}
}
