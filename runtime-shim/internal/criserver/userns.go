package criserver

import (
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podUserns is a Pod's user namespace: nil mappings mean the host's
// (NamespaceMode_NODE, or no option at all).
type podUserns struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

func (u podUserns) enabled() bool { return len(u.UIDs) > 0 }

// parseUserns checks the CRI user namespace option the way containerd's CRI
// does: NODE without mappings, or POD with exactly one UID and one GID
// mapping (the snapshot remapping supports one range) that maps container
// ID 0. CONTAINER and TARGET are not modes a Pod's user namespace can have.
func parseUserns(o *runtime.UserNamespace) (podUserns, error) {
	if o == nil {
		return podUserns{}, nil
	}
	uids, err := idMap("uids", o.GetUids())
	if err != nil {
		return podUserns{}, err
	}
	gids, err := idMap("gids", o.GetGids())
	if err != nil {
		return podUserns{}, err
	}
	switch o.GetMode() {
	case runtime.NamespaceMode_NODE:
		if len(uids) != 0 || len(gids) != 0 {
			return podUserns{}, fmt.Errorf("%w: user namespace mode NODE takes no ID mappings (got %d UID and %d GID mappings)", errInvalidSpec, len(uids), len(gids))
		}
		return podUserns{}, nil
	case runtime.NamespaceMode_POD:
		if len(uids) == 0 || len(gids) == 0 {
			return podUserns{}, fmt.Errorf("%w: user namespace mode POD needs UID and GID mappings", errInvalidSpec)
		}
		if uids[0].Size != gids[0].Size {
			return podUserns{}, fmt.Errorf("%w: user namespace UID and GID mappings differ in length (%d, %d)", errInvalidSpec, uids[0].Size, gids[0].Size)
		}
		return podUserns{UIDs: uids, GIDs: gids}, nil
	}
	return podUserns{}, fmt.Errorf("%w: user namespace mode %s is not supported (only NODE and POD)", errInvalidSpec, o.GetMode())
}

func idMap(field string, in []*runtime.IDMapping) ([]specs.LinuxIDMapping, error) {
	switch {
	case len(in) == 0:
		return nil, nil
	case len(in) > 1:
		return nil, fmt.Errorf("%w: user namespace %s: only one mapping is supported, got %d", errInvalidSpec, field, len(in))
	case in[0].GetLength() < 1:
		return nil, fmt.Errorf("%w: user namespace %s: mapping length %d", errInvalidSpec, field, in[0].GetLength())
	case in[0].GetContainerId() != 0:
		return nil, fmt.Errorf("%w: user namespace %s: container ID 0 must be mapped (mapping starts at %d)", errInvalidSpec, field, in[0].GetContainerId())
	}
	m := in[0]
	return []specs.LinuxIDMapping{{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// snapshotOpts makes the snapshotter present the rootfs with IDs shifted
// into the Pod's range (idmapped overlay layers).
func (u podUserns) snapshotOpts() []snapshots.Opt {
	if !u.enabled() {
		return nil
	}
	return []snapshots.Opt{containerd.WithUserNSRemapperLabels(u.UIDs, u.GIDs)}
}

// specOpts gives the process the Pod's user namespace: a new one for the
// pause container (pausePID 0), the pause container's for the others.
func (u podUserns) specOpts(pausePID uint32) []oci.SpecOpts {
	if !u.enabled() {
		return nil
	}
	opts := []oci.SpecOpts{oci.WithUserNamespace(u.UIDs, u.GIDs),
		// The Pod's netns belongs to the host's user namespace, where a
		// process of the Pod's may not mount sysfs (EPERM): bind the host's
		// /sys read-only instead, as containerd's CRI does for host-network
		// Pods with a user namespace. (containerd makes the netns inside the
		// user namespace instead; not done here: /sys/class/net shows the
		// host's devices.)
		oci.WithoutMounts("/sys"),
		oci.WithMounts([]specs.Mount{{Destination: "/sys", Source: "/sys", Type: "bind",
			Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}}}),
	}
	if pausePID != 0 {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UserNamespace, Path: nsPath(pausePID, "user")}))
	}
	return opts
}
