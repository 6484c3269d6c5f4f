// Package cribench measures CRI operations against two CRI servers in the
// same run (ours and containerd's own CRI), interleaving the two so that
// machine noise hits both alike, and reports per-operation figures and the
// ratio ours/upstream.
package cribench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options say what to run.
type Options struct {
	Ours, Upstream string // unix socket paths
	Image          string // pulled first, used by every container
	Rounds         int    // measured iterations per operation and runtime
	// Background is how many extra sandboxes, each with one running
	// container, exist while the list operations are measured.
	Background int
}

// Op names, in report order.
const (
	OpRunSandbox     = "RunPodSandbox"
	OpCreateStart    = "CreateContainer+StartContainer"
	OpCreate         = "  of which CreateContainer"
	OpStart          = "  of which StartContainer"
	OpExecSync       = "ExecSync (true)"
	OpContainerStat  = "ContainerStatus"
	OpListContainers = "ListContainers"
	OpListSandboxes  = "ListPodSandbox"
	OpStopRemove     = "StopPodSandbox+RemovePodSandbox"
)

// opParts are parts of another operation, shown to say where its time
// goes; the goal is on the whole operation, so they do not count as worst.
var opParts = map[string]bool{OpCreate: true, OpStart: true}

var opOrder = []string{OpRunSandbox, OpCreateStart, OpCreate, OpStart, OpExecSync, OpContainerStat, OpListContainers, OpListSandboxes, OpStopRemove}

// Result holds every sample, per runtime ("ours", "upstream") and op.
type Result struct {
	Samples map[string]map[string][]time.Duration
}

type client struct {
	name string
	rt   runtime.RuntimeServiceClient
	im   runtime.ImageServiceClient
	conn *grpc.ClientConn
}

func dial(name, socket string) (*client, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &client{name: name, rt: runtime.NewRuntimeServiceClient(conn), im: runtime.NewImageServiceClient(conn), conn: conn}, nil
}

// Run measures both runtimes.
func Run(ctx context.Context, o Options, progress io.Writer) (*Result, error) {
	var cs []*client
	for _, x := range []struct{ name, sock string }{{"ours", o.Ours}, {"upstream", o.Upstream}} {
		c, err := dial(x.name, x.sock)
		if err != nil {
			return nil, err
		}
		defer c.conn.Close()
		if _, err := c.im.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: o.Image}}); err != nil {
			return nil, fmt.Errorf("%s: pull %s: %w", x.name, o.Image, err)
		}
		cs = append(cs, c)
	}
	res := &Result{Samples: map[string]map[string][]time.Duration{}}
	for _, c := range cs {
		res.Samples[c.name] = map[string][]time.Duration{}
	}
	// Background Pods so that the list calls list something.
	bg := map[string][]string{}
	for _, c := range cs {
		for i := 0; i < o.Background; i++ {
			sb, _, err := lifecycle(ctx, c, o.Image, fmt.Sprintf("bg-%d", i), nil)
			if err != nil {
				return nil, err
			}
			bg[c.name] = append(bg[c.name], sb)
		}
	}
	defer func() {
		for _, c := range cs {
			for _, sb := range bg[c.name] {
				_ = remove(context.WithoutCancel(ctx), c, sb)
			}
		}
	}()
	// One warm-up round each, not measured.
	for round := -1; round < o.Rounds; round++ {
		// Alternate who goes first: each runtime's first call of a round
		// otherwise always follows the other's teardown (whose shim and
		// netns cleanup go on after RemovePodSandbox returns).
		order := cs
		if round%2 != 0 {
			order = []*client{cs[1], cs[0]}
		}
		for _, c := range order {
			rec := res.Samples[c.name]
			if round < 0 {
				rec = map[string][]time.Duration{}
			}
			if err := oneRound(ctx, c, o.Image, fmt.Sprintf("r%d", round+1), rec); err != nil {
				return nil, err
			}
			if round >= 0 {
				res.Samples[c.name] = rec
			}
		}
		if progress != nil {
			fmt.Fprintf(progress, "\rround %d/%d", round+1, o.Rounds)
		}
	}
	if progress != nil {
		fmt.Fprintln(progress)
	}
	return res, nil
}

func oneRound(ctx context.Context, c *client, image, name string, rec map[string][]time.Duration) error {
	sb, ctr, err := lifecycle(ctx, c, image, name, rec)
	if err != nil {
		return err
	}
	timeIt := func(op string, f func() error, calls int) error {
		start := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %s: %w", c.name, op, err)
		}
		rec[op] = append(rec[op], time.Since(start)/time.Duration(calls))
		return nil
	}
	// Sub-millisecond calls: one sample is the mean of this many calls in
	// a row, so that scheduler noise (a few hundred µs on a busy machine)
	// does not swamp the figure.
	const subMsCalls = 10
	repeat := func(f func() error) func() error {
		return func() error {
			for range subMsCalls {
				if err := f(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	steps := []struct {
		op     string
		f      func() error
		perRun int
	}{
		{OpExecSync, func() error {
			r, err := c.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"true"}, Timeout: 10})
			if err == nil && r.ExitCode != 0 {
				err = fmt.Errorf("exit code %d", r.ExitCode)
			}
			return err
		}, 1},
		{OpContainerStat, repeat(func() error {
			_, err := c.rt.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctr})
			return err
		}), subMsCalls},
		{OpListContainers, repeat(func() error {
			_, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
			return err
		}), subMsCalls},
		{OpListSandboxes, repeat(func() error {
			_, err := c.rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
			return err
		}), subMsCalls},
		{OpStopRemove, func() error { return remove(ctx, c, sb) }, 1},
	}
	for _, s := range steps {
		if err := timeIt(s.op, s.f, s.perRun); err != nil {
			_ = remove(context.WithoutCancel(ctx), c, sb)
			return err
		}
	}
	return nil
}

// lifecycle runs a sandbox and a sleeping container in it, recording the
// two steps in rec when rec is not nil.
func lifecycle(ctx context.Context, c *client, image, name string, rec map[string][]time.Duration) (string, string, error) {
	uid := fmt.Sprintf("cribench-%s-%d", name, time.Now().UnixNano())
	cfg := &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "cribench-" + name, Uid: uid, Namespace: "cribench"},
		Linux:    &runtime.LinuxPodSandboxConfig{},
	}
	start := time.Now()
	sr, err := c.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", "", fmt.Errorf("%s: RunPodSandbox: %w", c.name, err)
	}
	t1 := time.Now()
	cr, err := c.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: sr.PodSandboxId, SandboxConfig: cfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: image},
			Command: []string{"sleep", "3600"}, Linux: &runtime.LinuxContainerConfig{}}})
	t2 := time.Now()
	if err == nil {
		_, err = c.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: cr.ContainerId})
	}
	if err != nil {
		_ = remove(context.WithoutCancel(ctx), c, sr.PodSandboxId)
		return "", "", fmt.Errorf("%s: create+start container: %w", c.name, err)
	}
	if rec != nil {
		rec[OpRunSandbox] = append(rec[OpRunSandbox], t1.Sub(start))
		t3 := time.Now()
		rec[OpCreateStart] = append(rec[OpCreateStart], t3.Sub(t1))
		rec[OpCreate] = append(rec[OpCreate], t2.Sub(t1))
		rec[OpStart] = append(rec[OpStart], t3.Sub(t2))
	}
	return sr.PodSandboxId, cr.ContainerId, nil
}

func remove(ctx context.Context, c *client, sb string) error {
	if _, err := c.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sb}); err != nil {
		return err
	}
	_, err := c.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb})
	return err
}

// Stats summarise samples.
type Stats struct {
	N            int
	Median, Mean time.Duration
}

func summarize(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{N: len(s), Median: med, Mean: sum / time.Duration(len(s))}
}

// Report prints one line per operation: medians, means, the median ratio
// ours/upstream (goal: at most 1.05) and a 90% bootstrap interval of that
// ratio, so that a reader sees how much of a difference is noise. It
// returns the worst ratio.
func (r *Result) Report(w io.Writer) float64 {
	fmt.Fprintf(w, "%-34s %5s %12s %12s %12s %12s %8s %13s\n", "operation", "n", "ours p50", "upstream p50", "ours mean", "upstr mean", "ratio", "90% interval")
	worst := 0.0
	for _, op := range opOrder {
		ourS, upS := r.Samples["ours"][op], r.Samples["upstream"][op]
		o, u := summarize(ourS), summarize(upS)
		ratio := math.NaN()
		if u.Median > 0 {
			ratio = float64(o.Median) / float64(u.Median)
		}
		if u.Median > 0 && !opParts[op] {
			worst = math.Max(worst, ratio)
		}
		lo, hi := bootstrapRatio(ourS, upS, 2000)
		fmt.Fprintf(w, "%-34s %5d %12s %12s %12s %12s %8.2f %6.2f-%-6.2f\n", op, o.N, round(o.Median), round(u.Median), round(o.Mean), round(u.Mean), ratio, lo, hi)
	}
	fmt.Fprintf(w, "%s\nworst ratio (ours/upstream, medians): %.2f (goal <= 1.05)\n", strings.Repeat("-", 114), worst)
	return worst
}

// bootstrapRatio resamples both sample sets with replacement and returns
// the 5th and 95th percentiles of the ratio of their medians. The seed is
// fixed so that a report can be reproduced from its samples.
func bootstrapRatio(ours, upstream []time.Duration, n int) (lo, hi float64) {
	if len(ours) == 0 || len(upstream) == 0 {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	resample := func(d []time.Duration, buf []time.Duration) time.Duration {
		for i := range buf {
			buf[i] = d[rng.IntN(len(d))]
		}
		return summarize(buf).Median
	}
	ob, ub := make([]time.Duration, len(ours)), make([]time.Duration, len(upstream))
	ratios := make([]float64, 0, n)
	for range n {
		if um := resample(upstream, ub); um > 0 {
			ratios = append(ratios, float64(resample(ours, ob))/float64(um))
		}
	}
	if len(ratios) == 0 {
		return math.NaN(), math.NaN()
	}
	sort.Float64s(ratios)
	return ratios[len(ratios)*5/100], ratios[len(ratios)*95/100]
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
