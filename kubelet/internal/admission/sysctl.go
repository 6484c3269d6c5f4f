package admission

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"
	utilsysctl "k8s.io/component-helpers/node/util/sysctl"
)

// sysctlForbidden is upstream's sysctl.ForbiddenReason.
const sysctlForbidden = "SysctlForbidden"

// safeSysctls are upstream's safe sysctls (pkg/kubelet/sysctl/safe_sysctls.go),
// each with the kernel version that namespaced it (pkg/util/kernel/constants.go):
// before that version the sysctl is host-wide, so not safe.
var safeSysctls = []struct{ name, kernel string }{
	{"kernel.shm_rmid_forced", ""},
	{"net.ipv4.ip_local_port_range", ""},
	{"net.ipv4.tcp_syncookies", ""},
	{"net.ipv4.ping_group_range", ""},
	{"net.ipv4.ip_unprivileged_port_start", ""},
	{"net.ipv4.ip_local_reserved_ports", "3.16"},
	{"net.ipv4.tcp_keepalive_time", "4.5"},
	{"net.ipv4.tcp_fin_timeout", "4.6"},
	{"net.ipv4.tcp_keepalive_intvl", "4.5"},
	{"net.ipv4.tcp_keepalive_probes", "4.5"},
	{"net.ipv4.tcp_rmem", "4.15"},
	{"net.ipv4.tcp_wmem", "4.15"},
	{"net.ipv4.tcp_slow_start_after_idle", "4.15"},
	{"net.ipv4.tcp_notsent_lowat", "4.6"},
}

// safeSysctlAllowlist is upstream's getSafeSysctlAllowlist: a sysctl needing a
// newer kernel, or any kernel when the version is unknown, is left out.
func safeSysctlAllowlist(kernel func() (*version.Version, error)) []string {
	kv, err := kernel()
	if err != nil {
		kv = nil
	}
	var out []string
	for _, s := range safeSysctls {
		if s.kernel == "" || kv != nil && kv.AtLeast(version.MustParseGeneric(s.kernel)) {
			out = append(out, s.name)
		}
	}
	return out
}

// hostKernelVersion reads the running kernel's release as upstream's
// kernel.GetVersion does; read once, as upstream builds its allowlist once.
var hostKernelVersion = sync.OnceValues(func() (*version.Version, error) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return nil, fmt.Errorf("failed to read os-release file: %w", err)
	}
	v, err := version.ParseGeneric(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("failed to parse kernel version: %w", err)
	}
	return v, nil
})

// The sysctl pattern syntax of upstream's policy validation (IsValidSysctlPattern).
const (
	sysctlMaxLength           = 253
	sysctlSegmentFmt          = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
	sysctlPatternSegmentFmt   = "([a-z0-9][-_a-z0-9]*)?[a-z0-9*]"
	sysctlContainSlashPattern = "(" + sysctlSegmentFmt + "[\\./])*" + sysctlPatternSegmentFmt
)

var sysctlPatternRegexp = regexp.MustCompile("^" + sysctlContainSlashPattern + "$")

// sysctlAllowlist is upstream's patternAllowlist: exact names and prefixes
// (from "prefix*" patterns), each with the kernel namespace it lives in.
type sysctlAllowlist struct {
	sysctls, prefixes map[string]utilsysctl.Namespace
}

// newSysctlAllowlist is upstream's NewAllowlist, with its error texts.
func newSysctlAllowlist(patterns []string) (*sysctlAllowlist, error) {
	w := &sysctlAllowlist{sysctls: map[string]utilsysctl.Namespace{}, prefixes: map[string]utilsysctl.Namespace{}}
	for _, s := range patterns {
		if len(s) > sysctlMaxLength || !sysctlPatternRegexp.MatchString(s) {
			return nil, fmt.Errorf("sysctl %q must have at most %d characters and match regex %s", s, sysctlMaxLength, sysctlContainSlashPattern)
		}
		ns, sysctlOrPrefix, prefixed := utilsysctl.GetNamespace(s)
		if ns == utilsysctl.UnknownNamespace {
			return nil, fmt.Errorf("the sysctls %q are not known to be namespaced", sysctlOrPrefix)
		}
		if prefixed {
			w.prefixes[sysctlOrPrefix] = ns
		} else {
			w.sysctls[sysctlOrPrefix] = ns
		}
	}
	return w, nil
}

// ValidateAllowedUnsafeSysctls checks the allowedUnsafeSysctls setting as the
// upstream kubelet does at startup (it refuses to start on an error).
func ValidateAllowedUnsafeSysctls(patterns []string) error {
	_, err := newSysctlAllowlist(patterns)
	return err
}

// validate is upstream's validateSysctl: a sysctl of a namespace the Pod
// shares with the host would change the host's value, so it is refused.
func (w *sysctlAllowlist) validate(sysctl string, hostNet, hostIPC, hostUsers bool) error {
	sysctl = utilsysctl.NormalizeName(sysctl)
	check := func(ns utilsysctl.Namespace) error {
		if ns == utilsysctl.IPCNamespace && hostIPC || ns == utilsysctl.NetNamespace && hostNet || ns == utilsysctl.UserNamespace && hostUsers {
			return fmt.Errorf("%q not allowed with host %s enabled", sysctl, ns)
		}
		return nil
	}
	if ns, ok := w.sysctls[sysctl]; ok {
		return check(ns)
	}
	for p, ns := range w.prefixes {
		if strings.HasPrefix(sysctl, p) {
			return check(ns)
		}
	}
	return fmt.Errorf("%q not allowlisted", sysctl)
}

// admitSysctls is upstream's patternAllowlist.Admit over the safe sysctls and
// the node's allowed unsafe ones.
func admitSysctls(n Node, pod *v1.Pod) Result {
	sc := pod.Spec.SecurityContext
	if sc == nil || len(sc.Sysctls) == 0 {
		return Result{Admit: true}
	}
	kernel := n.KernelVersion
	if kernel == nil {
		kernel = hostKernelVersion
	}
	w, err := newSysctlAllowlist(append(safeSysctlAllowlist(kernel), n.AllowedUnsafeSysctls...))
	if err != nil {
		// The configuration was validated at startup (ValidateAllowedUnsafeSysctls);
		// a bad pattern here can only come from a caller that skipped it.
		return Result{Reason: sysctlForbidden, Message: fmt.Sprintf("forbidden sysctl: %v", err)}
	}
	// hostUsers defaults to true: a Pod without it shares the host's user namespace.
	hostUsers := pod.Spec.HostUsers == nil || *pod.Spec.HostUsers
	for _, s := range sc.Sysctls {
		if err := w.validate(s.Name, pod.Spec.HostNetwork, pod.Spec.HostIPC, hostUsers); err != nil {
			return Result{Reason: sysctlForbidden, Message: fmt.Sprintf("forbidden sysctl: %v", err)}
		}
	}
	return Result{Admit: true}
}
