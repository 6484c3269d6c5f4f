package criserver

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCheckImageMount(t *testing.T) {
	img := &runtime.ImageSpec{Image: "busybox"}
	for _, tc := range []struct {
		name    string
		m       *runtime.Mount
		wantErr bool
	}{
		{"read-only", &runtime.Mount{ContainerPath: "/v", Readonly: true, Image: img}, false},
		{"read-write", &runtime.Mount{ContainerPath: "/v", Image: img}, true},
		{"with host path", &runtime.Mount{ContainerPath: "/v", Readonly: true, HostPath: "/h", Image: img}, true},
		{"no image name", &runtime.Mount{ContainerPath: "/v", Readonly: true, Image: &runtime.ImageSpec{}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkImageMount(0, tc.m)
			if tc.wantErr != errors.Is(err, errInvalidSpec) || (!tc.wantErr && err != nil) {
				t.Errorf("checkImageMount = %v, want error %t", err, tc.wantErr)
			}
		})
	}
}

func TestImageSubPath(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc", "ssl"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr", filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/ssl", filepath.Join(root, "in")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sub, want string
		wantErr   bool
	}{
		{sub: "etc", want: filepath.Join(root, "etc")},
		{sub: "../../etc", want: filepath.Join(root, "etc")}, // cleaned against the image root
		{sub: "in", want: filepath.Join(root, "etc", "ssl")},
		{sub: "missing", wantErr: true},
		{sub: "out", wantErr: true}, // a symlink leading out of the image
	} {
		got, err := imageSubPath(root, tc.sub)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("imageSubPath(%q) = %q, %v; want %q, error %t", tc.sub, got, err, tc.want, tc.wantErr)
		}
	}
}
