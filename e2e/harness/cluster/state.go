package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// ProcState records one detached process. StartTicks (field 22 of
// /proc/PID/stat) tells a recycled PID from ours.
type ProcState struct {
	Name       string `json:"name"`
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"startTicks"`
	Path       string `json:"path"`
	Log        string `json:"log"`
}

// State is state.json: what `up` started and changed, so `down` in another
// process can undo it. It is saved after every change, so a crashed `up`
// leaves an accurate record.
type State struct {
	mu   sync.Mutex `json:"-"`
	path string

	Kubelet   Choice            `json:"kubelet"`
	Runtime   Choice            `json:"runtime"`
	Proxy     Choice            `json:"proxy"`
	Processes []ProcState       `json:"processes"`
	Sysctls   map[string]string `json:"sysctls,omitempty"` // path -> value before up
	// ProxyBin is a kube-proxy binary able to run --cleanup.
	ProxyBin string `json:"proxyBin,omitempty"`
	// RuncBin and RuncRoot let down kill containers whose shim is gone.
	RuncBin  string `json:"runcBin,omitempty"`
	RuncRoot string `json:"runcRoot,omitempty"`
}

// LoadState reads path; a missing file is an empty state.
func LoadState(path string) (*State, error) {
	s := &State{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return s, nil
}

// Update changes the state under its lock and saves it.
func (s *State) Update(f func(*State)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
	return s.saveLocked()
}

func (s *State) saveLocked() error {
	if s.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}
