package runtime

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Operations counts CRI calls by method with upstream's metric name, help
// and operation_type values (pkg/kubelet/kuberuntime/instrumented_services.go),
// so what each kubelet asks of the runtime can be compared. Only the calls
// the kubelet makes on its own are counted; streaming calls are not.
var Operations = prometheus.NewCounterVec(prometheus.CounterOpts{
	Subsystem: "kubelet", Name: "runtime_operations_total",
	Help: "Cumulative number of runtime operations by operation type.",
}, []string{"operation_type"})

// ops are the counters, looked up once.
var ops = func() map[string]prometheus.Counter {
	m := map[string]prometheus.Counter{}
	for _, n := range []string{"version", "status", "create_container", "start_container", "stop_container", "remove_container",
		"list_containers", "container_status", "exec_sync", "run_podsandbox", "stop_podsandbox", "remove_podsandbox",
		"podsandbox_status", "list_podsandbox", "list_container_stats", "list_podsandbox_stats", "list_images",
		"image_status", "pull_image", "image_fs_info"} {
		m[n] = Operations.WithLabelValues(n)
	}
	return m
}()

// countedRuntime counts the runtime service's calls.
type countedRuntime struct{ internalapi.RuntimeService }

func (c countedRuntime) Version(ctx context.Context, v string) (*runtimeapi.VersionResponse, error) {
	ops["version"].Inc()
	return c.RuntimeService.Version(ctx, v)
}

func (c countedRuntime) Status(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error) {
	ops["status"].Inc()
	return c.RuntimeService.Status(ctx, verbose)
}

func (c countedRuntime) CreateContainer(ctx context.Context, sb string, cfg *runtimeapi.ContainerConfig, sbCfg *runtimeapi.PodSandboxConfig) (string, error) {
	ops["create_container"].Inc()
	return c.RuntimeService.CreateContainer(ctx, sb, cfg, sbCfg)
}

func (c countedRuntime) StartContainer(ctx context.Context, id string) error {
	ops["start_container"].Inc()
	return c.RuntimeService.StartContainer(ctx, id)
}

func (c countedRuntime) StopContainer(ctx context.Context, id string, timeout int64) error {
	ops["stop_container"].Inc()
	return c.RuntimeService.StopContainer(ctx, id, timeout)
}

func (c countedRuntime) RemoveContainer(ctx context.Context, id string) error {
	ops["remove_container"].Inc()
	return c.RuntimeService.RemoveContainer(ctx, id)
}

func (c countedRuntime) ListContainers(ctx context.Context, f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	ops["list_containers"].Inc()
	return c.RuntimeService.ListContainers(ctx, f)
}

func (c countedRuntime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	ops["container_status"].Inc()
	return c.RuntimeService.ContainerStatus(ctx, id, verbose)
}

func (c countedRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, error) {
	ops["exec_sync"].Inc()
	return c.RuntimeService.ExecSync(ctx, id, cmd, timeout)
}

func (c countedRuntime) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	ops["run_podsandbox"].Inc()
	return c.RuntimeService.RunPodSandbox(ctx, cfg, handler)
}

func (c countedRuntime) StopPodSandbox(ctx context.Context, id string) error {
	ops["stop_podsandbox"].Inc()
	return c.RuntimeService.StopPodSandbox(ctx, id)
}

func (c countedRuntime) RemovePodSandbox(ctx context.Context, id string) error {
	ops["remove_podsandbox"].Inc()
	return c.RuntimeService.RemovePodSandbox(ctx, id)
}

func (c countedRuntime) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	ops["podsandbox_status"].Inc()
	return c.RuntimeService.PodSandboxStatus(ctx, id, verbose)
}

func (c countedRuntime) ListPodSandbox(ctx context.Context, f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	ops["list_podsandbox"].Inc()
	return c.RuntimeService.ListPodSandbox(ctx, f)
}

func (c countedRuntime) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	ops["list_container_stats"].Inc()
	return c.RuntimeService.ListContainerStats(ctx, f)
}

func (c countedRuntime) ListPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	ops["list_podsandbox_stats"].Inc()
	return c.RuntimeService.ListPodSandboxStats(ctx, f)
}

// countedImages counts the image service's calls.
type countedImages struct {
	internalapi.ImageManagerService
}

func (c countedImages) ListImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	ops["list_images"].Inc()
	return c.ImageManagerService.ListImages(ctx, f)
}

func (c countedImages) ImageStatus(ctx context.Context, img *runtimeapi.ImageSpec, verbose bool) (*runtimeapi.ImageStatusResponse, error) {
	ops["image_status"].Inc()
	return c.ImageManagerService.ImageStatus(ctx, img, verbose)
}

func (c countedImages) PullImage(ctx context.Context, img *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, sbCfg *runtimeapi.PodSandboxConfig) (string, error) {
	ops["pull_image"].Inc()
	return c.ImageManagerService.PullImage(ctx, img, auth, sbCfg)
}

func (c countedImages) ImageFsInfo(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	ops["image_fs_info"].Inc()
	return c.ImageManagerService.ImageFsInfo(ctx)
}
