// Package criserver implements the CRI v1 RuntimeService and ImageService
// over containerd's v2 client, one file per CRI call as in containerd's
// internal/cri/server. All durable state lives in containerd (labels and
// extensions on containers); see restart.go for what is rebuilt at start.
package criserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/config"
	"github.com/nodesuite/nodesuite/runtime-shim/internal/network"
)

// Labels and extensions on containerd containers: the only durable state.
const (
	labelKind       = "io.nodesuite.cri.kind" // "sandbox" or "container"
	labelSandboxID  = "io.nodesuite.cri.sandbox-id"
	labelName       = "io.nodesuite.cri.name"
	labelCreated    = "io.nodesuite.cri.created"  // unix nanos
	labelStarted    = "io.nodesuite.cri.started"  // unix nanos
	labelFinished   = "io.nodesuite.cri.finished" // unix nanos
	labelExitCode   = "io.nodesuite.cri.exit-code"
	labelReason     = "io.nodesuite.cri.reason"
	labelState      = "io.nodesuite.cri.sandbox-state" // "ready" / "notready"
	labelNetNS      = "io.nodesuite.cri.netns"
	labelIPs        = "io.nodesuite.cri.ips"
	labelLogPath    = "io.nodesuite.cri.log-path"
	labelImageRef   = "io.nodesuite.cri.image-ref"
	labelImageName  = "io.nodesuite.cri.image-name"
	labelImageCRI   = "io.nodesuite.cri.image" // on images this shim pulled
	labelUser       = "io.nodesuite.cri.user"  // "uid:gid:g1,g2": the process identity, for ContainerStatus.user
	extSandboxCfg   = "io.nodesuite.cri.sandbox-config"
	extContainerCfg = "io.nodesuite.cri.container-config"
	// annSandboxID groups a Pod's tasks into one runc shim process (the
	// runc shim's manager reads it, as for containerd's CRI).
	annSandboxID = "io.kubernetes.cri.sandbox-id"

	kindSandbox   = "sandbox"
	kindContainer = "container"
)

var (
	errInvalidSpec = errors.New("invalid container spec")
	// errImageVolume: mounting an image as a volume is not implemented here.
	errImageVolume = errors.New("image volume was not mounted before spec generation")
)

// Host is the OS access the server needs beyond containerd and CNI.
type Host interface {
	NewNetNS(dir string) (string, error)
	RemoveNetNS(path string) error
	// OOMScoreAdjMin is the lowest oom_score_adj this process may give a child.
	OOMScoreAdjMin() (int64, error)
	// MountShm mounts a Pod's shared /dev/shm (a tmpfs) at path;
	// UnmountShm undoes it, and a path that is not mounted is fine.
	MountShm(path string) error
	UnmountShm(path string) error
}

// Network attaches and detaches Pods.
type Network interface {
	Ready() error
	Setup(ctx context.Context, p network.Pod) ([]string, error)
	Teardown(ctx context.Context, p network.Pod) error
}

// Service is the CRI server.
type Service struct {
	runtime.UnsafeRuntimeServiceServer
	runtime.UnsafeImageServiceServer

	cfg    config.Config
	client *containerd.Client
	net    Network
	host   Host
	log    *zap.Logger
	stream streaming.Server

	mu     sync.Mutex
	names  map[string]string // reserved name -> id, so concurrent creates cannot collide
	ios    map[string]*containerIO
	ctrs   map[string]*objMeta  // containers: rebuilt by Recover, kept by create/label writes/remove
	sbs    map[string]*objMeta  // sandboxes, likewise
	live   map[string]*liveTask // tasks our monitors wait on (live.go)
	opLk   keyedMutex
	oom    int64
	feat   handlerFeatures // set by Recover
	events events

	imageMetas imageMetas                // image configs by target digest (imagemeta.go)
	procs      map[string]*specs.Process // containers' process specs, for exec (execproc.go)
	taskIns    map[string]taskInputs     // created containers' task inputs, for start (task_create.go)
}

// New builds a Service; Recover must run before serving.
func New(cfg config.Config, client *containerd.Client, net Network, host Host, log *zap.Logger) (*Service, error) {
	s := &Service{cfg: cfg, client: client, net: net, host: host, log: log,
		names: map[string]string{}, ios: map[string]*containerIO{}, ctrs: map[string]*objMeta{}, sbs: map[string]*objMeta{}, live: map[string]*liveTask{}}
	oom, err := host.OOMScoreAdjMin()
	if err != nil {
		return nil, fmt.Errorf("reading own oom_score_adj: %w", err)
	}
	s.oom = oom
	for _, d := range []string{s.sandboxesDir(), s.fifoDir()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Service) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.cfg.ContainerdNamespace)
}

func (s *Service) sandboxesDir() string        { return filepath.Join(s.cfg.StateDir, "sandboxes") }
func (s *Service) sandboxDir(id string) string { return filepath.Join(s.sandboxesDir(), id) }

// sandboxShm is where a Pod's shared /dev/shm is mounted (see RunPodSandbox).
func (s *Service) sandboxShm(id string) string { return filepath.Join(s.sandboxDir(id), "shm") }

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
func (s *Service) fifoDir() string { return filepath.Join(s.cfg.StateDir, "fifo") }

// runcOptions keeps runc's state private to this shim's state dir instead
// of the host-wide /run/containerd/runc.
func (s *Service) runcOptions() *runcoptions.Options {
	return &runcoptions.Options{Root: filepath.Join(s.cfg.StateDir, "runc")}
}

func (s *Service) netnsDir() string { return filepath.Join(s.cfg.StateDir, "netns") }
func nowNanos() string              { return strconv.FormatInt(time.Now().UnixNano(), 10) }
func parseNanos(v string) int64     { n, _ := strconv.ParseInt(v, 10, 64); return n }
func sandboxName(m *runtime.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), m.GetNamespace(), m.GetUid(), strconv.FormatUint(uint64(m.GetAttempt()), 10)}, "_")
}
func containerName(c *runtime.ContainerMetadata, sb *runtime.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), sb.GetName(), sb.GetNamespace(), sb.GetUid(), strconv.FormatUint(uint64(c.GetAttempt()), 10)}, "_")
}

// reserve claims name for id; AlreadyExists if another object holds it.
func (s *Service) reserve(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.names[name]; ok && other != id {
		return status.Errorf(codes.AlreadyExists, "name %q is reserved for %q", name, other)
	}
	s.names[name] = id
	return nil
}

func (s *Service) release(name string) {
	s.mu.Lock()
	delete(s.names, name)
	s.mu.Unlock()
}

// toStatus maps containerd errors to gRPC codes so callers see NotFound etc.
func toStatus(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errdefs.IsNotFound(err):
		return status.Errorf(codes.NotFound, "%s: %v", what, err)
	case errdefs.IsAlreadyExists(err):
		return status.Errorf(codes.AlreadyExists, "%s: %v", what, err)
	case errdefs.IsInvalidArgument(err), errors.Is(err, errInvalidSpec):
		return status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	case errors.Is(err, errImageVolume):
		return status.Errorf(codes.Unimplemented, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	}
	return status.Errorf(codes.Unknown, "%s: %v", what, err)
}

// keyedMutex serialises operations on one object (e.g. stop vs remove).
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*sync.Mutex{}
	}
	l, ok := k.m[key]
	if !ok {
		l = &sync.Mutex{}
		k.m[key] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}
