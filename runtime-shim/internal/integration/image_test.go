package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testImages builds an OCI archive holding two images from the host's
// busybox and the libraries it needs: a busybox image and a "pause" image
// that just sleeps. No registry or download is involved.
func testImages(t *testing.T) []byte {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox on the host to build test images")
	}
	out, err := exec.Command("ldd", bb).Output()
	if err != nil && !strings.Contains(string(out), "statically") {
		t.Fatalf("ldd busybox: %v", err)
	}
	files := map[string]string{"/bin/busybox": bb}
	for _, m := range regexp.MustCompile(`(/\S+)`).FindAllString(string(out), -1) {
		files[m] = m
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := map[string]bool{}
	mkdir := func(d string) {
		for p := d; p != "/" && p != "."; p = filepath.Dir(p) {
			if dirs[p] {
				break
			}
			dirs[p] = true
		}
	}
	for dst := range files {
		mkdir(filepath.Dir(dst))
	}
	for _, d := range []string{"/etc", "/tmp", "/proc", "/dev", "/sys"} {
		mkdir(d)
	}
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sortByDepth(dl)
	for _, d := range dl {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		must(t, tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: mode}))
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		must(t, tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(b))}))
		_, err = tw.Write(b)
		must(t, err)
	}
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "ls", "id", "hostname"} {
		must(t, tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeLink, Linkname: "bin/busybox", Mode: 0o755}))
	}
	must(t, tw.Close())

	var arch bytes.Buffer
	aw := tar.NewWriter(&arch)
	blob := func(b []byte) map[string]any {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		must(t, aw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.TrimPrefix(d, "sha256:"), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}))
		_, err := aw.Write(b)
		must(t, err)
		return map[string]any{"digest": d, "size": len(b)}
	}
	ld := blob(layer.Bytes())
	ld["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
	var manifests []map[string]any
	for name, cfg := range map[string]map[string]any{
		testBusybox: {"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin"}},
		testPause:   {"Entrypoint": []string{"/bin/sleep", "2147483647"}, "Env": []string{"PATH=/bin"}},
	} {
		cb, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": cfg,
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{ld["digest"].(string)}}})
		cd := blob(cb)
		cd["mediaType"] = "application/vnd.oci.image.config.v1+json"
		mb, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": cd, "layers": []any{ld}})
		md := blob(mb)
		md["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
		md["annotations"] = map[string]string{"io.containerd.image.name": name}
		md["platform"] = map[string]string{"architecture": "amd64", "os": "linux"}
		manifests = append(manifests, md)
	}
	ib, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
	for name, b := range map[string][]byte{"index.json": ib, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		must(t, aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}))
		_, err := aw.Write(b)
		must(t, err)
	}
	must(t, aw.Close())
	return arch.Bytes()
}

func sortByDepth(l []string) {
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if strings.Count(l[j], "/") < strings.Count(l[i], "/") || (strings.Count(l[j], "/") == strings.Count(l[i], "/") && l[j] < l[i]) {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
