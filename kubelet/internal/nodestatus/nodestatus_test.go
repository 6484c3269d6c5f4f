package nodestatus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"google.golang.org/protobuf/testing/protocmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient/apiclienttest"
)

func controller(client *fake.Clientset, rs *critest.FakeRuntimeService, clk *clocktesting.FakeClock) *Controller {
	return &Controller{
		Cfg: Config{NodeName: "n1", NodeIPs: []net.IP{net.ParseIP("192.0.2.2")}, Labels: map[string]string{"role": "worker"},
			Taints: []v1.Taint{{Key: "k", Effect: v1.TaintEffectNoSchedule}}, MaxPods: 110, KubeletVersion: "v1.37.2-ns",
			EvictionHard:   map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"},
			SystemReserved: map[string]string{"cpu": "500m"}, UpdateFreq: 10 * time.Second, ReportFreq: 5 * time.Minute},
		Client: apiclienttest.New(client), Runtime: rs, Log: zap.NewNop(), Clock: clk,
		Machine: Machine{CPUs: 2, MemoryBytes: 1 << 30, EphemeralBytes: 100 << 30, MachineID: "m", SystemUUID: "s", BootID: "b",
			KernelVersion: "6.18", OSImage: "Debian", KubeletPort: 10250, Architecture: "amd64", OperatingSystem: "linux"},
	}
}

func TestRegisterAndStatus(t *testing.T) {
	client := fake.NewSimpleClientset()
	rs := critest.NewFakeRuntimeService()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	c := controller(client, rs, clk)
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(clk.Now())
	want := v1.NodeStatus{
		Capacity: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("1Gi"),
			v1.ResourceEphemeralStorage: resource.MustParse("100Gi"), v1.ResourcePods: resource.MustParse("110"),
			"hugepages-1Gi": resource.MustParse("0"), "hugepages-2Mi": resource.MustParse("0")},
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m"), v1.ResourceMemory: resource.MustParse("924Mi"),
			v1.ResourceEphemeralStorage: resource.MustParse("90Gi"), v1.ResourcePods: resource.MustParse("110"),
			"hugepages-1Gi": resource.MustParse("0"), "hugepages-2Mi": resource.MustParse("0")},
		Addresses:       []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.2"}, {Type: v1.NodeHostName, Address: "n1"}},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: 10250}},
		NodeInfo: v1.NodeSystemInfo{MachineID: "m", SystemUUID: "s", BootID: "b", KernelVersion: "6.18", OSImage: "Debian",
			ContainerRuntimeVersion: critest.FakeRuntimeName + "://" + critest.FakeVersion, KubeletVersion: "v1.37.2-ns",
			OperatingSystem: "linux", Architecture: "amd64"},
		Conditions: []v1.NodeCondition{
			{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: v1.NodeDiskPressure, Status: v1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: v1.NodePIDPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now},
		},
	}
	if d := cmp.Diff(want, n.Status); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	if n.Labels["role"] != "worker" || n.Labels[v1.LabelHostname] != "n1" || len(n.Spec.Taints) != 1 {
		t.Errorf("labels %v taints %v", n.Labels, n.Spec.Taints)
	}

	// The network goes down: Ready turns False with the runtime's reason.
	rs.FakeStatus = &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true}, {Type: runtimeapi.NetworkReady, Status: false, Reason: "NetworkPluginNotReady", Message: "cni not initialized"}}}
	clk.Step(10 * time.Second)
	if err := c.Update(ctx, false); err != nil {
		t.Fatal(err)
	}
	n, _ = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	ready := n.Status.Conditions[3]
	if ready.Status != v1.ConditionFalse || ready.Reason != "KubeletNotReady" ||
		ready.Message != "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni not initialized" {
		t.Errorf("ready = %+v", ready)
	}

	// Deleted Node: registered again.
	if err := client.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); err != nil {
		t.Errorf("not re-registered: %v", err)
	}
}

func TestUpdateSkipsUnchangedUntilReportPeriod(t *testing.T) {
	client := fake.NewSimpleClientset()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	c := controller(client, critest.NewFakeRuntimeService(), clk)
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, true); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	before := count()
	clk.Step(10 * time.Second)
	_ = c.Update(ctx, false)
	if count() != before {
		t.Errorf("unchanged status written before the report period")
	}
	clk.Step(5 * time.Minute)
	_ = c.Update(ctx, false)
	if count() != before+1 {
		t.Errorf("status not reported after the report period")
	}
}

// TestStatusHandsOnRuntimeStatus: the CRI Status read for the node's status
// reaches RuntimeStatus (the user namespace manager's handler cache).
func TestStatusHandsOnRuntimeStatus(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	rs.FakeStatus = &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{{Type: runtimeapi.RuntimeReady, Status: true}}}
	c := controller(fake.NewSimpleClientset(), rs, clocktesting.NewFakeClock(time.Now()))
	var got []*runtimeapi.StatusResponse
	c.RuntimeStatus = func(r *runtimeapi.StatusResponse) { got = append(got, r) }
	c.Status(context.Background(), nil)
	if d := cmp.Diff([]*runtimeapi.StatusResponse{{Status: rs.FakeStatus}}, got, protocmp.Transform()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// A failed read hands on nothing.
	rs.InjectError("Status", errors.New("down"))
	got = nil
	c.Status(context.Background(), nil)
	if len(got) != 0 {
		t.Errorf("after a failed read: %v", got)
	}
}

// TestRuntimeFeatures: status.runtimeHandlers and status.features as
// upstream's setters report them from the CRI Status.
func TestRuntimeFeatures(t *testing.T) {
	rs := &runtimeapi.StatusResponse{
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{
			{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
			{Name: "runc"},
		},
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	handlers, features := runtimeFeatures(rs)
	yes, no := true, false
	want := []v1.NodeRuntimeHandler{
		{Name: "", Features: &v1.NodeRuntimeHandlerFeatures{RecursiveReadOnlyMounts: &yes, UserNamespaces: &yes}},
		{Name: "runc", Features: &v1.NodeRuntimeHandlerFeatures{RecursiveReadOnlyMounts: &no, UserNamespaces: &no}},
	}
	if d := cmp.Diff(want, handlers); d != "" {
		t.Errorf("handlers (-want +got):\n%s", d)
	}
	if d := cmp.Diff(&v1.NodeFeatures{SupplementalGroupsPolicy: &yes}, features); d != "" {
		t.Errorf("features (-want +got):\n%s", d)
	}
	if h, f := runtimeFeatures(&runtimeapi.StatusResponse{}); h != nil || f != nil {
		t.Errorf("an old runtime's Status gave %v %v", h, f)
	}
}

// TestPressureConditions: the conditions the eviction signals drive, with
// upstream's reasons and messages.
func TestPressureConditions(t *testing.T) {
	c := controller(fake.NewSimpleClientset(), critest.NewFakeRuntimeService(), clocktesting.NewFakeClock(time.Now()))
	c.Pressure = func(context.Context) []v1.NodeConditionType {
		return []v1.NodeConditionType{v1.NodeMemoryPressure, v1.NodePIDPressure}
	}
	type rm struct {
		Status          v1.ConditionStatus
		Reason, Message string
	}
	got := map[v1.NodeConditionType]rm{}
	for _, cond := range c.Status(context.Background(), nil).Conditions {
		got[cond.Type] = rm{cond.Status, cond.Reason, cond.Message}
	}
	want := map[v1.NodeConditionType]rm{
		v1.NodeMemoryPressure: {v1.ConditionTrue, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"},
		v1.NodeDiskPressure:   {v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
		v1.NodePIDPressure:    {v1.ConditionTrue, "KubeletHasInsufficientPID", "kubelet has insufficient PID available"},
		v1.NodeReady:          {v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestNodeImages is upstream's Images setter: largest first (ties by ID,
// descending), at most 50, at most 5 names each with digests first; read
// again only after 30 s.
func TestNodeImages(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := controller(fake.NewSimpleClientset(), critest.NewFakeRuntimeService(), clk)
	var imgs []*runtimeapi.Image
	for i := range 60 {
		imgs = append(imgs, &runtimeapi.Image{Id: fmt.Sprintf("sha256:%02d", i), Size: uint64(1000 + i%30)})
	}
	imgs[59].RepoTags = []string{"t1", "t2", "t3", "t4"}
	imgs[59].RepoDigests = []string{"d1", "d2"}
	calls := 0
	c.Images = func(context.Context) ([]*runtimeapi.Image, error) { calls++; return imgs, nil }
	got := c.Status(context.Background(), nil).Images
	if len(got) != 50 {
		t.Fatalf("%d images, want 50", len(got))
	}
	// Sizes 1029 are images 29 and 59: 59 first (higher ID).
	if d := cmp.Diff(v1.ContainerImage{Names: []string{"d1", "d2", "t1", "t2", "t3"}, SizeBytes: 1029}, got[0]); d != "" {
		t.Errorf("first (-want +got):\n%s", d)
	}
	if got[1].SizeBytes != 1029 || got[2].SizeBytes != 1028 || got[49].SizeBytes != 1005 {
		t.Errorf("order: %d %d ... %d", got[1].SizeBytes, got[2].SizeBytes, got[49].SizeBytes)
	}
	c.Status(context.Background(), nil)
	clk.Step(31 * time.Second)
	c.Status(context.Background(), nil)
	if calls != 2 {
		t.Errorf("ListImages called %d times, want 2 (cached for 30 s)", calls)
	}
}

// TestConditionEvents: upstream's Node Events, once per new or changed
// condition.
func TestConditionEvents(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	c := controller(fake.NewSimpleClientset(), rs, clocktesting.NewFakeClock(time.Now()))
	rec := record.NewFakeRecorder(20)
	c.Recorder = rec
	drain := func() []string {
		var out []string
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	first := c.Status(context.Background(), nil)
	want := []string{"Normal NodeHasSufficientMemory Node n1 status is now: NodeHasSufficientMemory",
		"Normal NodeHasNoDiskPressure Node n1 status is now: NodeHasNoDiskPressure",
		"Normal NodeHasSufficientPID Node n1 status is now: NodeHasSufficientPID",
		"Normal NodeReady Node n1 status is now: NodeReady"}
	if d := cmp.Diff(want, drain()); d != "" {
		t.Errorf("first status (-want +got):\n%s", d)
	}
	c.Status(context.Background(), &first)
	if got := drain(); len(got) != 0 {
		t.Errorf("unchanged status recorded %v", got)
	}
	c.Pressure = func(context.Context) []v1.NodeConditionType { return []v1.NodeConditionType{v1.NodeDiskPressure} }
	c.Status(context.Background(), &first)
	if d := cmp.Diff([]string{"Normal NodeHasDiskPressure Node n1 status is now: NodeHasDiskPressure"}, drain()); d != "" {
		t.Errorf("disk pressure (-want +got):\n%s", d)
	}
}
