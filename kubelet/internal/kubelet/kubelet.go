// Package kubelet wires the kubelet's parts together: CRI runtime, Node and
// Lease, Pod sources, pod workers, PLEG and events.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/nodesuite/nodesuite/kubelet/internal/admission"
	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
	"github.com/nodesuite/nodesuite/kubelet/internal/backoff"
	"github.com/nodesuite/nodesuite/kubelet/internal/config"
	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
	"github.com/nodesuite/nodesuite/kubelet/internal/eviction"
	"github.com/nodesuite/nodesuite/kubelet/internal/nodestatus"
	"github.com/nodesuite/nodesuite/kubelet/internal/pleg"
	"github.com/nodesuite/nodesuite/kubelet/internal/podsource"
	"github.com/nodesuite/nodesuite/kubelet/internal/podworker"
	"github.com/nodesuite/nodesuite/kubelet/internal/prober"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
	"github.com/nodesuite/nodesuite/kubelet/internal/server"
	"github.com/nodesuite/nodesuite/kubelet/internal/stats"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
	"github.com/nodesuite/nodesuite/kubelet/internal/userns"
	"github.com/nodesuite/nodesuite/kubelet/internal/volume"
	"github.com/nodesuite/nodesuite/shared/version"
)

// Run runs the kubelet until ctx ends.
func Run(ctx context.Context, log *zap.Logger, cfg *config.Config) error {
	for _, d := range []string{cfg.RootDir, filepath.Join(cfg.RootDir, "pods"), cfg.PodLogsDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	var client apiclient.Interface
	var events apiclient.Interface
	if cfg.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return fmt.Errorf("kubeconfig: %w", err)
		}
		rc.UserAgent = "nodesuite-kubelet/" + version.Get().GitVersion
		// Protobuf as upstream: less CPU and garbage per object than JSON.
		rc.ContentType = cfg.ContentType
		rc.AcceptContentTypes = cfg.ContentType + "," + apiruntime.ContentTypeJSON
		// Upstream's limits: client-go's own default (5 QPS) throttles a
		// burst of Pod starts on token requests, status patches and Events.
		rc.QPS, rc.Burst = cfg.KubeAPIQPS, cfg.KubeAPIBurst
		apiclient.RegisterMetrics() // before the first request, so every wait is counted
		if client, err = apiclient.New(rc); err != nil {
			return fmt.Errorf("client: %w", err)
		}
		// Events have a client and limits of their own, as upstream.
		ec := rest.CopyConfig(rc)
		ec.QPS, ec.Burst = cfg.EventRecordQPS, cfg.EventBurst
		if ec.QPS == 0 {
			ec.QPS = -1 // no limit
		}
		if events, err = apiclient.New(ec); err != nil {
			return fmt.Errorf("event client: %w", err)
		}
	}
	rt, err := connect(ctx, log, cfg)
	if err != nil {
		return err
	}
	runtimeName := "cri"
	if v, err := rt.Version(ctx, "v1"); err == nil {
		runtimeName = v.RuntimeName
		log.Info("CRI runtime", zap.String("name", v.RuntimeName), zap.String("version", v.RuntimeVersion))
	}
	// The runtime's handlers tell whether a Pod can have its own user
	// namespace; the node status keeps them current.
	handlers := &userns.Handlers{Status: rt.Status}
	um, err := userns.New(userns.Config{PodsDir: filepath.Join(cfg.RootDir, "pods"), IDsPerPod: cfg.UserNamespacesIDsPerPod,
		MaxPods: int(cfg.MaxPods), Runtime: handlers})
	if err != nil {
		return fmt.Errorf("create user namespace manager: %w", err)
	}
	first, slots, ids := um.Range()
	log.Info("user namespaces", zap.Uint32("firstID", first), zap.Int("pods", slots), zap.Uint32("idsPerPod", ids))
	thresholds, err := eviction.ParseThresholds(cfg.EvictionHard)
	if err != nil {
		return err
	}
	em := &eviction.Manager{Thresholds: thresholds, TransitionPeriod: cfg.EvictionPressureTransitionPeriod, Clock: clock.RealClock{},
		Observer: eviction.HostObserver{RootDir: cfg.RootDir, ImageFsPath: func(ctx context.Context) string {
			fs, err := rt.ImageFsInfo(ctx)
			if err != nil || len(fs.GetImageFilesystems()) == 0 {
				return ""
			}
			return fs.GetImageFilesystems()[0].GetFsId().GetMountpoint()
		}}}
	machine := nodestatus.ReadMachine(cfg.RootDir, 10250)
	nc := &nodestatus.Controller{Cfg: nodestatus.Config{NodeName: cfg.NodeName, NodeIPs: cfg.NodeIPs, Labels: cfg.NodeLabels,
		Taints: cfg.Taints, PodCIDR: cfg.PodCIDR, MaxPods: cfg.MaxPods, SystemReserved: cfg.SystemReserved,
		KubeReserved: cfg.KubeReserved, EvictionHard: cfg.EvictionHard, KubeletVersion: version.Get().GitVersion,
		UpdateFreq: cfg.NodeStatusUpdateFreq, ReportFreq: cfg.NodeStatusReportFreq, LeaseDuration: cfg.NodeLeaseDurationSeconds},
		Client: client, Runtime: rt.RuntimeService, Machine: machine, Log: log.Named("node"), RuntimeStatus: handlers.Update,
		Images: func(ctx context.Context) ([]*runtimeapi.Image, error) { return rt.ListImages(ctx, nil) },
		Pressure: func(ctx context.Context) []v1.NodeConditionType {
			conds, err := em.Synchronize(ctx)
			if err != nil {
				log.Warn("eviction signals", zap.Error(err))
			}
			return conds
		}}

	var recorder record.EventRecorder
	if client != nil {
		b := record.NewBroadcaster(record.WithContext(ctx))
		b.StartRecordingToSink(apiclient.EventSink{Client: events})
		defer b.Shutdown()
		recorder = b.NewRecorder(apiclient.Scheme, v1.EventSource{Component: "kubelet", Host: cfg.NodeName})
		nc.Recorder = recorder
		recorder.Eventf(nc.NodeRef(), v1.EventTypeNormal, "Starting", "Starting kubelet.")
	}
	alloc := nc.Allocatable()
	syncer := &podworker.Syncer{RT: rt, RuntimeName: runtimeName, Recorder: recorder, HostIPs: nc.HostIPs(),
		Host: containerconfig.OSHost{}, Backoff: backoff.New(cfg.MaxContainerRestart), ImageBackoff: backoff.New(5 * time.Minute),
		Log: log.Named("sync"), Clock: clock.RealClock{}, Allocatable: alloc, UserNS: um,
		Node: containerconfig.Node{Name: cfg.NodeName, RootDir: cfg.RootDir, PodLogsDir: cfg.PodLogsDir, CgroupDriver: cfg.CgroupDriver,
			CgroupRoot: cfg.CgroupRoot,
			ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, ResolvConf: cfg.ResolvConf, MemoryBytes: machine.MemoryBytes,
			SeccompDefault: cfg.SeccompDefault}}
	podCgroups, err := newPodCgroups(cfg, machine, log.Named("cgroups"))
	if err != nil {
		return err
	}
	if podCgroups != nil {
		syncer.Cgroups = podCgroups
		if recorder != nil && podCgroups.started.Load() {
			recorder.Eventf(nc.NodeRef(), v1.EventTypeNormal, "NodeAllocatableEnforced", "Updated Node Allocatable limit across pods")
		}
	}
	vm := &volume.Manager{RootDir: cfg.RootDir, Mount: volume.OSMounter{},
		Env: containerconfig.PodEnv{NodeName: cfg.NodeName, HostIPs: nc.HostIPs(), NodeAllocatable: alloc}}
	syncer.Volumes = vm
	sm := &status.Manager{Client: client}
	workers := &podworker.Workers{Syncer: syncer, Status: sm, Log: log.Named("pods"),
		Admission: func() admission.Node {
			return admission.Node{Allocatable: alloc, MaxPods: int64(cfg.MaxPods), AllowedUnsafeSysctls: cfg.AllowedUnsafeSysctls,
				Object: nc.CachedNode(), Pressure: em.Conditions()}
		}}
	pm := &prober.Manager{Runner: prober.CRIRunner{Runtime: rt.RuntimeService, UserAgent: "kube-probe/" + probeVersion()},
		Recorder: recorder, Log: log.Named("prober"), Trigger: workers.Trigger,
		Kill: func(ctx context.Context, pod *v1.Pod, c *v1.Container, id, why string) {
			if err := syncer.KillContainer(ctx, pod, c, id, why); err != nil {
				log.Warn("kill container after failed probe", zap.String("container", c.Name), zap.Error(err))
			}
			workers.Trigger(pod.UID)
		}}
	workers.Prober = pm
	workers.Start(ctx)
	defer workers.Wait()

	if cfg.EnableServer {
		scfg := server.Config{Address: cfg.Address, Port: cfg.Port, TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile,
			CertDir: filepath.Join(cfg.RootDir, "pki"), Hostname: cfg.NodeName, IPs: cfg.NodeIPs,
			Authentication: cfg.Authentication, Authorization: cfg.Authorization}
		authn, authz, runAuth, err := server.BuildAuth(client, scfg)
		switch {
		case errors.Is(err, server.ErrNoClient):
			// Standalone: nobody could be authorized; upstream refuses to start, we run the Pods without the API.
			log.Warn("kubelet API not served", zap.Error(err))
		case err != nil:
			return err
		default:
			runAuth(ctx)
			srv := &server.Server{NodeName: cfg.NodeName, Host: serverHost{workers: workers, status: sm, rt: rt}, Runtime: rt.RuntimeService,
				Profiling: cfg.EnableProfiling, Metrics: metricsRegistry(),
				Authn: authn, Authz: authz, Log: log.Named("server"),
				Stats: &stats.Provider{NodeName: cfg.NodeName, RootDir: cfg.RootDir, Runtime: rt.RuntimeService, Host: stats.OSHost{}}}
			go func() {
				if err := server.ListenAndServe(ctx, log.Named("server"), scfg, srv.Handler()); err != nil {
					log.Error("kubelet API server stopped", zap.Error(err))
				}
			}()
		}
	}
	if client != nil {
		if cfg.RegisterNode {
			go nc.Run(ctx)
		}
		syncer.RuntimeClassHandler = func(ctx context.Context, name string) (string, error) {
			rc, err := client.RuntimeClasses().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			return rc.Handler, nil
		}
		src := &podsource.APIServer{Client: client, NodeName: cfg.NodeName, Sink: workers}
		syncer.Sources = src
		vm.Src = src
		src.Start(ctx)
		if err := src.WaitForSync(ctx); err != nil {
			return err
		}
	}
	if cfg.StaticPodPath != "" {
		st := &podsource.Static{Dir: cfg.StaticPodPath, NodeName: cfg.NodeName, Sink: workers, Client: client,
			Period: cfg.FileCheckFrequency, Log: log.Named("static")}
		if err := st.Load(); err != nil {
			log.Warn("static pods", zap.Error(err))
		}
		go st.Run(ctx)
	}
	// Only now, with every source listed once, is an unknown Pod an orphan.
	if err := workers.Adopt(ctx, rt); err != nil {
		log.Warn("adopt running pods", zap.Error(err))
	}
	if err := releaseOrphanedUserNamespaces(ctx, rt, um, workers); err != nil {
		log.Warn("release orphaned user namespaces", zap.Error(err))
	}
	if podCgroups != nil {
		podCgroups.active = workers.Active
		go podCgroups.run(ctx, rt, workers)
	}
	p := &pleg.PLEG{RT: rt.RuntimeService, Notify: workers.Changed, Log: log.Named("pleg")}
	go p.Run(ctx)
	log.Info("kubelet running", zap.String("runtime", cfg.RuntimeEndpoint), zap.Bool("standalone", client == nil))
	<-ctx.Done()
	return nil
}

// releaseOrphanedUserNamespaces gives back the IDs of Pods that went while
// the kubelet was down: those neither a source nor the runtime knows, as
// upstream's housekeeping does. A Pod removed from now on releases its own.
func releaseOrphanedUserNamespaces(ctx context.Context, rt *runtime.Runtime, um *userns.Manager, workers *podworker.Workers) error {
	inRuntime, err := rt.ListPods(ctx)
	if err != nil {
		return err
	}
	// A Pod that started meanwhile is in its source: Known holds for it.
	return um.Cleanup(func(uid types.UID) bool { return inRuntime[uid] != nil || workers.Known(uid) })
}

// connect dials the CRI runtime, retrying while it is not up yet.
func connect(ctx context.Context, log *zap.Logger, cfg *config.Config) (*runtime.Runtime, error) {
	for attempt := 1; ; attempt++ {
		rt, err := runtime.Connect(ctx, cfg.RuntimeEndpoint, cfg.ImageEndpoint, cfg.RuntimeRequestTimeout)
		if err == nil {
			return rt, nil
		}
		if attempt == 1 || attempt%30 == 0 {
			log.Warn("CRI runtime not reachable; retrying", zap.String("endpoint", cfg.RuntimeEndpoint), zap.Error(err),
				zap.String("attempt", strconv.Itoa(attempt)))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// probeVersion is major.minor of this kubelet's version, for the kube-probe user agent.
func probeVersion() string {
	parts := strings.SplitN(strings.TrimPrefix(version.Get().GitVersion, "v"), ".", 3)
	if len(parts) < 2 {
		return strings.Join(parts, ".")
	}
	return parts[0] + "." + parts[1]
}

// metricsRegistry is what /metrics serves, under upstream's names, to
// compare each kubelet's work: CRI calls, API requests and the time they
// waited in the client-side rate limiter.
func metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(runtime.Operations)
	reg.MustRegister(apiclient.RegisterMetrics()...)
	return reg
}
