// Package framework is the e2e suite's small helper layer: it finds the
// cluster from a kubeconfig, gives each test its own namespace, and waits
// for Pods with bounded polls whose failures show the Pod's status and events.
package framework

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// e2eModule is the module whose root anchors the default kubeconfig path.
const e2eModule = "github.com/nodesuite/nodesuite/e2e"

// Cluster is a reachable cluster shared by every test of the process.
type Cluster struct {
	Config     *rest.Config
	Client     kubernetes.Interface
	Kubeconfig string
}

// Decision is what a test does when it cannot get a cluster.
type Decision int

const (
	// Proceed: the cluster answered.
	Proceed Decision = iota
	// Skip: no kubeconfig was asked for and the default one does not answer,
	// so unit runs (`go test ./...`) stay green.
	Skip
	// Fail: a kubeconfig was given explicitly and does not answer.
	Fail
)

// Decide turns the outcome of connecting into what the test must do.
func Decide(explicit bool, connectErr error) Decision {
	switch {
	case connectErr == nil:
		return Proceed
	case explicit:
		return Fail
	default:
		return Skip
	}
}

var (
	clusterOnce sync.Once
	cluster     *Cluster
	clusterErr  error
	explicitKC  bool
)

// sharedCluster connects once per process; every test then sees the same
// answer, so a dead cluster costs one timeout, not one per test.
func sharedCluster() (*Cluster, bool, error) {
	clusterOnce.Do(func() {
		var path string
		path, explicitKC = kubeconfigPath(os.Getenv("KUBECONFIG"))
		cluster, clusterErr = connect(path)
	})
	return cluster, explicitKC, clusterErr
}

// kubeconfigPath returns $KUBECONFIG when set (explicit), otherwise
// _output/cluster/admin.kubeconfig beside the e2e module.
func kubeconfigPath(env string) (string, bool) {
	if env != "" {
		return env, true
	}
	root, err := moduleRoot()
	if err != nil {
		return filepath.Join("..", "_output", "cluster", "admin.kubeconfig"), false
	}
	return filepath.Join(root, "..", "_output", "cluster", "admin.kubeconfig"), false
}

// moduleRoot walks up from the working directory (the test package's
// directory under `go test`) to the e2e module's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := modulePath(filepath.Join(dir, "go.mod")); err == nil && mod == e2eModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", e2eModule)
		}
		dir = parent
	}
}

func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", errors.New("no module line")
}

// ErrUnreachable wraps every failure to reach the cluster.
var ErrUnreachable = errors.New("cluster unreachable")

func connect(path string) (*Cluster, error) {
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(path)}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: %w", ErrUnreachable, path, err)
	}
	// Many tests poll in parallel; client-go's default 5 QPS would throttle them.
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: %w", ErrUnreachable, path, err)
	}
	probe := rest.CopyConfig(cfg)
	probe.Timeout = 10 * time.Second
	pc, err := kubernetes.NewForConfig(probe)
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: %w", ErrUnreachable, path, err)
	}
	if _, err := pc.Discovery().ServerVersion(); err != nil {
		return nil, fmt.Errorf("%w: kubeconfig %s: server %s: %w", ErrUnreachable, path, cfg.Host, err)
	}
	return &Cluster{Config: cfg, Client: client, Kubeconfig: path}, nil
}

// OnNode reports whether the test process runs on the cluster's node host
// (E2E_ON_NODE=1, set by `make e2e` for the local cluster), so it may dial
// the cluster's Service and Node addresses itself.
func OnNode() bool { return os.Getenv("E2E_ON_NODE") == "1" }

// ClusterDomain is the DNS domain of Services (E2E_CLUSTER_DOMAIN, default cluster.local).
func ClusterDomain() string {
	if d := os.Getenv("E2E_CLUSTER_DOMAIN"); d != "" {
		return d
	}
	return "cluster.local"
}

// contextFor bounds a test's API calls by its deadline when it has one.
func contextFor(t interface{ Deadline() (time.Time, bool) }) (context.Context, context.CancelFunc) {
	if dl, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), dl.Add(-5*time.Second))
	}
	return context.WithCancel(context.Background())
}
