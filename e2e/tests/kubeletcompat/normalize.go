// Package kubeletcompat holds the tests that compare our kubelet with the
// upstream kubelet on the local cluster, swapping one for the other on the
// running node (nodesuite-cluster swap-kubelet): restart and switch without
// container restarts, and the status and Events each reports for the same
// Pods. They change the cluster's kubelet, so they run only when asked
// (NODESUITE_KUBELET_COMPAT=1, `make test-kubelet-compat`), under the
// cluster lock.
package kubeletcompat

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Placeholders the normalization writes in place of values that differ
// between two runs by nature. A field that was empty stays empty, so a
// kubelet that leaves out an IP or a time still differs.
const (
	PlaceholderIP = "<ip>"
	PlaceholderID = "<container-id>"
)

// Stamp replaces every time that was set.
var Stamp = metav1.NewTime(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))

// Names are the per-run strings normalization replaces in messages.
type Names struct {
	Namespace string
	PodUIDs   []string
}

func (n Names) replacer() *strings.Replacer {
	var pairs []string
	for _, u := range n.PodUIDs {
		pairs = append(pairs, u, "<uid>")
	}
	if n.Namespace != "" {
		pairs = append(pairs, n.Namespace, "<ns>")
	}
	return strings.NewReplacer(pairs...)
}

// backOffDelay is the delay in CrashLoopBackOff / image back-off messages
// ("back-off 20s restarting failed container=..."), which depends on how
// many restarts happened before the snapshot.
var backOffDelay = regexp.MustCompile(`back-off \d+(m\d+)?s`)

// NormalizeOptions say which timing-dependent values a Pod's comparison
// ignores.
type NormalizeOptions struct {
	// RestartsAtLeast caps restart counts: a crash-looping Pod is settled at
	// >= this many restarts, and how far past it depends on timing.
	RestartsAtLeast int32
}

// NormalizeStatus returns a copy of s with what differs between runs by
// nature replaced: IPs, container IDs, times (set ones become Stamp), the
// run's namespace and UIDs in messages, back-off delays in messages, the
// random suffix of the kube-api-access volume, the values (not the
// presence) of the Pod-level status.resources and, when o says so, restart
// counts above o.RestartsAtLeast.
func NormalizeStatus(s v1.PodStatus, n Names, o NormalizeOptions) v1.PodStatus {
	out := *s.DeepCopy()
	r := n.replacer()
	msg := func(m string) string { return backOffDelay.ReplaceAllString(r.Replace(m), "back-off <delay>") }
	ip := func(s string) string {
		if s == "" {
			return ""
		}
		return PlaceholderIP
	}
	stamp := func(t *metav1.Time) {
		if t != nil && !t.IsZero() {
			*t = Stamp
		}
	}
	out.PodIP, out.HostIP = ip(out.PodIP), ip(out.HostIP)
	for i := range out.PodIPs {
		out.PodIPs[i].IP = ip(out.PodIPs[i].IP)
	}
	for i := range out.HostIPs {
		out.HostIPs[i].IP = ip(out.HostIPs[i].IP)
	}
	if out.StartTime != nil {
		t := Stamp
		out.StartTime = &t
	}
	if out.Resources != nil {
		// The Pod-level resources the kubelet reads back from the Pod's
		// cgroup: whether they are still readable when the snapshot is
		// taken (a finished Pod's cgroup goes away) is timing, so only
		// their presence is compared.
		out.Resources = &v1.ResourceRequirements{}
	}
	out.Message = msg(out.Message)
	for i := range out.Conditions {
		c := &out.Conditions[i]
		stamp(&c.LastProbeTime)
		stamp(&c.LastTransitionTime)
		c.Message = msg(c.Message)
	}
	for _, list := range [][]v1.ContainerStatus{out.InitContainerStatuses, out.ContainerStatuses, out.EphemeralContainerStatuses} {
		for i := range list {
			cs := &list[i]
			if cs.ContainerID != "" {
				cs.ContainerID = PlaceholderID
			}
			if o.RestartsAtLeast > 0 && cs.RestartCount > o.RestartsAtLeast {
				cs.RestartCount = o.RestartsAtLeast
			}
			for j := range cs.VolumeMounts {
				cs.VolumeMounts[j].Name = apiAccessVolume.ReplaceAllString(cs.VolumeMounts[j].Name, "kube-api-access-<random>")
			}
			for _, st := range []*v1.ContainerState{&cs.State, &cs.LastTerminationState} {
				normalizeState(st, stamp, msg)
			}
		}
	}
	return out
}

func normalizeState(st *v1.ContainerState, stamp func(*metav1.Time), msg func(string) string) {
	if st.Running != nil {
		stamp(&st.Running.StartedAt)
	}
	if st.Waiting != nil {
		st.Waiting.Message = msg(st.Waiting.Message)
	}
	if t := st.Terminated; t != nil {
		stamp(&t.StartedAt)
		stamp(&t.FinishedAt)
		if t.ContainerID != "" {
			t.ContainerID = PlaceholderID
		}
		t.Message = msg(t.Message)
	}
}

// HeartbeatFree is s without what a kubelet restart may change in a Pod's
// status though nothing happened to its containers: the conditions' probe
// times, and the Pod-level status.resources, which the upstream v1.37.2
// kubelet itself rewrites after a restart (nil limits become the memory
// limit it reads from the unlimited cgroup v1 Pod cgroup,
// 9223372036854771712) — seen restarting upstream on upstream.
func HeartbeatFree(s v1.PodStatus) v1.PodStatus {
	out := *s.DeepCopy()
	for i := range out.Conditions {
		out.Conditions[i].LastProbeTime = metav1.Time{}
	}
	out.Resources = nil
	return out
}

// EventKey is one Event reduced to what two runs share: who reported it,
// its type and reason, and its message with the run's names and every
// number replaced (pull durations, image sizes, back-off delays).
type EventKey struct {
	Object  string // involved object name (field path appended for containers)
	Source  string
	Type    string
	Reason  string
	Message string
}

// digits are numbers standing alone (not the 8 of k8s.io).
var digits = regexp.MustCompile(`\b[0-9]+(\.[0-9]+)?(ms|µs|s|m)?\b`)

// apiAccessVolume is the projected ServiceAccount token volume the API
// server adds to every Pod, named with a random suffix.
var apiAccessVolume = regexp.MustCompile(`^kube-api-access-[a-z0-9]+$`)

// tokenBindRace is the API server's NodeRestriction answer to a token
// request for a Pod whose binding its cache has not seen yet: either
// kubelet may hit it right after a Pod is bound and retries, so whether the
// Event appears depends on timing, not on the kubelet.
var tokenBindRace = regexp.MustCompile(`failed to fetch token: .*node requested token bound to a pod scheduled on a different node`)

// transient says whether an Event only records the timing of a retried
// API call (see tokenBindRace) and so says nothing about the kubelet.
func transient(e v1.Event) bool {
	return e.Reason == "FailedMount" && tokenBindRace.MatchString(e.Message)
}

// NormalizeEvents turns a namespace's Events into a sorted, deduplicated
// list of keys (repeats, counts and times dropped, transient ones left out).
func NormalizeEvents(evs []v1.Event, n Names) []EventKey {
	r := n.replacer()
	seen := map[EventKey]bool{}
	var out []EventKey
	for _, e := range evs {
		if transient(e) {
			continue
		}
		obj := e.InvolvedObject.Name
		if e.InvolvedObject.FieldPath != "" {
			obj += "/" + e.InvolvedObject.FieldPath
		}
		src := e.Source.Component
		if src == "" {
			src = e.ReportingController
		}
		k := EventKey{Object: obj, Source: src, Type: e.Type, Reason: e.Reason, Message: digits.ReplaceAllString(r.Replace(e.Message), "N")}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// String renders the key on one line.
func (k EventKey) String() string {
	return fmt.Sprintf("%s [%s] %s %s: %s", k.Object, k.Source, k.Type, k.Reason, k.Message)
}

// EventsDiff lists the keys only in a and only in b, one line each.
func EventsDiff(a, b []EventKey) (onlyA, onlyB []string) {
	in := func(list []EventKey) map[EventKey]bool {
		m := map[EventKey]bool{}
		for _, k := range list {
			m[k] = true
		}
		return m
	}
	inA, inB := in(a), in(b)
	for _, k := range a {
		if !inB[k] {
			onlyA = append(onlyA, k.String())
		}
	}
	for _, k := range b {
		if !inA[k] {
			onlyB = append(onlyB, k.String())
		}
	}
	return onlyA, onlyB
}
