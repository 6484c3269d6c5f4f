package admission

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	corev1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"

	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
	"github.com/nodesuite/nodesuite/kubelet/internal/podsource"
)

// systemCriticalPriority is upstream's scheduling.SystemCriticalPriority:
// Pods at or above it are admitted whatever the node's pressure.
const systemCriticalPriority = 2 * 1000000000

// admitPressure is upstream's eviction manager Admit: under memory pressure
// alone only BestEffort Pods are refused (unless they tolerate the
// memory-pressure taint); any other pressure refuses every Pod but critical
// ones.
func admitPressure(n Node, pod *v1.Pod) Result {
	if len(n.Pressure) == 0 || critical(pod) {
		return Result{Admit: true}
	}
	if len(n.Pressure) == 1 && n.Pressure[0] == v1.NodeMemoryPressure {
		if containerconfig.QOS(pod) != v1.PodQOSBestEffort {
			return Result{Admit: true}
		}
		taint := &v1.Taint{Key: v1.TaintNodeMemoryPressure, Effect: v1.TaintEffectNoSchedule}
		if corev1.TolerationsTolerateTaint(klog.Background(), pod.Spec.Tolerations, taint, false) {
			return Result{Admit: true}
		}
	}
	return Result{Reason: "Evicted", Message: fmt.Sprintf("The node had condition: %v. ", n.Pressure)}
}

// critical is upstream's IsCriticalPod: static and mirror Pods, and Pods at
// system-critical priority.
func critical(pod *v1.Pod) bool {
	if podsource.IsStatic(pod) {
		return true
	}
	if _, mirror := pod.Annotations[v1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	return pod.Spec.Priority != nil && *pod.Spec.Priority >= systemCriticalPriority
}
