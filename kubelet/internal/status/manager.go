package status

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
	"github.com/nodesuite/nodesuite/kubelet/internal/podsource"
)

// Manager writes Pod statuses to the API server, as upstream's status
// manager does: a strategic merge patch with the Pod UID as precondition,
// skipped when nothing changed, and the final delete once nothing runs.
type Manager struct {
	Client apiclient.Interface // nil when standalone

	mu   sync.Mutex
	last map[types.UID]v1.PodStatus
}

// Last returns the status last written for the Pod, if any.
func (m *Manager) Last(uid types.UID) (v1.PodStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.last[uid]
	return *s.DeepCopy(), ok
}

// Forget drops the cache of a Pod that is gone.
func (m *Manager) Forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.last, uid)
}

// Set writes st as pod's status unless it equals what was last written.
func (m *Manager) Set(ctx context.Context, pod *v1.Pod, st v1.PodStatus) error {
	m.mu.Lock()
	if m.last == nil {
		m.last = map[types.UID]v1.PodStatus{}
	}
	prev, ok := m.last[pod.UID]
	m.mu.Unlock()
	if ok && apiequality.Semantic.DeepEqual(prev, st) {
		return nil
	}
	target := pod
	if m.Client != nil && podsource.IsStatic(pod) {
		// A static Pod's status goes to its mirror Pod, as upstream.
		mirror, err := m.Client.Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || mirror.Annotations["kubernetes.io/config.mirror"] != pod.Annotations["kubernetes.io/config.hash"] {
			target = nil // no mirror yet: written on a later sync
		} else {
			target = mirror
		}
	}
	if m.Client != nil && target != nil {
		pod := target
		oldData, err := json.Marshal(v1.Pod{Status: pod.Status})
		if err != nil {
			return err
		}
		newData, err := json.Marshal(v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: pod.UID}, Status: st})
		if err != nil {
			return err
		}
		patch, err := strategicpatch.CreateTwoWayMergePatch(oldData, newData, v1.Pod{})
		if err != nil {
			return fmt.Errorf("status patch: %w", err)
		}
		if _, err := m.Client.Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch,
			metav1.PatchOptions{}, "status"); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("patch status of %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	if m.Client != nil && target == nil {
		return nil // not cached, so the next sync tries again
	}
	m.mu.Lock()
	m.last[pod.UID] = *st.DeepCopy()
	m.mu.Unlock()
	return nil
}

// FinishDeletion deletes the Pod with grace 0 and a UID precondition once
// nothing of it runs, so the API server removes the object.
func (m *Manager) FinishDeletion(ctx context.Context, pod *v1.Pod) error {
	if m.Client == nil || podsource.IsStatic(pod) {
		return nil
	}
	zero := int64(0)
	uid := pod.UID
	err := m.Client.Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("finish deletion of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
