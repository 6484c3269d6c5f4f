package admission

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
)

const annot = v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix

// aaPod is a Pending Pod with init container "i", app container "c" and
// ephemeral container "e".
func aaPod(mutate func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{Spec: v1.PodSpec{
		InitContainers:      []v1.Container{{Name: "i"}},
		Containers:          []v1.Container{{Name: "c"}},
		EphemeralContainers: []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "e"}}},
	}, Status: v1.PodStatus{Phase: v1.PodPending}}
	mutate(p)
	return p
}

func profile(t v1.AppArmorProfileType, name ...string) *v1.AppArmorProfile {
	p := &v1.AppArmorProfile{Type: t}
	if len(name) > 0 {
		p.LocalhostProfile = &name[0]
	}
	return p
}

func TestAdmitAppArmor(t *testing.T) {
	const (
		disabled   = "Cannot enforce AppArmor: AppArmor is not enabled on the host"
		emptyLocal = `Cannot enforce AppArmor: invalid empty AppArmor profile name: "&AppArmorProfile{Type:Localhost,LocalhostProfile:*,}"`
		nilLocal   = `Cannot enforce AppArmor: invalid empty AppArmor profile name: "&AppArmorProfile{Type:Localhost,LocalhostProfile:nil,}"`
	)
	reject := func(msg string) Result { return Result{Reason: "AppArmor", Message: msg} }
	admit := Result{Admit: true}
	podField := func(pr *v1.AppArmorProfile) func(*v1.Pod) {
		return func(p *v1.Pod) { p.Spec.SecurityContext = &v1.PodSecurityContext{AppArmorProfile: pr} }
	}
	initField := func(pr *v1.AppArmorProfile) func(*v1.Pod) {
		return func(p *v1.Pod) { p.Spec.InitContainers[0].SecurityContext = &v1.SecurityContext{AppArmorProfile: pr} }
	}
	ephemeralField := func(pr *v1.AppArmorProfile) func(*v1.Pod) {
		return func(p *v1.Pod) {
			p.Spec.EphemeralContainers[0].SecurityContext = &v1.SecurityContext{AppArmorProfile: pr}
		}
	}
	annotations := func(kv ...string) func(*v1.Pod) {
		return func(p *v1.Pod) {
			p.Annotations = map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				p.Annotations[kv[i]] = kv[i+1]
			}
		}
	}
	both := func(fs ...func(*v1.Pod)) func(*v1.Pod) {
		return func(p *v1.Pod) {
			for _, f := range fs {
				f(p)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		enabled bool
		pod     *v1.Pod
		want    Result
	}{
		{"no profile, disabled", false, aaPod(func(*v1.Pod) {}), admit},
		{"unconfined everywhere, disabled", false, aaPod(both(podField(profile(v1.AppArmorProfileTypeUnconfined)),
			initField(profile(v1.AppArmorProfileTypeUnconfined)), annotations(annot+"c", "unconfined"))), admit},
		{"pod runtime default, disabled", false, aaPod(podField(profile(v1.AppArmorProfileTypeRuntimeDefault))), reject(disabled)},
		{"pod runtime default, enabled", true, aaPod(podField(profile(v1.AppArmorProfileTypeRuntimeDefault))), admit},
		{"init container localhost, disabled", false, aaPod(initField(profile(v1.AppArmorProfileTypeLocalhost, "p"))), reject(disabled)},
		{"ephemeral container runtime default, disabled", false, aaPod(ephemeralField(profile(v1.AppArmorProfileTypeRuntimeDefault))), reject(disabled)},
		{"annotation runtime default, disabled", false, aaPod(annotations(annot+"c", "runtime/default")), reject(disabled)},
		{"annotation of unknown container, disabled", false, aaPod(annotations(annot+"ghost", "localhost/p")), reject(disabled)},
		{"annotation localhost, enabled", true, aaPod(annotations(annot+"c", "localhost/p")), admit},
		{"not pending, disabled", false, aaPod(both(podField(profile(v1.AppArmorProfileTypeRuntimeDefault)),
			func(p *v1.Pod) { p.Status.Phase = v1.PodRunning })), admit},
		{"static pod without phase, disabled", false, aaPod(both(podField(profile(v1.AppArmorProfileTypeRuntimeDefault)),
			func(p *v1.Pod) { p.Status.Phase = "" })), reject(disabled)},
		{"empty localhost on pod, enabled", true, aaPod(podField(profile(v1.AppArmorProfileTypeLocalhost, ""))), reject(emptyLocal)},
		{"blank localhost on container, enabled", true, aaPod(func(p *v1.Pod) {
			p.Spec.Containers[0].SecurityContext = &v1.SecurityContext{AppArmorProfile: profile(v1.AppArmorProfileTypeLocalhost, " ")}
		}), reject(`Cannot enforce AppArmor: invalid empty AppArmor profile name: "&AppArmorProfile{Type:Localhost,LocalhostProfile:* ,}"`)},
		{"nil localhost on ephemeral, enabled", true, aaPod(ephemeralField(profile(v1.AppArmorProfileTypeLocalhost))), reject(nilLocal)},
		{"empty localhost annotation, enabled", true, aaPod(annotations(annot+"i", "localhost/")), reject(emptyLocal)},
		{"empty localhost on pod, disabled reports the host", false, aaPod(podField(profile(v1.AppArmorProfileTypeLocalhost, ""))), reject(disabled)},
		// The container's field wins over its annotation, which wins over the Pod's field.
		{"container field over annotation", true, aaPod(both(initField(profile(v1.AppArmorProfileTypeRuntimeDefault)),
			annotations(annot+"i", "localhost/"))), admit},
		{"annotation over pod field", true, aaPod(both(podField(profile(v1.AppArmorProfileTypeLocalhost, "")),
			annotations(annot+"i", "unconfined", annot+"c", "runtime/default", annot+"e", "localhost/p"))), admit},
		{"invalid annotation falls back to pod field", true, aaPod(both(podField(profile(v1.AppArmorProfileTypeLocalhost, "")),
			annotations(annot+"i", "unconfined", annot+"c", "bogus", annot+"e", "localhost/p"))), reject(emptyLocal)},
	} {
		n := Node{AppArmorEnabled: func() bool { return tc.enabled }}
		if d := cmp.Diff(tc.want, Admit(n, nil, tc.pod)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
