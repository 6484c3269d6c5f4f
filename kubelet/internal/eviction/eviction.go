// Package eviction observes the node's eviction signals against the hard
// thresholds (evictionHard) as upstream's eviction manager does, for the
// Node's pressure conditions and for admission. It does not evict running
// Pods: that part of upstream's manager is not built here.
package eviction

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/clock"
)

// Signals upstream names in evictionHard.
const (
	MemoryAvailable   = "memory.available"
	NodeFsAvailable   = "nodefs.available"
	NodeFsInodesFree  = "nodefs.inodesFree"
	ImageFsAvailable  = "imagefs.available"
	ImageFsInodesFree = "imagefs.inodesFree"
	PIDAvailable      = "pid.available"
)

// DefaultHard is upstream's evictionHard default on Linux.
var DefaultHard = map[string]string{MemoryAvailable: "100Mi", NodeFsAvailable: "10%", NodeFsInodesFree: "5%",
	ImageFsAvailable: "15%", ImageFsInodesFree: "5%"}

// conditionOf is the Node condition each signal drives.
var conditionOf = map[string]v1.NodeConditionType{
	MemoryAvailable: v1.NodeMemoryPressure, NodeFsAvailable: v1.NodeDiskPressure, NodeFsInodesFree: v1.NodeDiskPressure,
	ImageFsAvailable: v1.NodeDiskPressure, ImageFsInodesFree: v1.NodeDiskPressure, PIDAvailable: v1.NodePIDPressure,
}

// Observation is one signal's available amount and the capacity a
// percentage threshold is taken of.
type Observation struct {
	Available, Capacity int64
}

// Observer reads the signals; an interface so tests need no host.
type Observer interface {
	Observe(ctx context.Context) (map[string]Observation, error)
}

// Threshold is one parsed evictionHard entry: a quantity, or a percentage
// of the signal's capacity.
type Threshold struct {
	signal  string
	value   *resource.Quantity
	percent float64
}

// ParseThresholds reads evictionHard ("100Mi", "10%"); nil is upstream's
// default. An unknown signal or a bad value is an error naming it.
func ParseThresholds(hard map[string]string) ([]Threshold, error) {
	if hard == nil {
		hard = DefaultHard
	}
	var out []Threshold
	for sig, val := range hard {
		if _, ok := conditionOf[sig]; !ok {
			return nil, fmt.Errorf("evictionHard: unsupported eviction signal %s", sig)
		}
		t := Threshold{signal: sig}
		if pct, ok := strings.CutSuffix(val, "%"); ok {
			var f float64
			if _, err := fmt.Sscanf(pct, "%g", &f); err != nil || f < 0 || f > 100 {
				return nil, fmt.Errorf("evictionHard: %s: invalid percentage %q", sig, val)
			}
			t.percent = f / 100
		} else {
			q, err := resource.ParseQuantity(val)
			if err != nil {
				return nil, fmt.Errorf("evictionHard: %s: %w", sig, err)
			}
			if q.Sign() < 0 {
				return nil, fmt.Errorf("evictionHard: %s: negative threshold %q", sig, val)
			}
			t.value = &q
		}
		out = append(out, t)
	}
	return out, nil
}

// Manager keeps the node's pressure conditions: a condition holds while a
// threshold of its signals is crossed and for TransitionPeriod after
// (evictionPressureTransitionPeriod), so it does not flap.
type Manager struct {
	Thresholds       []Threshold
	Observer         Observer
	TransitionPeriod time.Duration
	Clock            clock.Clock

	mu       sync.Mutex
	lastSeen map[v1.NodeConditionType]time.Time
}

// Synchronize observes the signals once and returns the conditions that
// hold now.
func (m *Manager) Synchronize(ctx context.Context) ([]v1.NodeConditionType, error) {
	obs, err := m.Observer.Observe(ctx)
	now := m.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastSeen == nil {
		m.lastSeen = map[v1.NodeConditionType]time.Time{}
	}
	for _, t := range m.Thresholds {
		o, ok := obs[t.signal]
		if !ok {
			continue // not observable on this node (no pid limit read, say)
		}
		limit := int64(0)
		if t.value != nil {
			limit = t.value.Value()
		} else {
			limit = int64(t.percent * float64(o.Capacity))
		}
		if o.Available < limit {
			m.lastSeen[conditionOf[t.signal]] = now
		}
	}
	return m.conditionsLocked(now), err
}

// Conditions are the pressure conditions as of the last Synchronize.
func (m *Manager) Conditions() []v1.NodeConditionType {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conditionsLocked(m.Clock.Now())
}

func (m *Manager) conditionsLocked(now time.Time) []v1.NodeConditionType {
	var out []v1.NodeConditionType
	for _, c := range []v1.NodeConditionType{v1.NodeMemoryPressure, v1.NodeDiskPressure, v1.NodePIDPressure} {
		if seen, ok := m.lastSeen[c]; ok && now.Sub(seen) < m.TransitionPeriod {
			out = append(out, c)
		}
	}
	return out
}
