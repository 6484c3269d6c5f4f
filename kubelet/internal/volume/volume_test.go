package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
)

type fakeSources struct {
	cms      map[string]*v1.ConfigMap
	secrets  map[string]*v1.Secret
	tokens   int
	reqs     []authv1.TokenRequestSpec
	tokenErr error
}

func (f *fakeSources) ConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	if cm, ok := f.cms[ns+"/"+name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f *fakeSources) Secret(_ context.Context, ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func (f *fakeSources) Token(_ context.Context, _, _ string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	if f.tokenErr != nil {
		return nil, f.tokenErr
	}
	f.tokens++
	f.reqs = append(f.reqs, req.Spec)
	out := req.DeepCopy()
	out.Status.Token = "a.b." + string(rune('0'+f.tokens))
	out.Status.ExpirationTimestamp = metav1.NewTime(now.Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))
	return out, nil
}

var now = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

type fakeMounter struct{ tmpfs, unmounted []string }

func (m *fakeMounter) MountTmpfs(p string, _ int64) error { m.tmpfs = append(m.tmpfs, p); return nil }
func (m *fakeMounter) UnmountUnder(d string) error        { m.unmounted = append(m.unmounted, d); return nil }

// readVolume returns what a container would see: path -> content and mode.
func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.Mode().Perm().String() + " " + string(b)
	}
	return out
}

func TestSetup(t *testing.T) {
	root := t.TempDir()
	src := &fakeSources{
		cms:     map[string]*v1.ConfigMap{"ns/cm": {Data: map[string]string{"greeting": "hello", "other": "world"}}},
		secrets: map[string]*v1.Secret{"ns/sec": {Data: map[string][]byte{"password": []byte("s3cr3t")}}},
	}
	mnt := &fakeMounter{}
	m := &Manager{RootDir: root, Src: src, Mount: mnt, Now: func() time.Time { return now }}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"app": "x", "b": "y"}},
		Spec: v1.PodSpec{ServiceAccountName: "default", Containers: []v1.Container{{Name: "c",
			Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}}},
			Volumes: []v1.Volume{
				{Name: "cm", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cm"},
					Items: []v1.KeyToPath{{Key: "greeting", Path: "greeting"}, {Key: "greeting", Path: "renamed"}}}}},
				{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr.To[int32](0o400)}}},
				{Name: "dw", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{
					{Path: "name", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
					{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "mem", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
				}}}},
				{Name: "proj", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644), Sources: []v1.VolumeProjection{
					{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
					{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "missing"}, Optional: ptr.To(true)}},
				}}}},
				{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}},
			}}}
	got, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	vd := func(plugin, name string) string { return Dir(root, "u1", plugin, name) }
	want := map[string]containerconfig.HostVolume{
		"cm":   {Path: vd("kubernetes.io~configmap", "cm"), ReadOnly: true},
		"sec":  {Path: vd("kubernetes.io~secret", "sec"), ReadOnly: true},
		"dw":   {Path: vd("kubernetes.io~downward-api", "dw"), ReadOnly: true},
		"proj": {Path: vd("kubernetes.io~projected", "proj"), ReadOnly: true},
		"mem":  {Path: vd("kubernetes.io~empty-dir", "mem")},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("volumes (-want +got):\n%s", d)
	}
	files := map[string]map[string]string{}
	for n, hv := range got {
		files[n] = readVolume(t, hv.Path)
	}
	wantFiles := map[string]map[string]string{
		"cm":   {"greeting": "-rw-r--r-- hello", "renamed": "-rw-r--r-- hello"},
		"sec":  {"password": "-r-------- s3cr3t"},
		"dw":   {"name": "-rw-r--r-- p", "labels": "-rw-r--r-- app=\"x\"\nb=\"y\"", "mem": "-rw-r--r-- 64"},
		"proj": {"token": "-rw-r--r-- a.b.1"},
		"mem":  {},
	}
	if d := cmp.Diff(wantFiles, files); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	// Memory emptyDirs, and secrets, tokens and downward API files as upstream; configMaps stay on disk.
	wantTmpfs := []string{vd("kubernetes.io~empty-dir", "mem"), vd("kubernetes.io~secret", "sec"),
		vd("kubernetes.io~downward-api", "dw"), vd("kubernetes.io~projected", "proj")}
	sort.Strings(wantTmpfs)
	sort.Strings(mnt.tmpfs)
	if d := cmp.Diff(wantTmpfs, mnt.tmpfs); d != "" {
		t.Errorf("tmpfs mounts (-want +got):\n%s", d)
	}
	wantReq := []authv1.TokenRequestSpec{{ExpirationSeconds: ptr.To[int64](3607),
		BoundObjectRef: &authv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: "p", UID: "u1"}}}
	if d := cmp.Diff(wantReq, src.reqs); d != "" {
		t.Errorf("token requests (-want +got):\n%s", d)
	}

	// A later sync: a changed ConfigMap shows, the token is reused until 80% of its TTL.
	src.cms["ns/cm"] = &v1.ConfigMap{Data: map[string]string{"greeting": "bye"}}
	if _, err := m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"greeting": "-rw-r--r-- bye", "renamed": "-rw-r--r-- bye"}, readVolume(t, got["cm"].Path)); d != "" {
		t.Errorf("updated configmap (-want +got):\n%s", d)
	}
	if src.tokens != 1 {
		t.Errorf("token requested %d times before its refresh time, want 1", src.tokens)
	}
	m.Now = func() time.Time { return now.Add(49 * time.Minute) } // past 80% of 3607 s
	if _, err := m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"token": "-rw-r--r-- a.b.2"}, readVolume(t, got["proj"].Path)); d != "" {
		t.Errorf("refreshed token (-want +got):\n%s", d)
	}
	entries, _ := os.ReadDir(got["cm"].Path)
	if len(entries) != 4 { // ..data, one timestamped dir, two links
		t.Errorf("old payload directories left behind: %v", entries)
	}

	if err := m.Teardown("u1"); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{filepath.Join(root, "pods", "u1")}, mnt.unmounted); d != "" {
		t.Errorf("unmounted (-want +got):\n%s", d)
	}
}

func TestSetupMissingSource(t *testing.T) {
	m := &Manager{RootDir: t.TempDir(), Src: &fakeSources{}, Mount: &fakeMounter{}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: v1.PodSpec{Volumes: []v1.Volume{
		{Name: "cm", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "nope"}}}},
		{Name: "opt", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "nope", Optional: ptr.To(true)}}},
		{Name: "pvc", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "x"}}},
	}}}
	_, err := m.Setup(context.Background(), pod)
	if !errors.Is(err, ErrSource) || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrSource and ErrUnsupported", err)
	}
	if _, serr := os.Stat(Dir(m.RootDir, "u1", "kubernetes.io~secret", "opt")); serr != nil {
		t.Errorf("an absent optional secret should still be an (empty) volume: %v", serr)
	}
}

// TestTokenRefused: a refused token request fails the volume with
// upstream's wording, so both kubelets' FailedMount Events read the same.
func TestTokenRefused(t *testing.T) {
	refused := apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, "default",
		errors.New("node requested token bound to a pod scheduled on a different node"))
	m := &Manager{RootDir: t.TempDir(), Src: &fakeSources{tokenErr: refused}, Mount: &fakeMounter{}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: v1.PodSpec{
		ServiceAccountName: "default", Volumes: []v1.Volume{{Name: "kube-api-access-x", VolumeSource: v1.VolumeSource{
			Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{{ServiceAccountToken: &v1.ServiceAccountTokenProjection{
				Path: "token", ExpirationSeconds: ptr.To[int64](3607)}}}}}}}}}
	_, err := m.Setup(context.Background(), pod)
	if !errors.Is(err, ErrSource) || !errors.Is(err, refused) {
		t.Errorf("err = %v, want ErrSource wrapping the API error", err)
	}
	want := `MountVolume.SetUp failed for volume "kube-api-access-x" : failed to fetch token: serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node`
	if err == nil || err.Error() != want {
		t.Errorf("message\n got %v\nwant %s", err, want)
	}
}

func TestValidPath(t *testing.T) {
	for p, ok := range map[string]bool{"a": true, "a/b": true, "../x": false, "/abs": false, "a/../../b": false, "..data": false, "": false} {
		if err := validPath(p); (err == nil) != ok {
			t.Errorf("validPath(%q) = %v, want ok=%t", p, err, ok)
		}
	}
}
