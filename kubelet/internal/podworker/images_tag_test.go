package podworker

import "testing"

func TestDefaultTag(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                    "busybox:latest",
		"busybox:1.37":               "busybox:1.37",
		"registry.k8s.io/pause:3.10": "registry.k8s.io/pause:3.10",
		"localhost:5000/x":           "localhost:5000/x:latest",
		"x@sha256:" + sixtyFourZeros: "x@sha256:" + sixtyFourZeros,
		"library/UPPER:bad":          "",
		"bad image":                  "",
	} {
		got, err := defaultTag(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("defaultTag(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

const sixtyFourZeros = "0000000000000000000000000000000000000000000000000000000000000000"
