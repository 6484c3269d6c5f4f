package podsource

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
)

// Annotations of static Pods, as upstream sets them.
const (
	ConfigSourceAnnotation = "kubernetes.io/config.source"
	ConfigHashAnnotation   = "kubernetes.io/config.hash"
	ConfigSeenAnnotation   = "kubernetes.io/config.seen"
)

// IsStatic tells a Pod from a manifest file (or any source but the API
// server) from one the API server gave, as upstream's IsStaticPod.
func IsStatic(pod *v1.Pod) bool {
	src, ok := pod.Annotations[ConfigSourceAnnotation]
	return ok && src != "api"
}

// Static reads Pod manifests from Dir every Period and keeps a mirror Pod in
// the API server for each.
type Static struct {
	Dir      string
	NodeName string
	Sink     Sink
	Client   apiclient.Interface // nil: no mirror Pods
	Period   time.Duration
	Log      *zap.Logger

	mu   sync.Mutex
	pods map[types.UID]*v1.Pod
}

// Load reads the directory once and sends what changed to the sink.
func (s *Static) Load() error {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		if os.IsNotExist(err) {
			ents = nil
		} else {
			return fmt.Errorf("static pod path: %w", err)
		}
	}
	now := map[types.UID]*v1.Pod{}
	var errs []string
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p, err := s.read(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		now[p.UID] = p
	}
	s.mu.Lock()
	old := s.pods
	s.pods = now
	s.mu.Unlock()
	for uid := range old {
		if _, ok := now[uid]; !ok {
			s.Sink.Remove(uid)
		}
	}
	uids := make([]string, 0, len(now))
	for uid := range now {
		uids = append(uids, string(uid))
	}
	sort.Strings(uids)
	for _, uid := range uids {
		if _, ok := old[types.UID(uid)]; !ok {
			s.Sink.Update(now[types.UID(uid)])
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("static pods: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (s *Static) read(path string) (*v1.Pod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pod v1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pod.Name == "" {
		return nil, fmt.Errorf("%s: pod has no name", path)
	}
	Defaults(&pod)
	h := md5.New()
	raw, _ := json.Marshal(&pod)
	h.Write(raw)
	fmt.Fprintf(h, "host:%s", s.NodeName)
	fmt.Fprintf(h, "file:%s", path)
	uid := hex.EncodeToString(h.Sum(nil))
	pod.UID = types.UID(uid)
	pod.Name = pod.Name + "-" + strings.ToLower(s.NodeName)
	if pod.Namespace == "" {
		pod.Namespace = metav1.NamespaceDefault
	}
	pod.Spec.NodeName = s.NodeName
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[ConfigHashAnnotation] = uid
	pod.Annotations[ConfigSourceAnnotation] = "file"
	pod.Annotations[ConfigSeenAnnotation] = time.Now().UTC().Format(time.RFC3339Nano)
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, v1.Toleration{Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute})
	return &pod, nil
}

// Defaults sets the API server's defaults a manifest omits (the API server
// never sees a static Pod, so the kubelet applies them).
func Defaults(pod *v1.Pod) {
	sp := &pod.Spec
	if sp.RestartPolicy == "" {
		sp.RestartPolicy = v1.RestartPolicyAlways
	}
	if sp.DNSPolicy == "" {
		sp.DNSPolicy = v1.DNSClusterFirst
	}
	if sp.TerminationGracePeriodSeconds == nil {
		g := int64(v1.DefaultTerminationGracePeriodSeconds)
		sp.TerminationGracePeriodSeconds = &g
	}
	if sp.EnableServiceLinks == nil {
		t := true
		sp.EnableServiceLinks = &t
	}
	if sp.SchedulerName == "" {
		sp.SchedulerName = v1.DefaultSchedulerName
	}
	if sp.SecurityContext == nil {
		sp.SecurityContext = &v1.PodSecurityContext{}
	}
	for _, cs := range [][]v1.Container{sp.InitContainers, sp.Containers} {
		for i := range cs {
			c := &cs[i]
			if c.TerminationMessagePath == "" {
				c.TerminationMessagePath = v1.TerminationMessagePathDefault
			}
			if c.TerminationMessagePolicy == "" {
				c.TerminationMessagePolicy = v1.TerminationMessageReadFile
			}
			if c.ImagePullPolicy == "" {
				c.ImagePullPolicy = v1.PullIfNotPresent
				last := c.Image[strings.LastIndex(c.Image, "/")+1:]
				if !strings.Contains(c.Image, "@") && (!strings.Contains(last, ":") || strings.HasSuffix(last, ":latest")) {
					c.ImagePullPolicy = v1.PullAlways
				}
			}
			for j := range c.Ports {
				if c.Ports[j].Protocol == "" {
					c.Ports[j].Protocol = v1.ProtocolTCP
				}
			}
		}
	}
}

// Run reloads every Period and keeps the mirror Pods until ctx ends.
func (s *Static) Run(ctx context.Context) {
	if s.Period == 0 {
		s.Period = 20 * time.Second
	}
	t := time.NewTicker(s.Period)
	defer t.Stop()
	for {
		s.syncMirrors(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Load(); err != nil {
			s.Log.Warn("static pods", zap.Error(err))
		}
	}
}

// syncMirrors creates missing mirror Pods and replaces outdated ones.
func (s *Static) syncMirrors(ctx context.Context) {
	if s.Client == nil {
		return
	}
	s.mu.Lock()
	pods := make([]*v1.Pod, 0, len(s.pods))
	for _, p := range s.pods {
		pods = append(pods, p)
	}
	s.mu.Unlock()
	node, err := s.Client.Nodes().Get(ctx, s.NodeName, metav1.GetOptions{})
	if err != nil {
		return // mirror Pods wait for the Node, which owns them
	}
	for _, p := range pods {
		hash := p.Annotations[ConfigHashAnnotation]
		m, err := s.Client.Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil {
			if m.Annotations[MirrorAnnotation] == hash && m.DeletionTimestamp == nil {
				continue
			}
			if m.DeletionTimestamp == nil {
				_ = s.Client.Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &m.UID}})
			}
			continue // recreated next round, once gone
		}
		if !apierrors.IsNotFound(err) {
			continue
		}
		mirror := p.DeepCopy()
		mirror.UID, mirror.ResourceVersion = "", ""
		mirror.Annotations[MirrorAnnotation] = hash
		ctrl := false
		mirror.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: &ctrl}}
		if _, err := s.Client.Pods(p.Namespace).Create(ctx, mirror, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			s.Log.Warn("create mirror pod", zap.String("pod", p.Namespace+"/"+p.Name), zap.Error(err))
		}
	}
}
