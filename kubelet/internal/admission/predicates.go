package admission

import (
	"fmt"
	"runtime"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/nodesuite/nodesuite/kubelet/internal/podsource"
)

// Upstream's reasons (pkg/kubelet/lifecycle/predicate.go) and the scheduler
// plugins' names and texts its general filter reports.
const (
	reasonOSSelector      = "PodOSSelectorNodeLabelDoesNotMatch"
	reasonOSField         = "PodOSNotSupported"
	reasonGroupsPolicy    = "SupplementalGroupsPolicyNotSupported"
	predicateNodeAffinity = "NodeAffinity"
	predicateNodeName     = "NodeName"
	predicateNodePorts    = "NodePorts"
	predicateTaints       = "TaintToleration"
	errNodeAffinity       = "node(s) didn't match Pod's node affinity/selector"
	errNodeName           = "node(s) didn't match the requested node name"
	errNodePorts          = "node(s) didn't have free ports for the requested pod ports"
	errTaintsNotTolerated = "node(s) had taints that the pod didn't tolerate"
)

// admitPredicates is upstream's predicate admit handler: the OS label and
// field, the Strict supplemental groups policy, then its general filter
// (resources, node affinity, node name, host ports) and NoExecute taints;
// the first failure is the reason.
func admitPredicates(n Node, active []*v1.Pod, pod *v1.Pod) Result {
	if os, ok := pod.Labels[v1.LabelOSStable]; ok && os != runtime.GOOS {
		// The kubelet holds the node's OS label to its own OS.
		return Result{Reason: reasonOSSelector, Message: "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label"}
	}
	if pod.Spec.OS != nil && string(pod.Spec.OS.Name) != runtime.GOOS {
		return Result{Reason: reasonOSField, Message: "Failed to admit pod as the OS field doesn't match node OS"}
	}
	if sc := pod.Spec.SecurityContext; sc != nil && sc.SupplementalGroupsPolicy != nil &&
		*sc.SupplementalGroupsPolicy == v1.SupplementalGroupsPolicyStrict && !groupsPolicySupported(n.Object) {
		return Result{Reason: reasonGroupsPolicy,
			Message: fmt.Sprintf("SupplementalGroupsPolicy=%s is not supported in this node", v1.SupplementalGroupsPolicyStrict)}
	}
	if r := admitResources(n, active, pod); !r.Admit {
		return r
	}
	fail := func(name, desc string) Result {
		return Result{Reason: name, Message: fmt.Sprintf("Predicate %s failed: %s", name, desc)}
	}
	if node := n.Object; node != nil {
		if ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); !ok {
			return fail(predicateNodeAffinity, errNodeAffinity)
		}
		if pod.Spec.NodeName != "" && pod.Spec.NodeName != node.Name {
			return fail(predicateNodeName, errNodeName)
		}
	}
	if !portsFit(hostPorts(pod), active) {
		return fail(predicateNodePorts, errNodePorts)
	}
	if node := n.Object; node != nil && !podsource.IsStatic(pod) {
		if _, untolerated := corev1.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations,
			func(t *v1.Taint) bool { return t.Effect == v1.TaintEffectNoExecute }, false); untolerated {
			return fail(predicateTaints, errTaintsNotTolerated)
		}
	}
	return Result{Admit: true}
}

// groupsPolicySupported reads the node's status.features, which the kubelet
// fills from the runtime's status.
func groupsPolicySupported(node *v1.Node) bool {
	return node != nil && node.Status.Features != nil && node.Status.Features.SupplementalGroupsPolicy != nil &&
		*node.Status.Features.SupplementalGroupsPolicy
}

// hostPorts is the scheduler's util.GetHostPorts: the host ports of the app
// containers and of the init containers that keep running (sidecars).
func hostPorts(pod *v1.Pod) []v1.ContainerPort {
	var out []v1.ContainerPort
	add := func(c *v1.Container) {
		for _, p := range c.Ports {
			if p.HostPort > 0 {
				out = append(out, p)
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	return out
}

// hostPort is one (ip, protocol, port) a Pod holds on the node, with the
// scheduler's defaults: no IP is every IP, no protocol is TCP.
type hostPort struct {
	ip, protocol string
	port         int32
}

func keyOf(p v1.ContainerPort) hostPort {
	k := hostPort{ip: p.HostIP, protocol: string(p.Protocol), port: p.HostPort}
	if k.ip == "" {
		k.ip = "0.0.0.0"
	}
	if k.protocol == "" {
		k.protocol = string(v1.ProtocolTCP)
	}
	return k
}

// portsFit is the scheduler's HostPortInfo.CheckConflict over the active
// Pods' host ports (written out here: that type lives in k8s.io/kube-scheduler,
// a module this kubelet does not otherwise need). A wildcard address
// conflicts with the same protocol and port on any address.
func portsFit(want []v1.ContainerPort, active []*v1.Pod) bool {
	used := sets.New[hostPort]()
	for _, p := range active {
		for _, cp := range hostPorts(p) {
			used.Insert(keyOf(cp))
		}
	}
	for _, cp := range want {
		k := keyOf(cp)
		for u := range used {
			if u.protocol == k.protocol && u.port == k.port && (u.ip == k.ip || u.ip == "0.0.0.0" || k.ip == "0.0.0.0") {
				return false
			}
		}
	}
	return true
}
