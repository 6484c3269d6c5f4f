package objectcache

import (
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pods registers what each Pod references with the caches, as upstream's
// pod manager does on every Pod it adds, updates and removes.
type Pods struct {
	ConfigMaps *Cache[*v1.ConfigMap]
	Secrets    *Cache[*v1.Secret]

	mu   sync.Mutex
	pods map[types.UID]refs
}

// refs is what one Pod references, each list sorted and without repeats.
type refs struct {
	namespace           string
	configMaps, secrets []string
}

func (r refs) equal(o refs) bool {
	return r.namespace == o.namespace && slices.Equal(r.configMaps, o.configMaps) && slices.Equal(r.secrets, o.secrets)
}

// Register (re)registers a Pod: objects it newly references start being
// watched before those it no longer references are released, so an object
// kept across an update keeps its watch.
func (p *Pods) Register(pod *v1.Pod) {
	now := refs{namespace: pod.Namespace, configMaps: ConfigMapNames(pod), secrets: SecretNames(pod)}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, had := p.pods[pod.UID]
	if had && old.equal(now) {
		return
	}
	p.add(now, pod.UID)
	if had {
		p.release(old, pod.UID)
	}
	if p.pods == nil {
		p.pods = map[types.UID]refs{}
	}
	p.pods[pod.UID] = now
}

// Unregister releases everything a Pod referenced.
func (p *Pods) Unregister(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.pods[uid]; ok {
		p.release(old, uid)
		delete(p.pods, uid)
	}
}

func (p *Pods) add(r refs, uid types.UID) {
	for _, n := range r.configMaps {
		p.ConfigMaps.AddReference(r.namespace, n, uid)
	}
	for _, n := range r.secrets {
		p.Secrets.AddReference(r.namespace, n, uid)
	}
}

func (p *Pods) release(r refs, uid types.UID) {
	for _, n := range r.configMaps {
		p.ConfigMaps.DeleteReference(r.namespace, n, uid)
	}
	for _, n := range r.secrets {
		p.Secrets.DeleteReference(r.namespace, n, uid)
	}
}

// allContainers visits the Pod's init, regular and ephemeral containers'
// env sources.
func allContainers(pod *v1.Pod, f func(env []v1.EnvVar, from []v1.EnvFromSource)) {
	for _, c := range pod.Spec.InitContainers {
		f(c.Env, c.EnvFrom)
	}
	for _, c := range pod.Spec.Containers {
		f(c.Env, c.EnvFrom)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		f(c.Env, c.EnvFrom)
	}
}

func sortedUnique(s []string) []string {
	s = slices.DeleteFunc(s, func(n string) bool { return n == "" })
	slices.Sort(s)
	return slices.Compact(s)
}

// ConfigMapNames are the ConfigMaps a Pod's volumes and env read (the
// volume types this kubelet supports; upstream's VisitPodConfigmapNames).
func ConfigMapNames(pod *v1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			out = append(out, v.ConfigMap.Name)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					out = append(out, s.ConfigMap.Name)
				}
			}
		}
	}
	allContainers(pod, func(env []v1.EnvVar, from []v1.EnvFromSource) {
		for _, e := range from {
			if e.ConfigMapRef != nil {
				out = append(out, e.ConfigMapRef.Name)
			}
		}
		for _, e := range env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				out = append(out, e.ValueFrom.ConfigMapKeyRef.Name)
			}
		}
	})
	return sortedUnique(out)
}

// SecretNames are the Secrets a Pod's volumes, env and image pulls read
// (upstream's VisitPodSecretNames, for the volume types supported here).
func SecretNames(pod *v1.Pod) []string {
	var out []string
	for _, s := range pod.Spec.ImagePullSecrets {
		out = append(out, s.Name)
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.Secret != nil:
			out = append(out, v.Secret.SecretName)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					out = append(out, s.Secret.Name)
				}
			}
		}
	}
	allContainers(pod, func(env []v1.EnvVar, from []v1.EnvFromSource) {
		for _, e := range from {
			if e.SecretRef != nil {
				out = append(out, e.SecretRef.Name)
			}
		}
		for _, e := range env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	})
	return sortedUnique(out)
}
