package objectcache

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

func TestReferencedNames(t *testing.T) {
	pod := &v1.Pod{Spec: v1.PodSpec{
		ImagePullSecrets: []v1.LocalObjectReference{{Name: "pull"}},
		Volumes: []v1.Volume{
			{Name: "a", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cm-vol"}}}},
			{Name: "b", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "s-vol"}}},
			{Name: "c", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
				{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "s-proj"}}},
				{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token"}},
			}}}},
			{Name: "d", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		},
		InitContainers: []v1.Container{{Name: "i", EnvFrom: []v1.EnvFromSource{
			{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cm-init"}}},
			{SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "s-init"}}},
		}}},
		Containers: []v1.Container{{Name: "c", Env: []v1.EnvVar{
			{Name: "A", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cm-vol"}, Key: "k"}}},
			{Name: "B", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "s-env"}, Key: "k"}}},
			{Name: "C", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "D", Value: "x"},
		}}},
		EphemeralContainers: []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "e",
			EnvFrom: []v1.EnvFromSource{{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cm-eph"}}}}}}},
	}}
	got := map[string][]string{"configMaps": ConfigMapNames(pod), "secrets": SecretNames(pod)}
	want := map[string][]string{
		"configMaps": {"cm-eph", "cm-init", "cm-vol", "kube-root-ca.crt"},
		"secrets":    {"pull", "s-env", "s-init", "s-proj", "s-vol"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("names (-want +got):\n%s", d)
	}
}

// idleCache watches nothing real: every object lists empty and its watch
// stays quiet; only the references matter here.
func idleCache[T runtime.Object](t *testing.T, newObj func() T, list runtime.Object) *Cache[T] {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &Cache[T]{
		ListWatch: func(string, string) cache.ListerWatcher {
			return unsupportedWatchList{&cache.ListWatch{
				ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) { return list.DeepCopyObject(), nil },
				WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
					return watch.NewFake(), nil
				},
			}}
		},
		Fetch:    func(context.Context, string, string) (T, error) { var z T; return z, errors.New("not expected") },
		New:      newObj,
		Resource: v1.Resource("x"),
	}
	c.Start(ctx)
	return c
}

// references is the cache's state: by object, the Pods referencing it.
func references[T runtime.Object](c *Cache[T]) map[string]map[types.UID]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]map[types.UID]int{}
	for k, it := range c.items {
		out[k.namespace+"/"+k.name] = it.refs
	}
	return out
}

func TestPodsRegister(t *testing.T) {
	cmPod := func(uid types.UID, ns string, names ...string) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid, Namespace: ns}}
		for _, n := range names {
			p.Spec.Volumes = append(p.Spec.Volumes, v1.Volume{Name: n, VolumeSource: v1.VolumeSource{
				ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: n}}}})
		}
		return p
	}
	type state map[string]map[types.UID]int
	p := &Pods{
		ConfigMaps: idleCache(t, func() *v1.ConfigMap { return &v1.ConfigMap{} }, &v1.ConfigMapList{}),
		Secrets:    idleCache(t, func() *v1.Secret { return &v1.Secret{} }, &v1.SecretList{}),
	}
	steps := []struct {
		name string
		do   func()
		want state
	}{
		{"first pod", func() { p.Register(cmPod("a", "ns", "x", "y")) },
			state{"ns/x": {"a": 1}, "ns/y": {"a": 1}}},
		{"same pod again", func() { p.Register(cmPod("a", "ns", "x", "y")) },
			state{"ns/x": {"a": 1}, "ns/y": {"a": 1}}},
		{"second pod shares x", func() { p.Register(cmPod("b", "ns", "x")) },
			state{"ns/x": {"a": 1, "b": 1}, "ns/y": {"a": 1}}},
		{"other namespace", func() { p.Register(cmPod("c", "other", "x")) },
			state{"ns/x": {"a": 1, "b": 1}, "ns/y": {"a": 1}, "other/x": {"c": 1}}},
		{"update drops y, adds z", func() { p.Register(cmPod("a", "ns", "x", "z")) },
			state{"ns/x": {"a": 1, "b": 1}, "ns/z": {"a": 1}, "other/x": {"c": 1}}},
		{"remove a", func() { p.Unregister("a") },
			state{"ns/x": {"b": 1}, "other/x": {"c": 1}}},
		{"remove unknown", func() { p.Unregister("nobody") },
			state{"ns/x": {"b": 1}, "other/x": {"c": 1}}},
		{"remove b and c", func() { p.Unregister("b"); p.Unregister("c") }, state{}},
	}
	for _, s := range steps {
		s.do()
		if d := cmp.Diff(s.want, state(references(p.ConfigMaps))); d != "" {
			t.Fatalf("%s: references (-want +got):\n%s", s.name, d)
		}
	}
	if n := len(references(p.Secrets)); n != 0 {
		t.Errorf("secrets referenced: %d, want 0", n)
	}
}
