// Package config holds runtime-shim's settings: flags named like the harness
// contract and an optional TOML file shaped like containerd's CRI section.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
)

// Config is everything the CRI server needs to start.
type Config struct {
	Socket              string   `toml:"socket"`
	ContainerdAddress   string   `toml:"containerd_address"`
	ContainerdNamespace string   `toml:"containerd_namespace"`
	SandboxImage        string   `toml:"sandbox_image"`
	CNIConfDir          string   `toml:"cni_conf_dir"`
	CNIBinDirs          []string `toml:"cni_bin_dirs"`
	RegistryConfigDir   string   `toml:"registry_config_dir"`
	RootDir             string   `toml:"root_dir"`
	StateDir            string   `toml:"state_dir"`
	StreamingAddress    string   `toml:"streaming_address"`
	CgroupDriver        string   `toml:"cgroup_driver"`
	Snapshotter         string   `toml:"snapshotter"`
	RuntimeType         string   `toml:"runtime_type"`
}

// Default returns the settings used when neither flag nor file sets them.
func Default() Config {
	return Config{
		Socket:              "/run/runtime-shim/runtime-shim.sock",
		ContainerdAddress:   "/run/containerd/containerd.sock",
		ContainerdNamespace: "k8s.io",
		SandboxImage:        "registry.k8s.io/pause:3.10.2",
		CNIConfDir:          "/etc/cni/net.d",
		CNIBinDirs:          []string{"/opt/cni/bin"},
		RegistryConfigDir:   "",
		RootDir:             "/var/lib/runtime-shim",
		StateDir:            "/run/runtime-shim",
		StreamingAddress:    "127.0.0.1:0",
		CgroupDriver:        "cgroupfs",
		Snapshotter:         "overlayfs",
		RuntimeType:         "io.containerd.runc.v2",
	}
}

// ErrInvalid marks a configuration problem the user must fix.
var ErrInvalid = errors.New("invalid configuration")

// Flags binds flags to a Config; Apply merges file and flags after parsing.
type Flags struct {
	fs         *pflag.FlagSet
	File       string
	v          Config
	cniBinDirs string
}

// AddFlags registers the runtime-shim flags on fs.
func AddFlags(fs *pflag.FlagSet) *Flags {
	d := Default()
	f := &Flags{fs: fs}
	fs.StringVar(&f.File, "config", "", "Path to a TOML config file (fields as in deploy/runtime-shim/config.toml); flags override it.")
	fs.StringVar(&f.v.Socket, "socket", d.Socket, "Unix socket the CRI gRPC server listens on.")
	fs.StringVar(&f.v.ContainerdAddress, "containerd-address", d.ContainerdAddress, "containerd's gRPC socket.")
	fs.StringVar(&f.v.ContainerdNamespace, "containerd-namespace", d.ContainerdNamespace, "containerd namespace for all CRI objects.")
	fs.StringVar(&f.v.SandboxImage, "sandbox-image", d.SandboxImage, "Image of the pause container each Pod sandbox runs.")
	fs.StringVar(&f.v.CNIConfDir, "cni-conf-dir", d.CNIConfDir, "Directory holding CNI network configuration lists.")
	fs.StringVar(&f.cniBinDirs, "cni-bin-dir", strings.Join(d.CNIBinDirs, ","), "Comma-separated directories searched for CNI plugins.")
	fs.StringVar(&f.v.RegistryConfigDir, "registry-config-dir", d.RegistryConfigDir, "Directory with containerd hosts.toml registry configuration (<dir>/<host>/hosts.toml).")
	fs.StringVar(&f.v.RootDir, "root-dir", d.RootDir, "Persistent directory private to runtime-shim.")
	fs.StringVar(&f.v.StateDir, "state-dir", d.StateDir, "Volatile directory private to runtime-shim (netns mounts, FIFOs, sandbox files).")
	fs.StringVar(&f.v.StreamingAddress, "streaming-address", d.StreamingAddress, "host:port of the exec/attach/port-forward streaming server.")
	fs.StringVar(&f.v.CgroupDriver, "cgroup-driver", d.CgroupDriver, "cgroupfs or systemd.")
	return f
}

// flagToField maps a flag to the file field it overrides.
var flagToField = map[string]func(dst, src *Config){
	"socket":               func(d, s *Config) { d.Socket = s.Socket },
	"containerd-address":   func(d, s *Config) { d.ContainerdAddress = s.ContainerdAddress },
	"containerd-namespace": func(d, s *Config) { d.ContainerdNamespace = s.ContainerdNamespace },
	"sandbox-image":        func(d, s *Config) { d.SandboxImage = s.SandboxImage },
	"cni-conf-dir":         func(d, s *Config) { d.CNIConfDir = s.CNIConfDir },
	"cni-bin-dir":          func(d, s *Config) { d.CNIBinDirs = s.CNIBinDirs },
	"registry-config-dir":  func(d, s *Config) { d.RegistryConfigDir = s.RegistryConfigDir },
	"root-dir":             func(d, s *Config) { d.RootDir = s.RootDir },
	"state-dir":            func(d, s *Config) { d.StateDir = s.StateDir },
	"streaming-address":    func(d, s *Config) { d.StreamingAddress = s.StreamingAddress },
	"cgroup-driver":        func(d, s *Config) { d.CgroupDriver = s.CgroupDriver },
}

// Resolve returns defaults, overlaid by the file (if any), overlaid by the
// flags the user set explicitly, then validated.
func (f *Flags) Resolve() (Config, error) {
	f.v.CNIBinDirs = splitList(f.cniBinDirs)
	c := Default()
	if f.File != "" {
		b, err := os.ReadFile(f.File)
		if err != nil {
			return Config{}, fmt.Errorf("%w: --config: %w", ErrInvalid, err)
		}
		if c, err = Parse(b, c); err != nil {
			return Config{}, fmt.Errorf("--config %s: %w", f.File, err)
		}
	}
	f.fs.Visit(func(fl *pflag.Flag) {
		if set, ok := flagToField[fl.Name]; ok {
			set(&c, &f.v)
		}
	})
	return c, c.Validate()
}

// Parse overlays a TOML document on base; an unknown field is an error naming it.
func Parse(doc []byte, base Config) (Config, error) {
	dec := toml.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	c := base
	if err := dec.Decode(&c); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			names := make([]string, 0, len(sm.Errors))
			for _, e := range sm.Errors {
				names = append(names, strings.Join(e.Key(), "."))
			}
			return Config{}, fmt.Errorf("%w: unsupported field(s) %s", ErrInvalid, strings.Join(names, ", "))
		}
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

// Validate checks values that would otherwise fail later and obscurely.
func (c Config) Validate() error {
	switch {
	case c.Socket == "":
		return fmt.Errorf("%w: socket must be set", ErrInvalid)
	case c.ContainerdAddress == "":
		return fmt.Errorf("%w: containerd-address must be set", ErrInvalid)
	case c.ContainerdNamespace == "":
		return fmt.Errorf("%w: containerd-namespace must be set", ErrInvalid)
	case c.SandboxImage == "":
		return fmt.Errorf("%w: sandbox-image must be set", ErrInvalid)
	case c.RootDir == "" || c.StateDir == "":
		return fmt.Errorf("%w: root-dir and state-dir must be set", ErrInvalid)
	case c.CgroupDriver != "cgroupfs" && c.CgroupDriver != "systemd":
		return fmt.Errorf("%w: cgroup-driver %q: want cgroupfs or systemd", ErrInvalid, c.CgroupDriver)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
