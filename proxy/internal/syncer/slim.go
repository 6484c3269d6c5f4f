package syncer

import (
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// slim is the informers' transform: it drops, before an object is cached,
// the fields the proxy never reads (managedFields above all, which on a
// client-created object are as large as the rest), so the caches of
// thousands of Services and EndpointSlices stay small. It keeps everything
// servicestate, the syncer and the health server read.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Service:
		o.ManagedFields = nil
		delete(o.Annotations, v1.LastAppliedConfigAnnotation)
	case *discoveryv1.EndpointSlice:
		o.ManagedFields = nil
		delete(o.Annotations, v1.LastAppliedConfigAnnotation)
		for i := range o.Endpoints {
			e := &o.Endpoints[i]
			e.TargetRef, e.Hostname, e.DeprecatedTopology = nil, nil, nil
		}
	case *v1.Node:
		// Addresses, taints and the deletion timestamp are what is read.
		o.ManagedFields = nil
		o.Annotations = nil
		o.Status = v1.NodeStatus{Addresses: o.Status.Addresses}
	}
	return obj, nil
}
