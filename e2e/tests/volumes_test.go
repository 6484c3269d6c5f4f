package tests

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

// TestVolumes mounts every non-persistent volume kind into one Pod whose
// script prints what it sees as key=value lines, then compares the whole set.
func TestVolumes(t *testing.T) {
	t.Parallel()
	f := framework.New(t)
	cm := &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "vol-cm"},
		Data:       map[string]string{"greeting": "hello", "other": "world"},
	}
	sec := &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vol-secret"},
		Data:       map[string][]byte{"password": []byte("s3cr3t")},
	}
	if _, err := f.Client.CoreV1().ConfigMaps(f.Namespace).Create(f.Ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Client.CoreV1().Secrets(f.Namespace).Create(f.Ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cmRef := v1.LocalObjectReference{Name: "vol-cm"}
	downward := []v1.DownwardAPIVolumeFile{
		{Path: "name", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
		{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		{Path: "mem_limit_mi", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "c", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
	}
	script := `
for f in /cm/greeting /cm/renamed /secret/password /downward/name /downward/labels /downward/mem_limit_mi \
         /projected/cm-greeting /projected/password /projected/podname /projected/token; do
  echo "$f=$(cat $f)"
done
[ -e /cm/other ] && echo "/cm/other=present-but-not-selected"
set -- $(ls -lL /secret/password); echo "secret-mode=$1"
echo scratch-data > /scratch/file && echo "/scratch/file=$(cat /scratch/file)"
echo mem-data > /mem/file && echo "/mem/file=$(cat /mem/file)"
while read dev mnt fs rest; do
  case "$mnt" in /mem|/scratch) echo "fstype $mnt=$fs";; esac
done < /proc/mounts
`
	pod := framework.BusyboxPod("volumes", v1.RestartPolicyNever, script)
	pod.Labels = map[string]string{"app": "volumes"}
	pod.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}
	pod.Spec.Volumes = []v1.Volume{
		{Name: "cm", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
			LocalObjectReference: cmRef,
			Items:                []v1.KeyToPath{{Key: "greeting", Path: "greeting"}, {Key: "greeting", Path: "renamed"}},
		}}},
		{Name: "secret", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "vol-secret", DefaultMode: ptr.To[int32](0o400)}}},
		{Name: "downward", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: downward}}},
		{Name: "projected", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: cmRef, Items: []v1.KeyToPath{{Key: "greeting", Path: "cm-greeting"}}}},
			{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "vol-secret"}}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "podname", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
			{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token", Audience: "e2e-audience", ExpirationSeconds: ptr.To[int64](3600)}},
		}}}},
		{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}},
	}
	for _, v := range pod.Spec.Volumes {
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, v1.VolumeMount{Name: v.Name, MountPath: "/" + v.Name})
	}
	f.CreatePod(pod)
	f.WaitForPodPhase("volumes", v1.PodSucceeded)
	logs, err := f.Logs("volumes", "c", false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(logs, "\n"), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	token := got["/projected/token"]
	delete(got, "/projected/token")
	if strings.Count(token, ".") != 2 {
		t.Errorf("projected token %q is not a JWT", token)
	}
	want := map[string]string{
		"/cm/greeting":           "hello",
		"/cm/renamed":            "hello",
		"/secret/password":       "s3cr3t",
		"secret-mode":            "-r--------",
		"/downward/name":         "volumes",
		"/downward/labels":       `app="volumes"`,
		"/downward/mem_limit_mi": "64",
		"/projected/cm-greeting": "hello",
		"/projected/password":    "s3cr3t",
		"/projected/podname":     "volumes",
		"/scratch/file":          "scratch-data",
		"/mem/file":              "mem-data",
		"fstype /mem":            "tmpfs",
	}
	// The disk-backed emptyDir's filesystem is the node's; only its presence is fixed.
	if _, ok := got["fstype /scratch"]; !ok {
		t.Errorf("emptyDir /scratch is not a mount of its own")
	}
	delete(got, "fstype /scratch")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("what the container saw (-want +got):\n%s\nfull log:\n%s", diff, logs)
	}
}
