// Package network attaches Pod network namespaces to the cluster network
// through CNI (libcni), using the first network config list in the conf dir
// as containerd's CRI does.
package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrNotReady means no usable CNI configuration exists yet.
var ErrNotReady = errors.New("cni config not initialized")

// Pod identifies a Pod sandbox to the plugins.
type Pod struct {
	ID, NetNS            string
	Name, Namespace, UID string
	PortMappings         []*runtime.PortMapping
}

// CNI runs the plugins of the first config list in ConfDir.
type CNI struct {
	ConfDir  string
	BinDirs  []string
	CacheDir string
	IfName   string
}

func (c *CNI) load() (*libcni.NetworkConfigList, *libcni.CNIConfig, error) {
	files, err := libcni.ConfFiles(c.ConfDir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	sort.Strings(files)
	for _, f := range files {
		list, err := libcni.NetworkConfFromFile(f)
		if err != nil || len(list.Plugins) == 0 {
			continue
		}
		return list, libcni.NewCNIConfigWithCacheDir(c.BinDirs, c.CacheDir, nil), nil
	}
	return nil, nil, fmt.Errorf("%w: no network config found in %s", ErrNotReady, c.ConfDir)
}

// Ready reports whether a network config is present.
func (c *CNI) Ready() error {
	_, _, err := c.load()
	return err
}

func (c *CNI) rt(p Pod) *libcni.RuntimeConf {
	ifn := c.IfName
	if ifn == "" {
		ifn = "eth0"
	}
	rc := &libcni.RuntimeConf{
		ContainerID: p.ID, NetNS: p.NetNS, IfName: ifn,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
			{"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: map[string]any{},
	}
	if pm := PortMappings(p.PortMappings); len(pm) > 0 {
		rc.CapabilityArgs["portMappings"] = pm
	}
	return rc
}

// PortMapping is the portmap plugin's capability argument entry.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// PortMappings converts CRI port mappings, keeping only those with a host port.
func PortMappings(in []*runtime.PortMapping) []PortMapping {
	var out []PortMapping
	for _, m := range in {
		if m.GetHostPort() <= 0 {
			continue
		}
		proto := "tcp"
		switch m.GetProtocol() {
		case runtime.Protocol_UDP:
			proto = "udp"
		case runtime.Protocol_SCTP:
			proto = "sctp"
		}
		out = append(out, PortMapping{HostPort: m.GetHostPort(), ContainerPort: m.GetContainerPort(), Protocol: proto, HostIP: m.GetHostIp()})
	}
	return out
}

// loopbackConf brings up lo in the Pod's netns, as containerd's CRI does
// before the cluster network (port-forward dials localhost there).
const loopbackConf = `{"cniVersion":"0.3.1","name":"cni-loopback","plugins":[{"type":"loopback"}]}`

func (c *CNI) loopback(ctx context.Context, cni *libcni.CNIConfig, p Pod, add bool) error {
	list, err := libcni.NetworkConfFromBytes([]byte(loopbackConf))
	if err != nil {
		return err
	}
	rt := &libcni.RuntimeConf{ContainerID: p.ID, NetNS: p.NetNS, IfName: "lo"}
	if add {
		_, err = cni.AddNetworkList(ctx, list, rt)
	} else {
		err = cni.DelNetworkList(ctx, list, rt)
	}
	if err != nil {
		return fmt.Errorf("cni loopback: %w", err)
	}
	return nil
}

// Setup adds the Pod to the network and returns its IPs, IPv4 first.
func (c *CNI) Setup(ctx context.Context, p Pod) ([]string, error) {
	list, cni, err := c.load()
	if err != nil {
		return nil, err
	}
	if err := c.loopback(ctx, cni, p, true); err != nil {
		return nil, err
	}
	res, err := cni.AddNetworkList(ctx, list, c.rt(p))
	if err != nil {
		return nil, fmt.Errorf("cni add %s: %w", list.Name, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("cni result: %w", err)
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else if ip.Address.IP.To16() != nil && !ip.Address.IP.Equal(net.IPv6zero) {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	return append(v4, v6...), nil
}

// Teardown removes the Pod from the network; deleting twice is fine for
// the standard plugins, which keeps Stop idempotent.
func (c *CNI) Teardown(ctx context.Context, p Pod) error {
	list, cni, err := c.load()
	if err != nil {
		return err
	}
	if err := cni.DelNetworkList(ctx, list, c.rt(p)); err != nil {
		return fmt.Errorf("cni del %s: %w", list.Name, err)
	}
	return c.loopback(ctx, cni, p, false)
}
