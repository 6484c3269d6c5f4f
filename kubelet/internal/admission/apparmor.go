package admission

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
)

// appArmorNotAdmitted is upstream's lifecycle.AppArmorNotAdmittedReason.
const appArmorNotAdmitted = "AppArmor"

// hostAppArmorEnabled is upstream's forked libcontainer apparmor.IsEnabled:
// the securityfs directory exists and the module parameter reads "Y". Probed
// once: upstream expects a kubelet restart to pick up a change.
var hostAppArmorEnabled = sync.OnceValue(func() bool {
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
		return false
	}
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && len(b) > 1 && b[0] == 'Y'
})

// admitAppArmor is upstream's appArmorAdmitHandler over its apparmor.Validator.
func admitAppArmor(n Node, pod *v1.Pod) Result {
	// AppArmor is Linux-only; upstream registers no handler elsewhere.
	if runtime.GOOS != "linux" {
		return Result{Admit: true}
	}
	// Upstream skips Pods already running or terminated. Its file source sets
	// Pending on static Pods; ours leaves the phase empty, which is the same.
	if p := pod.Status.Phase; p != v1.PodPending && p != "" {
		return Result{Admit: true}
	}
	enabled := n.AppArmorEnabled
	if enabled == nil {
		enabled = hostAppArmorEnabled
	}
	if err := validateAppArmor(pod, enabled); err != nil {
		return Result{Reason: appArmorNotAdmitted, Message: fmt.Sprintf("Cannot enforce AppArmor: %v", err)}
	}
	return Result{Admit: true}
}

// validateAppArmor is upstream's validator.Validate.
func validateAppArmor(pod *v1.Pod, enabled func() bool) error {
	if !appArmorRequired(pod) {
		return nil
	}
	if !enabled() {
		return errors.New("AppArmor is not enabled on the host")
	}
	for _, c := range allContainers(&pod.Spec) {
		profile := containerconfig.AppArmorProfile(pod, c)
		if profile == nil {
			continue
		}
		// Upstream tightens API validation here: Localhost needs a name.
		if profile.Type == v1.AppArmorProfileTypeLocalhost &&
			(profile.LocalhostProfile == nil || strings.TrimSpace(*profile.LocalhostProfile) == "") {
			return fmt.Errorf("invalid empty AppArmor profile name: %q", profile)
		}
	}
	return nil
}

// appArmorRequired is upstream's isRequired: some profile other than
// Unconfined is asked for, by a field or by a deprecated annotation (of any
// container name, as upstream).
func appArmorRequired(pod *v1.Pod) bool {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.AppArmorProfile != nil && sc.AppArmorProfile.Type != v1.AppArmorProfileTypeUnconfined {
		return true
	}
	for _, c := range allContainers(&pod.Spec) {
		if sc := c.SecurityContext; sc != nil && sc.AppArmorProfile != nil && sc.AppArmorProfile.Type != v1.AppArmorProfileTypeUnconfined {
			return true
		}
	}
	// Upstream decides on the first such annotation in map order; with several
	// that disagree that is random, so any non-Unconfined one decides here.
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix) && v != v1.DeprecatedAppArmorBetaProfileNameUnconfined {
			return true
		}
	}
	return false
}

// allContainers lists init, app and ephemeral containers in upstream's
// podutil.VisitContainers(AllContainers) order.
func allContainers(spec *v1.PodSpec) []*v1.Container {
	out := make([]*v1.Container, 0, len(spec.InitContainers)+len(spec.Containers)+len(spec.EphemeralContainers))
	for i := range spec.InitContainers {
		out = append(out, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		out = append(out, &spec.Containers[i])
	}
	for i := range spec.EphemeralContainers {
		out = append(out, (*v1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	return out
}
