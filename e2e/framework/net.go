package framework

import (
	"encoding/json"
	"fmt"
	"strconv"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// NetexecPort and NetexecUDPPort are where `agnhost netexec` serves.
const (
	NetexecPort    = 8080
	NetexecUDPPort = 8081
)

// DialResult is agnhost netexec's /dial answer: the bodies of the requests
// that succeeded and the errors of those that did not.
type DialResult struct {
	Responses []string `json:"responses"`
	Errors    []string `json:"errors"`
}

// Dial asks the netexec server in clientPod (reached through the API
// server's Pod proxy) to send `request` to host:port `tries` times over
// protocol (http or udp). Name resolution happens inside the client Pod, so a
// Service name exercises the Pod's cluster DNS.
func (f *Framework) Dial(clientPod, protocol, host string, port int, request string, tries int) (DialResult, error) {
	b, err := f.Client.CoreV1().Pods(f.Namespace).ProxyGet("http", clientPod, strconv.Itoa(NetexecPort), "/dial", map[string]string{
		"protocol": protocol,
		"host":     host,
		"port":     strconv.Itoa(port),
		"request":  request,
		"tries":    strconv.Itoa(tries),
	}).DoRaw(f.Ctx)
	if err != nil {
		return DialResult{}, fmt.Errorf("dial %s %s:%d from pod %s: %w (%s)", protocol, host, port, clientPod, err, b)
	}
	var r DialResult
	if err := json.Unmarshal(b, &r); err != nil {
		return DialResult{}, fmt.Errorf("dial %s %s:%d from pod %s: decode %q: %w", protocol, host, port, clientPod, b, err)
	}
	return r, nil
}

// NetexecPod is a Pod serving agnhost netexec on NetexecPort (HTTP) and
// NetexecUDPPort (UDP), Ready once its HTTP server answers.
func NetexecPod(name string, labels map[string]string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{
				Name:            "netexec",
				Image:           AgnhostImage,
				ImagePullPolicy: v1.PullIfNotPresent,
				Args:            []string{"netexec", fmt.Sprintf("--http-port=%d", NetexecPort), fmt.Sprintf("--udp-port=%d", NetexecUDPPort)},
				Ports: []v1.ContainerPort{
					{Name: "http", ContainerPort: NetexecPort, Protocol: v1.ProtocolTCP},
					{Name: "udp", ContainerPort: NetexecUDPPort, Protocol: v1.ProtocolUDP},
				},
				ReadinessProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(NetexecPort)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// BusyboxPod is a Pod of one busybox container named "c" running script with sh.
func BusyboxPod(name string, restart v1.RestartPolicy, script string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []v1.Container{BusyboxContainer("c", script)},
		},
	}
}

// BusyboxContainer runs script with busybox sh.
func BusyboxContainer(name, script string) v1.Container {
	return v1.Container{
		Name:            name,
		Image:           BusyboxImage,
		ImagePullPolicy: v1.PullIfNotPresent,
		Command:         []string{"sh", "-c", script},
	}
}
