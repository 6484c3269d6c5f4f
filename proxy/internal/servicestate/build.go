package servicestate

import (
	"cmp"
	"net/netip"
	stdslices "slices"
	"sort"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// SchedulerAnnotation lets a Service choose its IPVS scheduler (rr, wrr,
// lc, wlc, sh, dh, mh, ...), overriding the configured default. Upstream
// kube-proxy has no such knob.
const SchedulerAnnotation = "ipvs.nodesuite.io/scheduler"

// defaultStickyMaxAge is the API default for sessionAffinityConfig.clientIP.timeoutSeconds.
const defaultStickyMaxAge = 10800

// Config is the node-side input of Build.
type Config struct {
	// NodeName is this node's name: endpoints with this nodeName are local.
	NodeName string
	// Families this proxy serves (IPv4, IPv6 or both).
	Families []v1.IPFamily
	// HostAddresses are the addresses on this host's interfaces, candidates
	// for NodePorts.
	HostAddresses []netip.Addr
	// PrimaryIPs are the node's primary addresses (its InternalIPs), used
	// for the "primary" keyword in NodePortAddresses.
	PrimaryIPs []netip.Addr
	// NodePortAddresses is kube-proxy's nodePortAddresses: CIDRs and/or
	// "primary"; empty means every host address.
	NodePortAddresses []string
}

// ServiceResult is what one Service contributes to a State.
type ServiceResult struct {
	Services       map[Key]*ServicePort
	Endpoints      map[Key][]Endpoint
	LocalEndpoints map[Key][]Endpoint
}

// Build computes the whole desired state. slices are grouped by their
// kubernetes.io/service-name label; the caller has already dropped headless
// and other proxies' objects (the informers' label selectors do that).
func Build(services []*v1.Service, slices []*discoveryv1.EndpointSlice, cfg Config) *State {
	byService := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		n, ok := ServiceNameOf(s)
		if ok {
			byService[n] = append(byService[n], s)
		}
	}
	n := len(services)
	st := &State{Services: make(map[Key]*ServicePort, n), Endpoints: make(map[Key][]Endpoint, n),
		LocalEndpoints: make(map[Key][]Endpoint, n), NodeIPs: NodeIPs(cfg)}
	for _, svc := range services {
		st.AddService(svc, byService[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}], cfg, nil)
	}
	return st
}

// AddService adds one Service's ports to st, as Merge(BuildService(...))
// does but without a ServiceResult's three maps per Service (a first sync
// builds 10,000 of them only to copy them), and returns keys with the
// added ports' keys appended.
func (st *State) AddService(svc *v1.Service, slices []*discoveryv1.EndpointSlice, cfg Config, keys []Key) []Key {
	if st.LocalEndpoints == nil {
		st.LocalEndpoints = map[Key][]Endpoint{}
	}
	buildService(svc, slices, cfg, func(k Key, sp *ServicePort, eps, local []Endpoint) {
		st.Services[k], st.Endpoints[k], st.LocalEndpoints[k] = sp, eps, local
		keys = append(keys, k)
	})
	return keys
}

// Merge adds one Service's result to st.
func (st *State) Merge(r ServiceResult) {
	for k, sp := range r.Services {
		st.Services[k] = sp
		st.Endpoints[k] = r.Endpoints[k]
		if st.LocalEndpoints == nil {
			st.LocalEndpoints = map[Key][]Endpoint{}
		}
		st.LocalEndpoints[k] = r.LocalEndpoints[k]
	}
}

// ServiceNameOf is the Service an EndpointSlice belongs to.
func ServiceNameOf(s *discoveryv1.EndpointSlice) (types.NamespacedName, bool) {
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: s.Namespace, Name: name}, true
}

// NodeIPs applies nodePortAddresses to the host's addresses, as kube-proxy:
// empty means all of them; "primary" means the node's primary IPs.
func NodeIPs(cfg Config) []netip.Addr {
	fam := familySet(cfg.Families)
	var prefixes []netip.Prefix
	primary := false
	for _, s := range cfg.NodePortAddresses {
		if s == "primary" {
			primary = true
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			prefixes = append(prefixes, p.Masked())
		}
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		a = a.Unmap()
		if !fam[familyOf(a)] || seen[a] {
			return
		}
		seen[a] = true
		out = append(out, a)
	}
	if primary {
		for _, a := range cfg.PrimaryIPs {
			add(a)
		}
	}
	for _, a := range cfg.HostAddresses {
		a = a.Unmap()
		// Loopback and link-local NodePorts are not served by IPVS (upstream
		// drops them too: IPVS cannot DNAT from 127.0.0.0/8 without route_localnet).
		if a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		if len(cfg.NodePortAddresses) == 0 {
			add(a)
			continue
		}
		for _, p := range prefixes {
			if p.Contains(a) {
				add(a)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// BuildService computes one Service's ports and endpoints in every family it
// has and this proxy serves.
func BuildService(svc *v1.Service, slices []*discoveryv1.EndpointSlice, cfg Config) ServiceResult {
	r := ServiceResult{Services: map[Key]*ServicePort{}, Endpoints: map[Key][]Endpoint{}, LocalEndpoints: map[Key][]Endpoint{}}
	buildService(svc, slices, cfg, func(k Key, sp *ServicePort, eps, local []Endpoint) {
		r.Services[k], r.Endpoints[k], r.LocalEndpoints[k] = sp, eps, local
	})
	return r
}

// buildService hands each of svc's ports (per family) to emit.
func buildService(svc *v1.Service, slices []*discoveryv1.EndpointSlice, cfg Config, emit func(Key, *ServicePort, []Endpoint, []Endpoint)) {
	if svc == nil || svc.Spec.Type == v1.ServiceTypeExternalName {
		return
	}
	clusterIPs := svc.Spec.ClusterIPs
	if len(clusterIPs) == 0 && svc.Spec.ClusterIP != "" {
		clusterIPs = []string{svc.Spec.ClusterIP}
	}
	sticky := int32(0)
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		sticky = defaultStickyMaxAge
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			sticky = *c.ClientIP.TimeoutSeconds
		}
	}
	extLocal := svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal &&
		(svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer || len(svc.Spec.ExternalIPs) > 0)
	intLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal
	for _, s := range clusterIPs {
		cip, err := netip.ParseAddr(s)
		if err != nil { // "None" (headless) or garbage: nothing to proxy
			continue
		}
		cip = cip.Unmap()
		family := familyOf(cip)
		if !serves(cfg.Families, family) {
			continue
		}
		ext := addrsOfFamily(svc.Spec.ExternalIPs, family)
		var lbIPs []netip.Addr
		if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
			for _, ing := range svc.Status.LoadBalancer.Ingress {
				// IPMode Proxy: the load balancer delivers to the node, not to
				// the IP, so the IP must not be captured here (as upstream).
				if ing.IPMode != nil && *ing.IPMode == v1.LoadBalancerIPModeProxy {
					continue
				}
				lbIPs = append(lbIPs, addrsOfFamily([]string{ing.IP}, family)...)
			}
		}
		var ranges []netip.Prefix
		for _, c := range svc.Spec.LoadBalancerSourceRanges {
			if p, err := netip.ParsePrefix(c); err == nil && familyOf(p.Addr()) == family {
				ranges = append(ranges, p.Masked())
			}
		}
		for _, p := range svc.Spec.Ports {
			name := ServicePortName{Namespace: svc.Namespace, Name: svc.Name, Port: p.Name, Protocol: p.Protocol}
			if name.Protocol == "" {
				name.Protocol = v1.ProtocolTCP
			}
			k := Key{Name: name, Family: family}
			sp := &ServicePort{
				Name: name, Family: family, ClusterIP: cip, Port: p.Port,
				ExternalIPs: ext, LoadBalancerIPs: lbIPs, LoadBalancerSourceRanges: ranges,
				StickyMaxAgeSeconds: sticky, ExternalPolicyLocal: extLocal, InternalPolicyLocal: intLocal,
				Scheduler: svc.Annotations[SchedulerAnnotation],
			}
			if svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer {
				sp.NodePort = p.NodePort
			}
			if extLocal && svc.Spec.Type == v1.ServiceTypeLoadBalancer {
				sp.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
			}
			all := endpointsFor(slices, p, family, cfg.NodeName)
			emit(k, sp, selectUsable(all, false), selectUsable(all, true))
		}
	}
}

// endpointsFor collects the endpoints of one port in one family,
// deduplicated by address as upstream does for endpoints in several slices.
func endpointsFor(slices []*discoveryv1.EndpointSlice, sp v1.ServicePort, family v1.IPFamily, nodeName string) []Endpoint {
	want := discoveryv1.AddressTypeIPv4
	if family == v1.IPv6Protocol {
		want = discoveryv1.AddressTypeIPv6
	}
	proto := sp.Protocol
	if proto == "" {
		proto = v1.ProtocolTCP
	}
	n := 0
	for _, s := range slices {
		n += len(s.Endpoints)
	}
	out := make([]Endpoint, 0, n)
	// Duplicates are found by a scan for a Service's usual handful of
	// endpoints, by a map above that (a map per Service was a good part of
	// a first sync's allocations).
	var seen map[netip.AddrPort]int
	if n > dedupScanMax {
		seen = make(map[netip.AddrPort]int, n)
	}
	for _, s := range slices {
		if s.AddressType != want {
			continue
		}
		var port int32 = -1
		for _, p := range s.Ports {
			pp := v1.ProtocolTCP
			if p.Protocol != nil {
				pp = *p.Protocol
			}
			n := ""
			if p.Name != nil {
				n = *p.Name
			}
			if n == sp.Name && pp == proto && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			ip, err := netip.ParseAddr(e.Addresses[0])
			if err != nil {
				continue
			}
			ip = ip.Unmap()
			// A nil condition means "unknown", which the API defines as true
			// for ready and serving (serving defaults to ready), false for terminating.
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := ready
			if e.Conditions.Serving != nil {
				serving = *e.Conditions.Serving
			}
			terminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			ep := Endpoint{IP: ip, Port: port, Ready: ready, Serving: serving, Terminating: terminating}
			if e.NodeName != nil {
				ep.NodeName = *e.NodeName
				ep.IsLocal = nodeName != "" && *e.NodeName == nodeName
			}
			if e.Zone != nil {
				ep.Zone = *e.Zone
			}
			ap := netip.AddrPortFrom(ip, uint16(port))
			if i := indexOf(out, seen, ap); i >= 0 {
				// Prefer the better-conditioned copy (e.g. during a slice move).
				if ep.Ready && !out[i].Ready {
					out[i] = ep
				}
				continue
			}
			if seen != nil {
				seen[ap] = len(out)
			}
			out = append(out, ep)
		}
	}
	stdslices.SortFunc(out, func(a, b Endpoint) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return out
}

// dedupScanMax is the endpoint count up to which endpointsFor finds
// duplicates by scanning.
const dedupScanMax = 16

// indexOf is ap's index in out (seen indexes out when not nil), or -1.
func indexOf(out []Endpoint, seen map[netip.AddrPort]int, ap netip.AddrPort) int {
	if seen != nil {
		if i, ok := seen[ap]; ok {
			return i
		}
		return -1
	}
	for i := range out {
		if out[i].IP == ap.Addr() && uint16(out[i].Port) == ap.Port() {
			return i
		}
	}
	return -1
}

// selectUsable is upstream's CategorizeEndpoints rule: the ready endpoints,
// or, when there are none, the serving terminating ones (so a rolling update
// of the last Pods does not black-hole traffic). localOnly restricts both
// steps to this node's endpoints.
func selectUsable(all []Endpoint, localOnly bool) []Endpoint {
	// Counted first: the usual case (all ready, none local) then needs no
	// copy at all, or one of the right size.
	nReady, nLocal := 0, 0
	for _, e := range all {
		if e.Ready {
			nReady++
		}
		if e.IsLocal {
			nLocal++
		}
	}
	switch {
	case !localOnly && nReady == len(all):
		return all
	case localOnly && nLocal == 0:
		return nil
	}
	var ready, term []Endpoint
	if nReady > 0 {
		ready = make([]Endpoint, 0, nReady)
	}
	for _, e := range all {
		if localOnly && !e.IsLocal {
			continue
		}
		switch {
		case e.Ready:
			ready = append(ready, e)
		case e.Serving && e.Terminating:
			term = append(term, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return term
}

// ClusterEndpoints are the endpoints for traffic to the ClusterIP.
func (st *State) ClusterEndpoints(k Key) []Endpoint {
	if sp := st.Services[k]; sp != nil && sp.InternalPolicyLocal {
		return st.LocalEndpoints[k]
	}
	return st.Endpoints[k]
}

// ExternalEndpoints are the endpoints for NodePort, external IP and
// LoadBalancer traffic.
func (st *State) ExternalEndpoints(k Key) []Endpoint {
	if sp := st.Services[k]; sp != nil && sp.ExternalPolicyLocal {
		return st.LocalEndpoints[k]
	}
	return st.Endpoints[k]
}

func addrsOfFamily(ss []string, family v1.IPFamily) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		a = a.Unmap()
		if familyOf(a) == family {
			out = append(out, a)
		}
	}
	return out
}

func familyOf(a netip.Addr) v1.IPFamily {
	if a.Unmap().Is4() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}

// FamilyOf is the IP family of an address.
func FamilyOf(a netip.Addr) v1.IPFamily { return familyOf(a) }

// serves says whether family is one of fs (none means both).
func serves(fs []v1.IPFamily, family v1.IPFamily) bool {
	if len(fs) == 0 {
		return true
	}
	for _, f := range fs {
		if f == family {
			return true
		}
	}
	return false
}

func familySet(fs []v1.IPFamily) map[v1.IPFamily]bool {
	m := map[v1.IPFamily]bool{}
	for _, f := range fs {
		m[f] = true
	}
	if len(m) == 0 {
		m[v1.IPv4Protocol], m[v1.IPv6Protocol] = true, true
	}
	return m
}
