package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	benchNS = "nsbench"
	// otherNode hosts every endpoint: none is local to a proxy's node.
	otherNode = "nsbench-elsewhere"
	svcPort   = 80
	epPort    = 8080
)

var (
	// Endpoint j of Service i is epBase + i*endpoints + j; the endpoints the
	// change phase adds are in changeRange. Neither range is routed
	// anywhere: no packet is ever sent to them.
	epBase = netip.MustParseAddr("10.200.0.0")
	// changeRange holds the addresses the change phase adds (its first
	// 65,536); nothing else in either ruleset is in it.
	changeRange = netip.MustParsePrefix("10.210.0.0/16")
)

func addrPlus(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func svcName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// triggerTime is the annotation both proxies read for
// network_programming_duration_seconds.
func triggerTime(t time.Time) map[string]string {
	return map[string]string{corev1.EndpointsLastChangeTriggerTime: t.UTC().Format(time.RFC3339Nano)}
}

func endpointSlice(i int, ips []netip.Addr, now time.Time) *discoveryv1.EndpointSlice {
	eps := make([]discoveryv1.Endpoint, 0, len(ips))
	for _, ip := range ips {
		eps = append(eps, discoveryv1.Endpoint{
			Addresses:  []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(otherNode),
		})
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: svcName(i), Namespace: benchNS,
			Labels:      map[string]string{discoveryv1.LabelServiceName: svcName(i), discoveryv1.LabelManagedBy: "nsbench"},
			Annotations: triggerTime(now),
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](epPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

// population is what the bench wrote to the API: Service i's ClusterIP and
// its endpoint addresses.
type population struct {
	endpoints  int
	clusterIPs []netip.Addr
	epIPs      [][]netip.Addr
}

// grow creates Services (no selector: the bench owns their EndpointSlices)
// and EndpointSlices until there are n, with parallel writers.
func (p *population) grow(ctx context.Context, cs kubernetes.Interface, n int) error {
	from := len(p.clusterIPs)
	if n <= from {
		return nil
	}
	p.clusterIPs = append(p.clusterIPs, make([]netip.Addr, n-from)...)
	p.epIPs = append(p.epIPs, make([][]netip.Addr, n-from)...)
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := p.create(ctx, cs, i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	go func() {
		defer close(work)
		for i := from; i < n; i++ {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	return ctx.Err()
}

func (p *population) create(ctx context.Context, cs kubernetes.Interface, i int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svcName(i), Namespace: benchNS},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: svcPort, TargetPort: intstr.FromInt32(epPort), Protocol: corev1.ProtocolTCP}},
		},
	}
	got, err := cs.CoreV1().Services(benchNS).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s: %w", svc.Name, err)
	}
	ip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return fmt.Errorf("service %s: ClusterIP %q: %w", svc.Name, got.Spec.ClusterIP, err)
	}
	ips := make([]netip.Addr, p.endpoints)
	for j := range ips {
		ips[j] = addrPlus(epBase, i*p.endpoints+j)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, endpointSlice(i, ips, time.Now()), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create endpointslice %s: %w", svc.Name, err)
	}
	p.clusterIPs[i], p.epIPs[i] = ip, ips
	return nil
}

// addEndpoint writes Service i's EndpointSlice with one more endpoint,
// stamping the trigger time; it returns when the write was sent.
func (p *population) addEndpoint(ctx context.Context, cs kubernetes.Interface, i int, ip netip.Addr) (time.Time, error) {
	ips := append(append([]netip.Addr{}, p.epIPs[i]...), ip)
	cur, err := cs.DiscoveryV1().EndpointSlices(benchNS).Get(ctx, svcName(i), metav1.GetOptions{})
	if err != nil {
		return time.Time{}, err
	}
	start := time.Now()
	next := endpointSlice(i, ips, start)
	next.ResourceVersion = cur.ResourceVersion
	if _, err := cs.DiscoveryV1().EndpointSlices(benchNS).Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		return time.Time{}, err
	}
	p.epIPs[i] = ips
	return start, nil
}

func ensureNamespace(ctx context.Context, cs kubernetes.Interface) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// ensureNode creates the Node a proxy runs as, with its namespace address
// as InternalIP (the proxies take their node IPs from it).
func ensureNode(ctx context.Context, cs kubernetes.Interface, name string, ip netip.Addr) error {
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{corev1.LabelHostname: name}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}
