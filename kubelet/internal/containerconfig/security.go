package containerconfig

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The container's security context is built as the upstream kubelet builds
// it (pkg/kubelet/kuberuntime/security_context.go and helpers.go, and
// pkg/securitycontext), so a runtime gets the same request from either
// kubelet: the same seccomp, AppArmor and SELinux settings, masked paths and
// groups, and the image's user when the spec names none.

// ImageUser is the user an image runs as, from its CRI ImageStatus: UID when
// the image names a number, else Username.
type ImageUser struct {
	UID      *int64
	Username string
}

// ImageUserOf is upstream's getImageUser: the image's uid, else its user
// name; an image that names neither runs as root.
func ImageUserOf(img *runtimeapi.Image) ImageUser {
	if img != nil {
		if img.Uid != nil {
			uid := img.Uid.Value
			return ImageUser{UID: &uid}
		}
		if img.Username != "" {
			return ImageUser{Username: img.Username}
		}
	}
	return ImageUser{UID: new(int64)}
}

// effectiveSecurityContext merges the Pod's security context into the
// container's, the container winning (securitycontext.DetermineEffectiveSecurityContext).
func effectiveSecurityContext(pod *v1.Pod, c *v1.Container) *v1.SecurityContext {
	eff := &v1.SecurityContext{}
	if psc := pod.Spec.SecurityContext; psc != nil {
		eff.SELinuxOptions = psc.SELinuxOptions
		eff.RunAsUser = psc.RunAsUser
		eff.RunAsGroup = psc.RunAsGroup
		eff.RunAsNonRoot = psc.RunAsNonRoot
	}
	csc := c.SecurityContext
	if csc == nil {
		return eff
	}
	if csc.SELinuxOptions != nil {
		eff.SELinuxOptions = csc.SELinuxOptions
	}
	eff.Capabilities = csc.Capabilities
	if csc.Privileged != nil {
		eff.Privileged = csc.Privileged
	}
	if csc.RunAsUser != nil {
		eff.RunAsUser = csc.RunAsUser
	}
	if csc.RunAsGroup != nil {
		eff.RunAsGroup = csc.RunAsGroup
	}
	if csc.RunAsNonRoot != nil {
		eff.RunAsNonRoot = csc.RunAsNonRoot
	}
	eff.ReadOnlyRootFilesystem = csc.ReadOnlyRootFilesystem
	eff.AllowPrivilegeEscalation = csc.AllowPrivilegeEscalation
	eff.ProcMount = csc.ProcMount
	return eff
}

// VerifyRunAsNonRoot refuses a container whose effective runAsNonRoot the
// user it would run as breaks, with upstream's messages (verifyRunAsNonRoot).
// The error wraps ErrConfig: the container's reason is
// CreateContainerConfigError.
func VerifyRunAsNonRoot(pod *v1.Pod, c *v1.Container, img ImageUser) error {
	eff := effectiveSecurityContext(pod, c)
	if eff.RunAsNonRoot == nil || !*eff.RunAsNonRoot {
		return nil
	}
	podName := pod.Name + "_" + pod.Namespace + "(" + string(pod.UID) + ")" // upstream's format.Pod
	if eff.RunAsUser != nil {
		if *eff.RunAsUser == 0 {
			return configErrorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podName, c.Name)
		}
		return nil
	}
	switch {
	case img.UID == nil && img.Username != "":
		return configErrorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)",
			img.Username, podName, c.Name)
	case img.UID != nil:
		if *img.UID == 0 {
			return configErrorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podName, c.Name)
		}
		if errs := validation.IsValidUserID(*img.UID); len(errs) > 0 {
			return configErrorf("container has runAsNonRoot and image has an invalid user id (%d). (Must be 1-(%d)): %s (pod: %q, container: %s)",
				*img.UID, math.MaxInt32, strings.Join(errs, "; "), podName, c.Name)
		}
	}
	return nil
}

// securityContext is upstream's determineEffectiveSecurityContext.
func securityContext(pod *v1.Pod, c *v1.Container, img ImageUser, n Node, userns *runtimeapi.UserNamespace) (*runtimeapi.LinuxContainerSecurityContext, error) {
	eff := effectiveSecurityContext(pod, c)
	ns, err := namespaces(pod, userns)
	if err != nil {
		return nil, err
	}
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns, SelinuxOptions: seLinux(eff.SELinuxOptions)}
	if cap := eff.Capabilities; cap != nil {
		sc.Capabilities = &runtimeapi.Capability{}
		for _, a := range cap.Add {
			sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(a))
		}
		for _, d := range cap.Drop {
			sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(d))
		}
	}
	if eff.RunAsUser != nil {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: *eff.RunAsUser}
	} else {
		if img.UID != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *img.UID}
		}
		sc.RunAsUsername = img.Username
	}
	if eff.RunAsGroup != nil {
		sc.RunAsGroup = &runtimeapi.Int64Value{Value: *eff.RunAsGroup}
	}
	if eff.Privileged != nil {
		sc.Privileged = *eff.Privileged
	}
	if eff.ReadOnlyRootFilesystem != nil {
		sc.ReadonlyRootfs = *eff.ReadOnlyRootFilesystem
	}
	if eff.AllowPrivilegeEscalation != nil {
		sc.NoNewPrivs = !*eff.AllowPrivilegeEscalation
	}
	if sc.Seccomp, err = seccompProfile(pod, c, n); err != nil {
		return nil, err
	}
	if sc.Apparmor, sc.ApparmorProfile, err = appArmorProfile(pod, c); err != nil {
		return nil, err
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if sc.SupplementalGroupsPolicy, err = groupsPolicy(psc.SupplementalGroupsPolicy); err != nil {
			return nil, err
		}
	}
	// Upstream sends the lists for privileged containers too; runtimes
	// leave a privileged container's /proc and /sys unmasked.
	if eff.ProcMount != nil && *eff.ProcMount == v1.UnmaskedProcMount {
		sc.MaskedPaths, sc.ReadonlyPaths = []string{}, []string{}
	} else {
		sc.MaskedPaths, sc.ReadonlyPaths = defaultMaskedPaths(), defaultReadonlyPaths()
	}
	return sc, nil
}

func seLinux(o *v1.SELinuxOptions) *runtimeapi.SELinuxOption {
	if o == nil {
		return nil
	}
	return &runtimeapi.SELinuxOption{User: o.User, Role: o.Role, Type: o.Type, Level: o.Level}
}

func groupsPolicy(p *v1.SupplementalGroupsPolicy) (runtimeapi.SupplementalGroupsPolicy, error) {
	if p == nil {
		return runtimeapi.SupplementalGroupsPolicy_Merge, nil
	}
	v, ok := runtimeapi.SupplementalGroupsPolicy_value[string(*p)]
	if !ok {
		return 0, configErrorf("unsupported supplementalGroupsPolicy: %s", string(*p))
	}
	return runtimeapi.SupplementalGroupsPolicy(v), nil
}

// seccompProfile is upstream's getSeccompProfile: the container's field,
// else the Pod's, else RuntimeDefault with seccompDefault and Unconfined
// without. Localhost profiles live under <root-dir>/seccomp.
func seccompProfile(pod *v1.Pod, c *v1.Container, n Node) (*runtimeapi.SecurityProfile, error) {
	var p *v1.SeccompProfile
	if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
		p = c.SecurityContext.SeccompProfile
	} else if pod.Spec.SecurityContext != nil {
		p = pod.Spec.SecurityContext.SeccompProfile
	}
	switch {
	case p == nil && n.SeccompDefault, p != nil && p.Type == v1.SeccompProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case p != nil && p.Type == v1.SeccompProfileTypeLocalhost:
		if p.LocalhostProfile == nil || *p.LocalhostProfile == "" {
			return nil, configErrorf("localhostProfile must be set if seccompProfile type is Localhost.")
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost,
			LocalhostRef: filepath.Join(n.RootDir, "seccomp", *p.LocalhostProfile)}, nil
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
}

// appArmorProfile is upstream's getAppArmorProfile: the container's field,
// else the deprecated per-container annotation, else the Pod's field; none
// leaves the runtime's default. The second value is the deprecated string
// form older runtimes read.
func appArmorProfile(pod *v1.Pod, c *v1.Container) (*runtimeapi.SecurityProfile, string, error) {
	p := AppArmorProfile(pod, c)
	if p == nil {
		return nil, "", nil
	}
	switch p.Type {
	case v1.AppArmorProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, v1.DeprecatedAppArmorBetaProfileRuntimeDefault, nil
	case v1.AppArmorProfileTypeUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, v1.DeprecatedAppArmorBetaProfileNameUnconfined, nil
	case v1.AppArmorProfileTypeLocalhost:
		if p.LocalhostProfile == nil {
			return nil, "", configErrorf("missing localhost apparmor profile name")
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: *p.LocalhostProfile},
			v1.DeprecatedAppArmorBetaProfileNamePrefix + *p.LocalhostProfile, nil
	}
	return nil, "", configErrorf("unknown apparmor profile type: %q", p.Type)
}

// AppArmorProfile is the profile c asks for, in upstream's precedence
// (apparmor.GetProfile); nil when none is named.
func AppArmorProfile(pod *v1.Pod, c *v1.Container) *v1.AppArmorProfile {
	if c.SecurityContext != nil && c.SecurityContext.AppArmorProfile != nil {
		return c.SecurityContext.AppArmorProfile
	}
	if val, ok := pod.Annotations[v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix+c.Name]; ok {
		switch {
		case val == v1.DeprecatedAppArmorBetaProfileRuntimeDefault:
			return &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}
		case val == v1.DeprecatedAppArmorBetaProfileNameUnconfined:
			return &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeUnconfined}
		case strings.HasPrefix(val, v1.DeprecatedAppArmorBetaProfileNamePrefix):
			name := strings.TrimPrefix(val, v1.DeprecatedAppArmorBetaProfileNamePrefix)
			return &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeLocalhost, LocalhostProfile: &name}
		}
		// An unknown value falls through to the Pod's field, as upstream.
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.AppArmorProfile
	}
	return nil
}

// defaultMaskedPaths are upstream's (kept in sync with moby), plus each
// possible CPU's thermal_throttle directory that exists on this host.
var defaultMaskedPaths = sync.OnceValue(func() []string {
	paths := []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"}
	for _, cpu := range possibleCPUs() {
		p := fmt.Sprintf("/sys/devices/system/cpu/cpu%d/thermal_throttle", cpu)
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, p)
		}
	}
	return paths
})

func defaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// possibleCPUs reads /sys/devices/system/cpu/possible ("0-3,5"), else
// counts runtime.NumCPU, as upstream.
func possibleCPUs() []int {
	if cpus := parseCPUList(readFile("/sys/devices/system/cpu/possible")); cpus != nil {
		return cpus
	}
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func parseCPUList(s string) []int {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	var cpus []int
	for _, r := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil
			}
		}
		for i := a; i <= b; i++ {
			cpus = append(cpus, i)
		}
	}
	return cpus
}
