// Package validate checks CRI requests before any work is done, so that a
// malformed request gets InvalidArgument naming the field and never a panic
// deeper in the server.
package validate

import (
	"errors"
	"fmt"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("invalid request")

// FieldError names the offending field by its proto path.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }
func (e *FieldError) Unwrap() error { return ErrInvalid }

func bad(field, reason string) error { return &FieldError{Field: field, Reason: reason} }

// Request validates any CRI request message; unknown messages pass.
func Request(req any) error {
	switch r := req.(type) {
	case *runtime.RunPodSandboxRequest:
		return sandboxConfig("config", r.GetConfig())
	case *runtime.StopPodSandboxRequest:
		return id("pod_sandbox_id", r.GetPodSandboxId())
	case *runtime.RemovePodSandboxRequest:
		return id("pod_sandbox_id", r.GetPodSandboxId())
	case *runtime.PodSandboxStatusRequest:
		return id("pod_sandbox_id", r.GetPodSandboxId())
	case *runtime.CreateContainerRequest:
		if err := id("pod_sandbox_id", r.GetPodSandboxId()); err != nil {
			return err
		}
		if err := containerConfig("config", r.GetConfig()); err != nil {
			return err
		}
		if r.GetSandboxConfig() == nil {
			return bad("sandbox_config", "required")
		}
		return nil
	case *runtime.StartContainerRequest:
		return id("container_id", r.GetContainerId())
	case *runtime.StopContainerRequest:
		if err := id("container_id", r.GetContainerId()); err != nil {
			return err
		}
		if r.GetTimeout() < 0 {
			return bad("timeout", "must not be negative")
		}
		return nil
	case *runtime.RemoveContainerRequest:
		return id("container_id", r.GetContainerId())
	case *runtime.ContainerStatusRequest:
		return id("container_id", r.GetContainerId())
	case *runtime.ReopenContainerLogRequest:
		return id("container_id", r.GetContainerId())
	case *runtime.UpdateContainerResourcesRequest:
		return id("container_id", r.GetContainerId())
	case *runtime.ContainerStatsRequest:
		return id("container_id", r.GetContainerId())
	case *runtime.PodSandboxStatsRequest:
		return id("pod_sandbox_id", r.GetPodSandboxId())
	case *runtime.ExecSyncRequest:
		if err := id("container_id", r.GetContainerId()); err != nil {
			return err
		}
		if len(r.GetCmd()) == 0 {
			return bad("cmd", "required")
		}
		if r.GetTimeout() < 0 {
			return bad("timeout", "must not be negative")
		}
		return nil
	case *runtime.ExecRequest:
		if err := id("container_id", r.GetContainerId()); err != nil {
			return err
		}
		if len(r.GetCmd()) == 0 {
			return bad("cmd", "required")
		}
		return streams(r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty())
	case *runtime.AttachRequest:
		if err := id("container_id", r.GetContainerId()); err != nil {
			return err
		}
		return streams(r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty())
	case *runtime.PortForwardRequest:
		if err := id("pod_sandbox_id", r.GetPodSandboxId()); err != nil {
			return err
		}
		for i, p := range r.GetPort() {
			if p <= 0 || p > 65535 {
				return bad(fmt.Sprintf("port[%d]", i), fmt.Sprintf("%d is not a TCP port", p))
			}
		}
		return nil
	case *runtime.PullImageRequest:
		return imageSpec("image", r.GetImage())
	case *runtime.ImageStatusRequest:
		return imageSpec("image", r.GetImage())
	case *runtime.RemoveImageRequest:
		return imageSpec("image", r.GetImage())
	case *runtime.UpdateRuntimeConfigRequest:
		if r.GetRuntimeConfig() == nil {
			return bad("runtime_config", "required")
		}
		return nil
	}
	return nil
}

func id(field, v string) error {
	if v == "" {
		return bad(field, "required")
	}
	if strings.ContainsAny(v, "/\x00") || v == "." || v == ".." {
		return bad(field, fmt.Sprintf("%q is not a valid ID or ID prefix", v))
	}
	return nil
}

func streams(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return bad("stdin", "one of stdin, stdout, stderr must be set")
	}
	if tty && stderr {
		return bad("stderr", "must be false when tty is set (the terminal merges it into stdout)")
	}
	return nil
}

func imageSpec(field string, s *runtime.ImageSpec) error {
	if s == nil {
		return bad(field, "required")
	}
	if s.GetImage() == "" {
		return bad(field+".image", "required")
	}
	return nil
}

func metadataName(field, name string) error {
	if name == "" {
		return bad(field, "required")
	}
	if strings.ContainsAny(name, "/\x00") {
		return bad(field, fmt.Sprintf("%q must not contain '/' or NUL", name))
	}
	return nil
}

func sandboxConfig(field string, c *runtime.PodSandboxConfig) error {
	if c == nil {
		return bad(field, "required")
	}
	m := c.GetMetadata()
	if m == nil {
		return bad(field+".metadata", "required")
	}
	if err := metadataName(field+".metadata.name", m.GetName()); err != nil {
		return err
	}
	if err := metadataName(field+".metadata.namespace", m.GetNamespace()); err != nil {
		return err
	}
	if m.GetUid() == "" {
		return bad(field+".metadata.uid", "required")
	}
	if m.GetAttempt() > 1<<20 {
		return bad(field+".metadata.attempt", "implausibly large")
	}
	for i, pm := range c.GetPortMappings() {
		f := fmt.Sprintf("%s.port_mappings[%d]", field, i)
		if pm.GetContainerPort() <= 0 || pm.GetContainerPort() > 65535 {
			return bad(f+".container_port", fmt.Sprintf("%d out of range", pm.GetContainerPort()))
		}
		if pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 {
			return bad(f+".host_port", fmt.Sprintf("%d out of range", pm.GetHostPort()))
		}
	}
	if err := sysctls(field+".linux.sysctls", c.GetLinux().GetSysctls()); err != nil {
		return err
	}
	if c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_CONTAINER ||
		c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_TARGET {
		return bad(field+".linux.security_context.namespace_options.network", "a sandbox's network is POD or NODE")
	}
	if err := modeKnown(field+".linux.security_context.namespace_options", c.GetLinux().GetSecurityContext().GetNamespaceOptions()); err != nil {
		return err
	}
	return nil
}

func modeKnown(field string, o *runtime.NamespaceOption) error {
	for name, m := range map[string]runtime.NamespaceMode{"network": o.GetNetwork(), "pid": o.GetPid(), "ipc": o.GetIpc()} {
		if _, ok := runtime.NamespaceMode_name[int32(m)]; !ok {
			return bad(field+"."+name, fmt.Sprintf("unknown mode %d", m))
		}
	}
	return nil
}

func sysctls(field string, s map[string]string) error {
	for k := range s {
		if k == "" || strings.ContainsAny(k, " \x00") || strings.Contains(k, "..") {
			return bad(field, fmt.Sprintf("invalid sysctl name %q", k))
		}
	}
	return nil
}

func containerConfig(field string, c *runtime.ContainerConfig) error {
	if c == nil {
		return bad(field, "required")
	}
	if c.GetMetadata() == nil {
		return bad(field+".metadata", "required")
	}
	if err := metadataName(field+".metadata.name", c.GetMetadata().GetName()); err != nil {
		return err
	}
	if err := imageSpec(field+".image", c.GetImage()); err != nil {
		return err
	}
	for i, e := range c.GetEnvs() {
		if e.GetKey() == "" || strings.ContainsAny(e.GetKey(), "=\x00") {
			return bad(fmt.Sprintf("%s.envs[%d].key", field, i), fmt.Sprintf("invalid variable name %q", e.GetKey()))
		}
	}
	for i, m := range c.GetMounts() {
		f := fmt.Sprintf("%s.mounts[%d]", field, i)
		if m.GetContainerPath() == "" || m.GetContainerPath()[0] != '/' {
			if m.GetImage() == nil || m.GetImage().GetImage() == "" || m.GetContainerPath() == "" {
				return bad(f+".container_path", fmt.Sprintf("%q must be an absolute path", m.GetContainerPath()))
			}
		}
		if _, ok := runtime.MountPropagation_name[int32(m.GetPropagation())]; !ok {
			return bad(f+".propagation", fmt.Sprintf("unknown propagation %d", m.GetPropagation()))
		}
	}
	for i, d := range c.GetDevices() {
		if d.GetContainerPath() == "" || d.GetHostPath() == "" {
			return bad(fmt.Sprintf("%s.devices[%d]", field, i), "host_path and container_path are required")
		}
	}
	sc := c.GetLinux().GetSecurityContext()
	if err := modeKnown(field+".linux.security_context.namespace_options", sc.GetNamespaceOptions()); err != nil {
		return err
	}
	if sc.GetNamespaceOptions().GetPid() == runtime.NamespaceMode_TARGET && sc.GetNamespaceOptions().GetTargetId() == "" {
		return bad(field+".linux.security_context.namespace_options.target_id", "required when pid is TARGET")
	}
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return bad(field+".linux.security_context.run_as_group", "requires run_as_user or run_as_username")
	}
	if p := sc.GetSeccomp(); p != nil {
		if p.GetProfileType() == runtime.SecurityProfile_Localhost && p.GetLocalhostRef() == "" {
			return bad(field+".linux.security_context.seccomp.localhost_ref", "required for a Localhost profile")
		}
		if _, ok := runtime.SecurityProfile_ProfileType_name[int32(p.GetProfileType())]; !ok {
			return bad(field+".linux.security_context.seccomp.profile_type", "unknown profile type")
		}
	}
	if r := c.GetLinux().GetResources(); r != nil {
		if r.GetCpuShares() < 0 || r.GetCpuQuota() < -1 || r.GetCpuPeriod() < 0 || r.GetMemoryLimitInBytes() < 0 {
			return bad(field+".linux.resources", "negative CPU or memory value")
		}
		if a := r.GetOomScoreAdj(); a < -1000 || a > 1000 {
			return bad(field+".linux.resources.oom_score_adj", fmt.Sprintf("%d outside [-1000, 1000]", a))
		}
	}
	return nil
}
