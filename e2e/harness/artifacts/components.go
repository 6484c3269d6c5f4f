package artifacts

// Versions of the upstream components. Each must match the require line of
// its tools module (tools/<Module>/go.mod); the stamp hashes that go.mod too,
// so bumping one without the other still rebuilds.
const (
	KubernetesVersion = "v1.37.2"
	ContainerdVersion = "v2.4.2"
	RuncVersion       = "v1.5.2"
	CNIVersion        = "v1.10.0"
	CRIToolsVersion   = "v1.37.0"
	EtcdVersion       = "v3.6.16"
	CoreDNSVersion    = "v1.14.7"
)

// Where a binary is installed.
type place int

const (
	inBin      place = iota // <root>/bin
	inCNIBin                // <root>/cni/bin
	inImageBin              // <root>/images/bin: programs baked into images
)

// Step is one `go` invocation of a component's build. Dir is relative to the
// tools module (or, when InSource is set, to the writable copy of SourceModule).
type Step struct {
	Args []string
	Env  []string
	// InSource runs the step in a writable copy of the component's
	// SourceModule instead of its tools module (critest is a test binary of
	// cri-tools' own module, built with cri-tools' own go.sum).
	InSource bool
}

// Component is one upstream thing built from the module proxy.
type Component struct {
	Name    string
	Version string
	// Module is the directory under tools/ holding the module that pins it.
	Module string
	// SourceModule, when set, is module@version copied out of the module
	// cache for steps with InSource.
	SourceModule string
	// Binaries it installs, by file name.
	Binaries []string
	place    place
	// Steps write every binary into $OUT (a staging dir), so a failed build
	// never leaves a half-updated bin dir.
	Steps []Step
	// Adopt, when set, is a directory where another process builds this
	// component; Ensure waits for it instead of starting a second build.
	adopt bool
	// Optional components are built only when named (e2e.test is large).
	Optional bool
}

// OutVar is replaced in step arguments by the staging directory.
const OutVar = "$OUT"

var kubeLDFlags = "-s -w" +
	" -X k8s.io/component-base/version.gitVersion=" + KubernetesVersion +
	" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
	" -X k8s.io/component-base/version.gitTreeState=clean" +
	" -X k8s.io/component-base/version.buildDate=2026-11-26T00:00:00Z" +
	" -X k8s.io/client-go/pkg/version.gitVersion=" + KubernetesVersion +
	" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"

// kubeEnv matches the environment of the lead's warm build (cgo on, no
// GOFLAGS) so the Go build cache it filled is reused.
var kubeEnv = []string{"CGO_ENABLED=1", "GOFLAGS="}

var noCgo = []string{"CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"}

// Components lists everything the harness builds, in build order: the
// runtime stack first (others wait on it), e2e.test last.
var Components = []Component{
	{
		Name: "runc", Version: RuncVersion, Module: "runc",
		Binaries: []string{"runc"},
		Steps: []Step{{
			Env: []string{"CGO_ENABLED=1", "GOFLAGS=-buildvcs=false"},
			Args: []string{"build", "-trimpath", "-tags", "seccomp urfave_cli_no_docs",
				"-ldflags", "-s -w -X main.version=" + RuncVersion[1:],
				"-o", OutVar + "/runc", "github.com/opencontainers/runc"},
		}},
	},
	{
		Name: "containerd", Version: ContainerdVersion, Module: "containerd",
		Binaries: []string{"containerd", "containerd-shim-runc-v2"},
		Steps: []Step{{
			Env: noCgo,
			Args: []string{"build", "-trimpath",
				"-ldflags", "-s -w -X github.com/containerd/containerd/v2/version.Version=" + ContainerdVersion,
				"-o", OutVar + "/",
				"github.com/containerd/containerd/v2/cmd/containerd",
				"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"},
		}},
	},
	{
		Name: "cni", Version: CNIVersion, Module: "cni",
		Binaries: []string{"bridge", "host-local", "loopback", "portmap"},
		place:    inCNIBin,
		Steps: []Step{{
			Env: noCgo,
			Args: []string{"build", "-trimpath",
				"-ldflags", "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=" + CNIVersion,
				"-o", OutVar + "/",
				"github.com/containernetworking/plugins/plugins/ipam/host-local",
				"github.com/containernetworking/plugins/plugins/main/bridge",
				"github.com/containernetworking/plugins/plugins/main/loopback",
				"github.com/containernetworking/plugins/plugins/meta/portmap"},
		}},
	},
	{
		Name: "crictl", Version: CRIToolsVersion, Module: "cri-tools",
		Binaries: []string{"crictl"},
		Steps: []Step{{
			Env: noCgo,
			Args: []string{"build", "-trimpath",
				"-ldflags", "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=" + CRIToolsVersion,
				"-o", OutVar + "/crictl", "sigs.k8s.io/cri-tools/cmd/crictl"},
		}},
	},
	{
		Name: "critest", Version: CRIToolsVersion, Module: "cri-tools",
		SourceModule: "sigs.k8s.io/cri-tools@" + CRIToolsVersion,
		Binaries:     []string{"critest"},
		Steps: []Step{{
			InSource: true,
			Env:      noCgo,
			Args: []string{"test", "-c", "-trimpath",
				"-ldflags", "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=" + CRIToolsVersion,
				"-o", OutVar + "/critest", "./cmd/critest"},
		}},
	},
	{
		Name: "kubernetes", Version: KubernetesVersion, Module: "kubernetes",
		Binaries: []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler",
			"kubectl", "kubelet", "kube-proxy", "agnhost"},
		adopt: true,
		Steps: []Step{{
			Env: kubeEnv,
			Args: []string{"build", "-trimpath", "-ldflags", kubeLDFlags, "-o", OutVar + "/",
				"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager",
				"k8s.io/kubernetes/cmd/kube-scheduler", "k8s.io/kubernetes/cmd/kubectl",
				"k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy",
				"k8s.io/kubernetes/test/images/agnhost"},
		}},
	},
	{
		Name: "etcd", Version: EtcdVersion, Module: "etcd",
		Binaries: []string{"etcd"},
		Steps: []Step{{
			Env:  noCgo,
			Args: []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", OutVar + "/etcd", "./cmd/etcd"},
		}},
	},
	{
		Name: "coredns", Version: CoreDNSVersion, Module: "coredns",
		Binaries: []string{"coredns"},
		Steps: []Step{{
			Env:  noCgo,
			Args: []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", OutVar + "/coredns", "./cmd/coredns"},
		}},
	},
	{
		Name: "testimages", Version: "v0", Module: "testimages",
		Binaries: []string{"pause", "webserver", "nnp"},
		place:    inImageBin,
		Steps: []Step{{
			Env: noCgo,
			Args: []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", OutVar + "/",
				"./cmd/pause", "./cmd/webserver", "./cmd/nnp"},
		}},
	},
	{
		Name: "e2e.test", Version: KubernetesVersion, Module: "kubernetes",
		Binaries: []string{"e2e.test"},
		Optional: true,
		Steps: []Step{{
			Env: kubeEnv,
			Args: []string{"test", "-c", "-vet=off", "-trimpath", "-ldflags", kubeLDFlags,
				"-o", OutVar + "/e2e.test", "k8s.io/kubernetes/test/e2e"},
		}},
	},
}

// Lookup finds a component by its name or by one of its binaries' names.
func Lookup(name string) (Component, bool) {
	for _, c := range Components {
		if c.Name == name {
			return c, true
		}
		for _, b := range c.Binaries {
			if b == name {
				return c, true
			}
		}
	}
	return Component{}, false
}
