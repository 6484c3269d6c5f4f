package runtime

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kubetypes "k8s.io/kubelet/pkg/types"
	"k8s.io/utils/dump"
)

// The upstream kubelet's keys on CRI objects (pkg/kubelet/kuberuntime/labels.go),
// kept identical so either kubelet adopts the other's containers.
const (
	PodNameLabel        = kubetypes.KubernetesPodNameLabel
	PodNamespaceLabel   = kubetypes.KubernetesPodNamespaceLabel
	PodUIDLabel         = kubetypes.KubernetesPodUIDLabel
	ContainerNameLabel  = kubetypes.KubernetesContainerNameLabel
	PodDeletionGraceAnn = "io.kubernetes.pod.deletionGracePeriod"
	PodTermGraceAnn     = "io.kubernetes.pod.terminationGracePeriod"
	HashAnn             = "io.kubernetes.container.hash"
	RestartCountAnn     = "io.kubernetes.container.restartCount"
	TermMsgPathAnn      = "io.kubernetes.container.terminationMessagePath"
	TermMsgPolicyAnn    = "io.kubernetes.container.terminationMessagePolicy"
	PreStopAnn          = "io.kubernetes.container.preStopHandler"
	PortsAnn            = "io.kubernetes.container.ports"
)

// HashContainer is the upstream kubelet's container hash (kubecontainer.HashContainer):
// fnv32a over the dump of the JSON of name and image, so hashes match across kubelets.
func HashContainer(c *v1.Container) uint64 {
	h := fnv.New32a()
	j, _ := json.Marshal(map[string]string{"name": c.Name, "image": c.Image})
	h.Reset()
	fmt.Fprintf(h, "%v", dump.ForHash(j))
	return uint64(h.Sum32())
}

// SandboxLabels are the labels of a Pod's sandbox.
func SandboxLabels(pod *v1.Pod) map[string]string {
	l := make(map[string]string, len(pod.Labels)+3)
	for k, v := range pod.Labels {
		l[k] = v
	}
	l[PodNameLabel] = pod.Name
	l[PodNamespaceLabel] = pod.Namespace
	l[PodUIDLabel] = string(pod.UID)
	return l
}

// ContainerLabels are the labels of one container.
func ContainerLabels(pod *v1.Pod, c *v1.Container) map[string]string {
	return map[string]string{
		PodNameLabel:       pod.Name,
		PodNamespaceLabel:  pod.Namespace,
		PodUIDLabel:        string(pod.UID),
		ContainerNameLabel: c.Name,
	}
}

// ContainerAnnotations are the annotations of one container.
func ContainerAnnotations(pod *v1.Pod, c *v1.Container, restartCount int) map[string]string {
	a := map[string]string{
		HashAnn:          strconv.FormatUint(HashContainer(c), 16),
		RestartCountAnn:  strconv.Itoa(restartCount),
		TermMsgPathAnn:   c.TerminationMessagePath,
		TermMsgPolicyAnn: string(c.TerminationMessagePolicy),
	}
	if pod.DeletionGracePeriodSeconds != nil {
		a[PodDeletionGraceAnn] = strconv.FormatInt(*pod.DeletionGracePeriodSeconds, 10)
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		a[PodTermGraceAnn] = strconv.FormatInt(*pod.Spec.TerminationGracePeriodSeconds, 10)
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if raw, err := json.Marshal(c.Lifecycle.PreStop); err == nil {
			a[PreStopAnn] = string(raw)
		}
	}
	if len(c.Ports) > 0 {
		if raw, err := json.Marshal(c.Ports); err == nil {
			a[PortsAnn] = string(raw)
		}
	}
	return a
}

// PodLogsDir is <podLogsDir>/<namespace>_<name>_<uid>, as upstream lays it out.
func PodLogsDir(root, namespace, name string, uid types.UID) string {
	return filepath.Join(root, strings.Join([]string{namespace, name, string(uid)}, "_"))
}

// ContainerLogPath is the log path relative to the Pod's log directory.
func ContainerLogPath(container string, restartCount int) string {
	return filepath.Join(container, fmt.Sprintf("%d.log", restartCount))
}
