package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"
)

// kubeletPorts are the listeners a stopped kubelet must have released before
// the next one can start (API and healthz).
var kubeletPorts = []int{10250, 10248}

// SwapKubelet stops the local cluster's running kubelet (SIGTERM, then
// SIGKILL after grace) and starts the kubelet chosen by to with the same
// arguments, recording it in state.json. Restarting the same choice is a
// swap too. Containers are left running: neither kubelet stops Pods when it
// is signalled, which is what the restart tests check.
func SwapKubelet(ctx context.Context, log *zap.Logger, l Layout, repo, cacheDir string, to Choice, grace time.Duration) (KubeletSwap, error) {
	if to == Ours {
		if err := (Options{Kubelet: Ours, RepoRoot: repo}).CheckOurs(nil); err != nil {
			return KubeletSwap{}, err
		}
	}
	st, err := LoadState(l.State())
	if err != nil {
		return KubeletSwap{}, err
	}
	var old *ProcState
	for i := len(st.Processes) - 1; i >= 0; i-- {
		if st.Processes[i].Name == "kubelet" {
			old = &st.Processes[i]
			break
		}
	}
	if old == nil || !(RealHost{}).Alive(old.PID, old.StartTicks) {
		return KubeletSwap{}, fmt.Errorf("%w in %s (is the local cluster up?)", ErrNoKubelet, l.State())
	}
	args, err := procArgs(old.PID)
	if err != nil {
		return KubeletSwap{}, err
	}
	sw, err := PlanKubeletSwap(st, args, to, KubeletBinaries(repo, cacheDir))
	if err != nil {
		return KubeletSwap{}, err
	}
	if _, err := os.Stat(sw.New.Path); err != nil {
		return KubeletSwap{}, fmt.Errorf("kubelet binary: %w", err)
	}
	log.Info("swapping kubelet", zap.Int("oldPID", sw.Old.PID), zap.String("from", sw.Old.Path), zap.String("to", sw.New.Path))
	stop := []Action{{Kind: StopProcess, Target: "kubelet", PID: sw.Old.PID, StartTicks: sw.Old.StartTicks}}
	if err := stopAll(ctx, log, RealHost{}, stop, grace); err != nil {
		return sw, fmt.Errorf("stop kubelet: %w", err)
	}
	if err := st.Update(func(s *State) { s.Processes = withoutProcess(s.Processes, sw.Old.PID) }); err != nil {
		return sw, err
	}
	if err := waitPortsFree(ctx, kubeletPorts, 30*time.Second); err != nil {
		return sw, err
	}
	r, err := StartDetached(sw.New, l.Logs(), nil, st)
	if err != nil {
		return sw, err
	}
	if err := st.Update(func(s *State) { s.Kubelet = to }); err != nil {
		return sw, err
	}
	if err := WaitReady(ctx, log, r, sw.New.Health, 90*time.Second); err != nil {
		return sw, err
	}
	return sw, nil
}

// procArgs is argv[1:] of a running process.
func procArgs(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("kubelet command line: %w", err)
	}
	parts := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
	var args []string
	for _, p := range parts[1:] {
		args = append(args, string(p))
	}
	return args, nil
}

func waitPortsFree(ctx context.Context, ports []int, timeout time.Duration) error {
	var busy []int
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		busy = busy[:0]
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				busy = append(busy, p)
				continue
			}
			ln.Close()
		}
		return len(busy) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("ports still in use %v: %w", busy, err)
	}
	return nil
}
