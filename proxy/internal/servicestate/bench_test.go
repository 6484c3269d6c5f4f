package servicestate

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			var svcs []*v1.Service
			var slices []*discoveryv1.EndpointSlice
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("s%d", i)
				ip := fmt.Sprintf("10.96.%d.%d", i>>8, i&255)
				svcs = append(svcs, svc(name, func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = ip, []string{ip} }))
				var eps []ep
				for j := 0; j < 10; j++ {
					eps = append(eps, ep{fmt.Sprintf("10.%d.%d.%d", 100+j, i>>8, i&255), "n2", true, true, false})
				}
				slices = append(slices, slice(name+"-1", name, discoveryv1.AddressTypeIPv4, 8080, eps...))
			}
			cfg := Config{NodeName: "n1", Families: []v1.IPFamily{v1.IPv4Protocol}}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if st := Build(svcs, slices, cfg); len(st.Services) != n {
					b.Fatalf("%d services", len(st.Services))
				}
			}
		})
	}
}
