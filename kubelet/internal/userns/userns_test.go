package userns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

type fakeRuntime struct {
	ok  bool
	err error
}

func (f fakeRuntime) SupportsUserNamespaces(context.Context, string) (bool, error) {
	return f.ok, f.err
}

// noKubeletUser is a host without the user "kubelet": the default range.
var noKubeletUser = host{lookupUser: func(n string) error { return user.UnknownUserError(n) }}

// subIDs is a host whose kubelet user has out as its subordinate uids and gids.
func subIDs(out string) host {
	return host{lookupUser: func(string) error { return nil },
		run: func(string, ...string) ([]byte, error) { return []byte(out), nil }}
}

func newManager(t *testing.T, dir string, h host, maxPods int) *Manager {
	t.Helper()
	m, err := New(Config{PodsDir: dir, MaxPods: maxPods, Runtime: fakeRuntime{ok: true}, host: h})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pod(uid string, hostUsers *bool) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: types.UID(uid)}, Spec: v1.PodSpec{HostUsers: hostUsers}}
}

// podNS is the CRI user namespace of a Pod given IDs from first.
func podNS(first uint32) *runtimeapi.UserNamespace {
	m := []*runtimeapi.IDMapping{{HostId: first, ContainerId: 0, Length: 65536}}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

// fileFor is upstream's file for a Pod given IDs from first, byte for byte.
func fileFor(first uint32) string {
	return fmt.Sprintf(`{"uidMappings":[{"hostId":%d,"containerId":0,"length":65536}],"gidMappings":[{"hostId":%d,"containerId":0,"length":65536}]}`, first, first)
}

func writeFile(t *testing.T, dir, uid, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, uid), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, uid, mappingsFile), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, dir, uid string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, uid, mappingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGetOrCreate(t *testing.T) {
	node := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
	for _, tc := range []struct {
		name      string
		hostUsers *bool
		handler   string
		runtime   fakeRuntime
		want      *runtimeapi.UserNamespace
		wantErr   string
		wantFile  string
	}{
		{name: "hostUsers unset: the node's", want: node, wantFile: "<none>"},
		{name: "hostUsers true: the node's", hostUsers: ptr.To(true), want: node, wantFile: "<none>"},
		{name: "hostUsers true needs no runtime support", hostUsers: ptr.To(true), runtime: fakeRuntime{ok: false},
			want: node, wantFile: "<none>"},
		{name: "hostUsers false: the first range", hostUsers: ptr.To(false), runtime: fakeRuntime{ok: true},
			want: podNS(65536), wantFile: fileFor(65536)},
		{name: "default handler without support", hostUsers: ptr.To(false),
			wantErr: "can't set `spec.hostUsers: false`, runtime does not support user namespaces", wantFile: "<none>"},
		{name: "RuntimeClass handler without support", hostUsers: ptr.To(false), handler: "kata",
			wantErr: "can't set `spec.hostUsers: false`, RuntimeClass handler \"kata\" does not support user namespaces", wantFile: "<none>"},
		{name: "unknown handler", hostUsers: ptr.To(false), handler: "kata", runtime: fakeRuntime{err: errors.New(`the handler "kata" is not known`)},
			wantErr:  "can't set `spec.hostUsers: false`, RuntimeClass handler \"kata\" does not support user namespaces: the handler \"kata\" is not known",
			wantFile: "<none>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := newManager(t, dir, noKubeletUser, 110)
			m.runtime = tc.runtime
			got, err := m.GetOrCreate(context.Background(), pod("a", tc.hostUsers), tc.handler)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Errorf("err %q, want %q", gotErr, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got, protocmp.Transform()); d != "" {
				t.Errorf("user namespace (-want +got):\n%s", d)
			}
			if got := readFile(t, dir, "a"); got != tc.wantFile {
				t.Errorf("file %s, want %s", got, tc.wantFile)
			}
		})
	}
}

// TestAllocatePersistReload: ranges are handed out first free, kept across
// calls and restarts (as files another kubelet wrote would be), and a
// released range is the next one given.
func TestAllocatePersistReload(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	get := func(m *Manager, uid string) *runtimeapi.UserNamespace {
		t.Helper()
		ns, err := m.GetOrCreate(ctx, pod(uid, ptr.To(false)), "")
		if err != nil {
			t.Fatalf("%s: %v", uid, err)
		}
		return ns
	}
	m := newManager(t, dir, noKubeletUser, 110)
	for _, step := range []struct {
		uid   string
		first uint32
	}{{"a", 65536}, {"b", 131072}, {"a", 65536}} {
		if d := cmp.Diff(podNS(step.first), get(m, step.uid), protocmp.Transform()); d != "" {
			t.Errorf("%s (-want +got):\n%s", step.uid, d)
		}
	}
	// As upstream would have written it: our restart takes it over.
	writeFile(t, dir, "c", fileFor(4*65536))
	// A Pod without the file runs in the host's namespace: nothing to record.
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o750); err != nil {
		t.Fatal(err)
	}

	m = newManager(t, dir, noKubeletUser, 110)
	if d := cmp.Diff(map[types.UID]uint32{"a": 65536, "b": 131072, "c": 4 * 65536}, m.usedBy); d != "" {
		t.Errorf("recorded (-want +got):\n%s", d)
	}
	if d := cmp.Diff(podNS(4*65536), get(m, "c"), protocmp.Transform()); d != "" {
		t.Errorf("c kept its range (-want +got):\n%s", d)
	}
	if d := cmp.Diff(podNS(3*65536), get(m, "d"), protocmp.Transform()); d != "" {
		t.Errorf("d takes the first free range (-want +got):\n%s", d)
	}
	m.Release("a")
	if got := readFile(t, dir, "a"); got != "<none>" {
		t.Errorf("released a's file: %s", got)
	}
	if d := cmp.Diff(podNS(65536), get(m, "e"), protocmp.Transform()); d != "" {
		t.Errorf("e takes a's released range (-want +got):\n%s", d)
	}
	if got := readFile(t, dir, "e"); got != fileFor(65536) {
		t.Errorf("e's file %s", got)
	}
	m.Release("nope") // unknown: nothing happens
	if len(m.usedBy) != 4 {
		t.Errorf("usedBy %v", m.usedBy)
	}
}

func TestExhaustion(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, subIDs("0: kubelet 65536 131072\n"), 2)
	ctx := context.Background()
	for _, uid := range []string{"a", "b"} {
		if _, err := m.GetOrCreate(ctx, pod(uid, ptr.To(false)), ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err := m.GetOrCreate(ctx, pod("c", ptr.To(false)), "")
	if want := "create user namespace: could not find an empty slot to allocate a user namespace"; err == nil || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
	if got := readFile(t, dir, "c"); got != "<none>" {
		t.Errorf("c's file %s", got)
	}
	m.Release("b")
	ns, err := m.GetOrCreate(ctx, pod("c", ptr.To(false)), "")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(podNS(131072), ns, protocmp.Transform()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestBadFileRejected: a file no kubelet writes fails the start, as
// upstream, and the Pod's sync.
func TestBadFileRejected(t *testing.T) {
	mapping := func(host, ctr, length uint32) string {
		return fmt.Sprintf(`{"hostId":%d,"containerId":%d,"length":%d}`, host, ctr, length)
	}
	file := func(uids, gids string) string { return `{"uidMappings":[` + uids + `],"gidMappings":[` + gids + `]}` }
	ok := mapping(65536, 0, 65536)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not JSON", "{", "invalid user namespace mappings file: unexpected end of JSON input"},
		{"no mapping", file("", ""), "invalid user namespace configuration: no more than one mapping allowed."},
		{"two mappings", file(ok+","+mapping(131072, 65536, 65536), ok), "invalid user namespace configuration: no more than one mapping allowed."},
		{"no gid mapping", file(ok, ""), "invalid user namespace configuration: GID and UID mappings should be identical."},
		{"gids differ", file(ok, mapping(131072, 0, 65536)), "invalid user namespace configuration: GID and UID mapping should be identical"},
		{"root not mapped", file(mapping(65536, 1, 65536), mapping(65536, 1, 65536)), "invalid user namespace configuration: UID 0 must be mapped"},
		{"wrong length", file(mapping(65536, 0, 1000), mapping(65536, 0, 1000)), "wrong user namespace length 1000"},
		{"wrong offset", file(mapping(65537, 0, 65536), mapping(65537, 0, 65536)), "wrong user namespace offset specified 65537"},
		{"host root", file(mapping(0, 0, 65536), mapping(0, 0, 65536)), "id 0 is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "x", tc.content)
			_, err := New(Config{PodsDir: dir, MaxPods: 110, Runtime: fakeRuntime{ok: true}, host: noKubeletUser})
			if want := `record pod mappings for existing pod "x": ` + tc.want; err == nil || err.Error() != want {
				t.Errorf("New: err %v, want %q", err, want)
			}
			// Written after the start: the Pod's sync fails instead.
			if err := os.Remove(filepath.Join(dir, "x", mappingsFile)); err != nil {
				t.Fatal(err)
			}
			m := newManager(t, dir, noKubeletUser, 110)
			writeFile(t, dir, "x", tc.content)
			_, err = m.GetOrCreate(context.Background(), pod("x", ptr.To(false)), "")
			if want := "user namespace: " + tc.want; err == nil || err.Error() != want {
				t.Errorf("GetOrCreate: err %v, want %q", err, want)
			}
		})
	}
	t.Run("two Pods with one range", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "a", fileFor(65536))
		writeFile(t, dir, "b", fileFor(65536))
		_, err := New(Config{PodsDir: dir, MaxPods: 110, Runtime: fakeRuntime{ok: true}, host: noKubeletUser})
		if want := `record pod mappings for existing pod "b": range picked for pod "b" already taken`; err == nil || err.Error() != want {
			t.Errorf("err %v, want %q", err, want)
		}
	})
	t.Run("file changed under a recorded Pod", func(t *testing.T) {
		dir := t.TempDir()
		m := newManager(t, dir, noKubeletUser, 110)
		if _, err := m.GetOrCreate(context.Background(), pod("a", ptr.To(false)), ""); err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, "a", fileFor(131072))
		_, err := m.GetOrCreate(context.Background(), pod("a", ptr.To(false)), "")
		if want := `user namespace: different user namespace range already used by pod "a"`; err == nil || err.Error() != want {
			t.Errorf("err %v, want %q", err, want)
		}
	})
}

// TestKubeletRange: the default range and getsubids', checked as upstream's
// MakeUserNsManager checks them.
func TestKubeletRange(t *testing.T) {
	failRun := func(err error) host {
		return host{lookupUser: func(string) error { return nil }, run: func(string, ...string) ([]byte, error) { return nil, err }}
	}
	type rng struct {
		First     uint32
		Pods      int
		IDsPerPod uint32
	}
	for _, tc := range []struct {
		name      string
		host      host
		idsPerPod uint32
		maxPods   int
		want      rng
		wantErr   string
	}{
		{name: "no kubelet user: every ID from idsPerPod", host: noKubeletUser, maxPods: 110,
			want: rng{65536, 65535, 65536}},
		{name: "larger idsPerPod", host: noKubeletUser, idsPerPod: 1 << 31, maxPods: 1, want: rng{1 << 31, 1, 1 << 31}},
		{name: "user lookup fails", host: host{lookupUser: func(string) error { return errors.New("nss down") }},
			wantErr: "kubelet mappings: nss down"},
		{name: "kubelet user without getsubids", host: failRun(&exec.Error{Name: "getsubids", Err: exec.ErrNotFound}), maxPods: 110,
			want: rng{65536, 65535, 65536}},
		{name: "getsubids", host: subIDs("0: kubelet 65536 2147483648\n"), maxPods: 110, want: rng{65536, 32768, 65536}},
		{name: "getsubids fails", host: failRun(errors.New("exit status 1")),
			wantErr: `kubelet mappings: error retrieving additional uids for user "kubelet": exit status 1`},
		{name: "subuids and subgids differ", maxPods: 110, host: host{lookupUser: func(string) error { return nil },
			run: func(_ string, args ...string) ([]byte, error) {
				if args[0] == "-g" {
					return []byte("0: kubelet 131072 65536\n"), nil
				}
				return []byte("0: kubelet 65536 65536\n"), nil
			}},
			wantErr: `kubelet mappings: mismatched subuids and subgids for user "kubelet"`},
		{name: "two ranges", host: subIDs("0: kubelet 65536 65536\n1: kubelet 131072 65536\n"),
			wantErr: "kubelet mappings: error parsing line \"0: kubelet 65536 65536\\n1: kubelet 131072 65536\\n\": it must contain only one line"},
		{name: "bad line", host: subIDs("kubelet 65536 65536\n"), wantErr: "kubelet mappings: invalid line \"kubelet 65536 65536\\n\""},
		{name: "bad number", host: subIDs("0: kubelet x 65536\n"),
			wantErr: "kubelet mappings: error parsing line \"0: kubelet x 65536\\n\": strconv.ParseUint: parsing \"x\": invalid syntax"},
		{name: "idsPerPod not a multiple of 65536", host: noKubeletUser, idsPerPod: 100000,
			wantErr: "kubelet user namespace length 100000 is not a multiple of 65536"},
		{name: "first ID not a multiple", host: subIDs("0: kubelet 100000 655360\n"),
			wantErr: "kubelet user assigned ID 100000 is not a multiple of 65536"},
		{name: "range starts at host root", host: subIDs("0: kubelet 0 655360\n"),
			wantErr: "kubelet user assigned ID 0 must be greater or equal to 65536"},
		{name: "length not a multiple", host: subIDs("0: kubelet 65536 100000\n"),
			wantErr: "kubelet user assigned IDs length 100000 is not a multiple of 65536"},
		{name: "too few for maxPods", host: subIDs("0: kubelet 65536 131072\n"), maxPods: 3,
			wantErr: "kubelet user assigned IDs are not enough to support 3 pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(Config{PodsDir: t.TempDir(), IDsPerPod: tc.idsPerPod, MaxPods: tc.maxPods, host: tc.host})
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Fatalf("err %q, want %q", gotErr, tc.wantErr)
			}
			if err != nil {
				return
			}
			var got rng
			got.First, got.Pods, got.IDsPerPod = m.Range()
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("range (-want +got):\n%s", d)
			}
		})
	}
}

// TestGetsubidsArgs: uids from `getsubids kubelet`, gids from `getsubids -g kubelet`.
func TestGetsubidsArgs(t *testing.T) {
	var calls []string
	h := host{lookupUser: func(string) error { return nil }, run: func(name string, args ...string) ([]byte, error) {
		calls = append(calls, strings.Join(append([]string{name}, args...), " "))
		return []byte("0: kubelet 65536 65536\n"), nil
	}}
	if _, _, err := kubeletMappings(h, 65536); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"getsubids kubelet", "getsubids -g kubelet"}, calls); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, noKubeletUser, 110)
	for _, uid := range []string{"known", "running", "gone", "nodir"} {
		if _, err := m.GetOrCreate(context.Background(), pod(uid, ptr.To(false)), ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "nodir")); err != nil {
		t.Fatal(err)
	}
	known := map[types.UID]bool{"known": true, "running": true, "nodir": true}
	if err := m.Cleanup(func(uid types.UID) bool { return known[uid] }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[types.UID]uint32{"known": 65536, "running": 131072}, m.usedBy); d != "" {
		t.Errorf("kept (-want +got):\n%s", d)
	}
	if got := readFile(t, dir, "gone"); got != "<none>" {
		t.Errorf("gone's file %s", got)
	}
	if got := readFile(t, dir, "known"); got != fileFor(65536) {
		t.Errorf("known's file %s", got)
	}
}
