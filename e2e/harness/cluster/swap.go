package cluster

import (
	"errors"
	"fmt"
	"path/filepath"
)

// ErrNoKubelet is wrapped when the local cluster has no running kubelet to
// swap (no cluster up, or the kubelet died).
var ErrNoKubelet = errors.New("no running kubelet")

// KubeletHealth is the kubelet's healthz URL in the cluster's config.
const KubeletHealth = "http://127.0.0.1:10248/healthz"

// KubeletSwap is what SwapKubelet does: stop Old and start New, a process
// with the same flags as Old and the chosen binary.
type KubeletSwap struct {
	Old ProcState
	New Process
	To  Choice
}

// PlanKubeletSwap picks the recorded kubelet (the newest entry named
// "kubelet") and the process replacing it. oldArgs are the running
// kubelet's arguments without argv[0], read from /proc/PID/cmdline, so the
// new kubelet gets exactly the flags, config file and root dir the old one
// had, whatever started it. bins maps a choice to its binary.
func PlanKubeletSwap(st *State, oldArgs []string, to Choice, bins map[Choice]string) (KubeletSwap, error) {
	var old *ProcState
	for i := len(st.Processes) - 1; i >= 0; i-- {
		if st.Processes[i].Name == "kubelet" {
			old = &st.Processes[i]
			break
		}
	}
	if old == nil {
		return KubeletSwap{}, fmt.Errorf("%w: state.json records no kubelet", ErrNoKubelet)
	}
	path, ok := bins[to]
	if !ok || path == "" {
		return KubeletSwap{}, fmt.Errorf("%w: kubelet %q: want ours or upstream", ErrInvalidOption, to)
	}
	args := append([]string(nil), oldArgs...)
	return KubeletSwap{
		Old: *old,
		New: Process{Name: "kubelet", Path: path, Args: args, Health: KubeletHealth},
		To:  to,
	}, nil
}

// withoutProcess is st's process list less the entry with pid.
func withoutProcess(ps []ProcState, pid int) []ProcState {
	var out []ProcState
	for _, p := range ps {
		if p.PID != pid {
			out = append(out, p)
		}
	}
	return out
}

// KubeletBinaries are the binaries each choice runs in the checkout repo
// with the artifacts cache cacheDir.
func KubeletBinaries(repo, cacheDir string) map[Choice]string {
	return map[Choice]string{
		Ours:     filepath.Join(repo, "_output", "bin", "kubelet"),
		Upstream: filepath.Join(cacheDir, "bin", "kubelet"),
	}
}
