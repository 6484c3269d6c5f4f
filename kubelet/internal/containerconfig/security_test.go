package containerconfig

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

func secPod(psc *v1.PodSecurityContext, csc *v1.SecurityContext) (*v1.Pod, *v1.Container) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec: v1.PodSpec{SecurityContext: psc, Containers: []v1.Container{{Name: "c", SecurityContext: csc}}}}
	return pod, &pod.Spec.Containers[0]
}

// TestContainerSecurityContext compares the whole CRI security context with
// what the upstream kubelet's determineEffectiveSecurityContext sends.
func TestContainerSecurityContext(t *testing.T) {
	podNS := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD,
		UsernsOptions: hostUserNS}
	unconfined := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	runtimeDefault := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	root := ImageUser{UID: new(int64)}
	// base is what every unprivileged container gets with nothing set.
	base := func(mod func(*runtimeapi.LinuxContainerSecurityContext)) *runtimeapi.LinuxContainerSecurityContext {
		sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: podNS, RunAsUser: &runtimeapi.Int64Value{},
			Seccomp: unconfined, MaskedPaths: defaultMaskedPaths(), ReadonlyPaths: defaultReadonlyPaths()}
		if mod != nil {
			mod(sc)
		}
		return sc
	}
	for _, tc := range []struct {
		name string
		psc  *v1.PodSecurityContext
		csc  *v1.SecurityContext
		ann  map[string]string
		img  ImageUser
		node Node
		want *runtimeapi.LinuxContainerSecurityContext
	}{
		{name: "nothing set: the image's root uid, unconfined", img: root, want: base(nil)},
		{name: "image user name", img: ImageUser{Username: "app"}, want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.RunAsUser, sc.RunAsUsername = nil, "app"
		})},
		{name: "seccompDefault", img: root, node: Node{SeccompDefault: true}, want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.Seccomp = runtimeDefault
		})},
		{name: "pod RuntimeDefault seccomp", img: root,
			psc:  &v1.PodSecurityContext{SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault}},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.Seccomp = runtimeDefault })},
		{name: "container Unconfined wins over pod and seccompDefault", img: root, node: Node{SeccompDefault: true},
			psc:  &v1.PodSecurityContext{SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault}},
			csc:  &v1.SecurityContext{SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeUnconfined}},
			want: base(nil)},
		{name: "Localhost seccomp under <root-dir>/seccomp", img: root, node: Node{RootDir: "/var/lib/kubelet"},
			csc: &v1.SecurityContext{SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr.To("p.json")}},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/p.json"}
			})},
		{name: "AppArmor from the deprecated annotation beats the pod field", img: root,
			ann: map[string]string{v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + "c": "localhost/prof"},
			psc: &v1.PodSecurityContext{AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "prof"}
				sc.ApparmorProfile = "localhost/prof"
			})},
		{name: "an unknown annotation value falls through to the pod field", img: root,
			ann: map[string]string{v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + "c": "bogus"},
			psc: &v1.PodSecurityContext{AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeUnconfined}},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Apparmor, sc.ApparmorProfile = unconfined, "unconfined"
			})},
		{name: "pod AppArmor field", img: root,
			psc: &v1.PodSecurityContext{AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Apparmor, sc.ApparmorProfile = runtimeDefault, "runtime/default"
			})},
		{name: "pod fields merged, container's win; groups in upstream's order", img: ImageUser{UID: ptr.To[int64](5)},
			psc: &v1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](2000), FSGroup: ptr.To[int64](3000),
				SupplementalGroups: []int64{4000}, SupplementalGroupsPolicy: ptr.To(v1.SupplementalGroupsPolicyStrict),
				SELinuxOptions: &v1.SELinuxOptions{Level: "s0:c1"}},
			csc: &v1.SecurityContext{RunAsUser: ptr.To[int64](1001), SELinuxOptions: &v1.SELinuxOptions{Type: "t"},
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
				Capabilities: &v1.Capabilities{Add: []v1.Capability{"NET_ADMIN"}, Drop: []v1.Capability{"ALL"}}},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.RunAsUser, sc.RunAsGroup = &runtimeapi.Int64Value{Value: 1001}, &runtimeapi.Int64Value{Value: 2000}
				sc.SupplementalGroups = []int64{3000, 4000}
				sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
				sc.SelinuxOptions = &runtimeapi.SELinuxOption{Type: "t"}
				sc.NoNewPrivs, sc.ReadonlyRootfs = true, true
				sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"ALL"}}
			})},
		{name: "Unmasked procMount: empty lists", img: root,
			csc: &v1.SecurityContext{ProcMount: ptr.To(v1.UnmaskedProcMount)},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.MaskedPaths, sc.ReadonlyPaths = []string{}, []string{}
			})},
		{name: "privileged keeps the lists, as upstream", img: root, csc: &v1.SecurityContext{Privileged: ptr.To(true)},
			want: base(func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.Privileged = true })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, c := secPod(tc.psc, tc.csc)
			pod.Annotations = tc.ann
			got, err := securityContext(pod, c, tc.img, tc.node, hostUserNS)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, protocmp.Transform()); d != "" {
				t.Errorf("security context (-want +got):\n%s", d)
			}
		})
	}
}

func TestContainerSecurityContextErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		csc  *v1.SecurityContext
	}{
		{"Localhost seccomp without a name", &v1.SecurityContext{SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeLocalhost}}},
		{"Localhost AppArmor without a name", &v1.SecurityContext{AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeLocalhost}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, c := secPod(nil, tc.csc)
			if _, err := securityContext(pod, c, ImageUser{UID: new(int64)}, Node{}, hostUserNS); !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v, want ErrConfig", err)
			}
		})
	}
}

// TestVerifyRunAsNonRoot checks upstream's verifyRunAsNonRoot messages.
func TestVerifyRunAsNonRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		psc  *v1.PodSecurityContext
		csc  *v1.SecurityContext
		img  ImageUser
		want string // "" is allowed
	}{
		{name: "not asked", img: ImageUser{UID: new(int64)}},
		{name: "pod asks, image root", psc: &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, img: ImageUser{UID: new(int64)},
			want: `container has runAsNonRoot and image will run as root (pod: "p_ns(u1)", container: c)`},
		{name: "container lifts the pod's ask", psc: &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
			csc: &v1.SecurityContext{RunAsNonRoot: ptr.To(false)}, img: ImageUser{UID: new(int64)}},
		{name: "image non-root uid", csc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}, img: ImageUser{UID: ptr.To[int64](65534)}},
		{name: "image user name", csc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}, img: ImageUser{Username: "app"},
			want: `container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (pod: "p_ns(u1)", container: c)`},
		{name: "runAsUser 0", psc: &v1.PodSecurityContext{RunAsUser: ptr.To[int64](0)}, csc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)},
			img: ImageUser{UID: ptr.To[int64](10)}, want: `container's runAsUser breaks non-root policy (pod: "p_ns(u1)", container: c)`},
		{name: "runAsUser non-zero beats a root image", csc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](7)},
			img: ImageUser{UID: new(int64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, c := secPod(tc.psc, tc.csc)
			err := VerifyRunAsNonRoot(pod, c, tc.img)
			got := ""
			if err != nil {
				got = err.Error()
				if !errors.Is(err, ErrConfig) {
					t.Errorf("err %v does not wrap ErrConfig", err)
				}
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSandboxSecurityContext(t *testing.T) {
	pod, _ := secPod(&v1.PodSecurityContext{RunAsUser: ptr.To[int64](1), FSGroup: ptr.To[int64](2), SupplementalGroups: []int64{3},
		SELinuxOptions: &v1.SELinuxOptions{Level: "s0"}, SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeUnconfined}}, nil)
	cfg, err := SandboxConfig(pod, 0, Node{CgroupDriver: "cgroupfs", CgroupRoot: "/"}, hostUserNS)
	if err != nil {
		t.Fatal(err)
	}
	want := &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD,
			UsernsOptions: hostUserNS},
		// The Pod's Unconfined is for its containers: the sandbox always
		// gets the runtime's default, as upstream.
		Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		RunAsUser:          &runtimeapi.Int64Value{Value: 1},
		SupplementalGroups: []int64{2, 3},
		SelinuxOptions:     &runtimeapi.SELinuxOption{Level: "s0"},
	}
	if d := cmp.Diff(want, cfg.Linux.SecurityContext, protocmp.Transform()); d != "" {
		t.Errorf("sandbox security context (-want +got):\n%s", d)
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{"0-3,5\n": {0, 1, 2, 3, 5}, "0": {0}, "": nil, "x": nil, "3-1": nil} {
		if d := cmp.Diff(want, parseCPUList(in)); d != "" {
			t.Errorf("%q: %s", in, d)
		}
	}
}

func TestSandboxHostname(t *testing.T) {
	long := strings.Repeat("a", 50)
	for _, tc := range []struct {
		name    string
		spec    v1.PodSpec
		want    string
		wantErr bool
	}{
		{name: "pod name", want: "p"},
		{name: "hostname and subdomain", spec: v1.PodSpec{Hostname: "h", Subdomain: "s"}, want: "h"},
		{name: "FQDN", spec: v1.PodSpec{Hostname: "h", Subdomain: "s", SetHostnameAsFQDN: ptr.To(true)}, want: "h.s.ns.svc.cluster.local"},
		{name: "FQDN without subdomain is the name", spec: v1.PodSpec{SetHostnameAsFQDN: ptr.To(true)}, want: "p"},
		{name: "FQDN too long", spec: v1.PodSpec{Hostname: long, Subdomain: "s", SetHostnameAsFQDN: ptr.To(true)}, wantErr: true},
		{name: "hostnameOverride wins, no domain", spec: v1.PodSpec{Hostname: "h", Subdomain: "s", SetHostnameAsFQDN: ptr.To(true),
			HostnameOverride: ptr.To("node-a.example")}, want: "node-a.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: tc.spec}
			cfg, err := SandboxConfig(pod, 0, Node{ClusterDomain: "cluster.local"}, hostUserNS)
			if tc.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Errorf("err = %v, want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Hostname != tc.want {
				t.Errorf("hostname = %q, want %q", cfg.Hostname, tc.want)
			}
		})
	}
}
