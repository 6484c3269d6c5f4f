package podsource

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient/apiclienttest"
)

type sink struct {
	pods    map[types.UID]*v1.Pod
	removed []types.UID
}

func (s *sink) Update(p *v1.Pod)     { s.pods[p.UID] = p }
func (s *sink) Remove(uid types.UID) { s.removed = append(s.removed, uid) }

func TestStaticPods(t *testing.T) {
	dir := t.TempDir()
	manifest := "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: kube-system}\nspec:\n  containers:\n  - {name: c, image: img:1}\n"
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".hidden"), []byte("not a pod"), 0o644); err != nil {
		t.Fatal(err)
	}
	sk := &sink{pods: map[types.UID]*v1.Pod{}}
	s := &Static{Dir: dir, NodeName: "Node1", Sink: sk, Log: zap.NewNop()}
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if len(sk.pods) != 1 {
		t.Fatalf("pods: %v", sk.pods)
	}
	var p *v1.Pod
	for _, x := range sk.pods {
		p = x
	}
	got := []string{p.Name, p.Namespace, p.Spec.NodeName, p.Annotations[ConfigSourceAnnotation], p.Annotations[ConfigHashAnnotation],
		string(p.Spec.RestartPolicy), p.Spec.Containers[0].TerminationMessagePath, string(p.Spec.Containers[0].ImagePullPolicy)}
	want := []string{"web-node1", "kube-system", "Node1", "file", string(p.UID), "Always", "/dev/termination-log", "IfNotPresent"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("static pod (-want +got):\n%s", d)
	}
	// Same file, same UID: nothing new. A removed file removes the Pod.
	uid := p.UID
	sk.pods = map[types.UID]*v1.Pod{}
	if err := s.Load(); err != nil || len(sk.pods) != 0 {
		t.Fatalf("reload: %v %v", err, sk.pods)
	}
	_ = os.Remove(filepath.Join(dir, "web.yaml"))
	_ = s.Load()
	sort.Slice(sk.removed, func(i, j int) bool { return sk.removed[i] < sk.removed[j] })
	if d := cmp.Diff([]types.UID{uid}, sk.removed); d != "" {
		t.Errorf("removed (-want +got):\n%s", d)
	}
	// A broken manifest is an error naming the file, and loses nothing else.
	_ = os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("kind: Pod\nspec: {bogus: 1}\n"), 0o644)
	if err := s.Load(); err == nil {
		t.Errorf("bad manifest accepted")
	}
}

func TestMirrorPods(t *testing.T) {
	dir := t.TempDir()
	manifest := "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: c, image: img:1}\n"
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "node-uid"}}
	client := fake.NewSimpleClientset(node)
	sk := &sink{pods: map[types.UID]*v1.Pod{}}
	s := &Static{Dir: dir, NodeName: "n1", Sink: sk, Client: apiclienttest.New(client), Log: zap.NewNop()}
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.syncMirrors(ctx)
	m, err := client.CoreV1().Pods("default").Get(ctx, "web-n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var static *v1.Pod
	for _, p := range sk.pods {
		static = p
	}
	if m.Annotations[MirrorAnnotation] != string(static.UID) || len(m.OwnerReferences) != 1 || m.OwnerReferences[0].UID != "node-uid" {
		t.Errorf("mirror pod: annotations %v owners %v", m.Annotations, m.OwnerReferences)
	}
	// A user deletes the mirror Pod: it comes back.
	_ = client.CoreV1().Pods("default").Delete(ctx, "web-n1", metav1.DeleteOptions{})
	s.syncMirrors(ctx)
	if _, err := client.CoreV1().Pods("default").Get(ctx, "web-n1", metav1.GetOptions{}); err != nil {
		t.Errorf("mirror not recreated: %v", err)
	}
}
