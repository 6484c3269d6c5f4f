// Package servicestate is the proxy's desired state: what every data plane
// (IPVS, nftables) must program, computed as a pure function of the Services,
// EndpointSlices and Node the proxy watches. The data planes only read it.
package servicestate

import (
	"context"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// ServicePortName identifies one port of one Service, as kube-proxy's proxy.ServicePortName.
type ServicePortName struct {
	Namespace, Name string
	Port            string // the port's name, "" for an unnamed port
	Protocol        v1.Protocol
}

// ServicePort is everything a data plane needs to know about one Service port
// in one IP family.
type ServicePort struct {
	Name                     ServicePortName
	Family                   v1.IPFamily
	ClusterIP                netip.Addr
	Port                     int32
	NodePort                 int32 // 0: none
	ExternalIPs              []netip.Addr
	LoadBalancerIPs          []netip.Addr
	LoadBalancerSourceRanges []netip.Prefix
	// StickyMaxAgeSeconds > 0 means sessionAffinity: ClientIP with that timeout.
	StickyMaxAgeSeconds int32
	ExternalPolicyLocal bool // externalTrafficPolicy: Local
	InternalPolicyLocal bool // internalTrafficPolicy: Local
	HealthCheckNodePort int32
	// Scheduler is the IPVS scheduler for this port ("" = the configured
	// default); the nftables plane ignores it.
	Scheduler string
}

// Endpoint is one backend of a ServicePort, already filtered by family.
type Endpoint struct {
	IP          netip.Addr
	Port        int32
	Ready       bool
	Serving     bool
	Terminating bool
	NodeName    string
	Zone        string
	IsLocal     bool // on this node
}

// State is the whole desired state for one IP family or both.
type State struct {
	// Services keyed by name and family.
	Services map[Key]*ServicePort
	// Endpoints of each service port: the endpoints that should receive
	// traffic (ready ones, or serving-terminating ones when none is ready),
	// in a stable order.
	Endpoints map[Key][]Endpoint
	// NodeIPs are the addresses NodePorts are served on (nodePortAddresses applied).
	NodeIPs []netip.Addr
	// LocalEndpoints of each service port: this node's endpoints, selected
	// by the same rule (local ready ones, else local serving-terminating
	// ones). Upstream selects them separately, so a terminating local
	// endpoint can serve eTP/iTP Local traffic while remote ones are ready.
	// Endpoints (above) is cluster-wide and ignores the traffic policies:
	// ClusterEndpoints and ExternalEndpoints apply them.
	LocalEndpoints map[Key][]Endpoint
}

// Key is one ServicePort in one family.
type Key struct {
	Name   ServicePortName
	Family v1.IPFamily
}

// DataPlane programs a State into the kernel. Sync must be idempotent and
// touch only what differs: changed lists the keys whose Service or endpoints
// changed since the last successful Sync; full=true asks for a complete
// reconcile against what the kernel has (at start, and periodically).
// A data plane never flushes on start: it adopts what it finds.
type DataPlane interface {
	Sync(ctx context.Context, desired *State, changed sets.Set[Key], full bool) error
	// Name is "ipvs" or "nftables", for logs and metrics.
	Name() string
}

// Pacer paces a data plane's background reconcile beside the syncs (the
// syncer implements it): the reconcile reads the kernel between Quiet and
// Apply, and corrects what it read in Apply.
type Pacer interface {
	// Quiet returns when reading the kernel would slow no change: no sync
	// runs, none is pending, and the last was a while ago (within a bound,
	// so a busy cluster does not hold the reconcile off for ever).
	Quiet(ctx context.Context) error
	// Apply runs f on the sync goroutine between two syncs, with the
	// current state, and returns its error.
	Apply(f func(*State) error) error
}
