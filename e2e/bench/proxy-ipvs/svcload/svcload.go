// Package svcload fills an API server with Services and EndpointSlices
// for the proxy benchmarks.
package svcload

import (
	"context"
	"errors"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Populate creates Services from..to-1 in namespace, each with one
// EndpointSlice of endpoints ready endpoints on another node, 32 at a time.
func Populate(ctx context.Context, c kubernetes.Interface, namespace string, from, to, endpoints int) error {
	work := make(chan int)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := CreateService(ctx, c, namespace, i, endpoints); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := from; i < to; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

// CreateService creates Service svc-<i> (port 80) and its EndpointSlice of
// endpoints ready endpoints (port 8080) with addresses unique across i.
func CreateService(ctx context.Context, c kubernetes.Interface, namespace string, i, endpoints int) error {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP,
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}}}
	if _, err := c.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: name}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(v1.ProtocolTCP)}}}
	for j := range endpoints {
		k := i*endpoints + j + 1
		ip := fmt.Sprintf("10.%d.%d.%d", 244+k>>16, (k>>8)&255, k&255)
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To("other-node"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if _, err := c.DiscoveryV1().EndpointSlices(namespace).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("endpointslice %s: %w", sl.Name, err)
	}
	return nil
}

// guest boots a fresh UML kernel running ipvsbench for one proxy.
