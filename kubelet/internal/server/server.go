// Package server is the kubelet's HTTPS API on :10250, as the API server
// and kubectl use it: container logs, exec, attach and port-forward
// (proxied to the CRI runtime's streaming server), the Pod list and healthz,
// behind the configured authentication (x509 client certificates, webhook
// TokenReview) and authorization (webhook SubjectAccessReview).
package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/util/flushwriter"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crilogs "k8s.io/cri-client/pkg/logs"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

// Host is what the server needs from the kubelet.
type Host interface {
	// Pods are the Pods the kubelet runs.
	Pods() []*v1.Pod
	// Container finds the CRI container of a Pod's container: the current
	// one, or the one before it when previous is set.
	Container(ctx context.Context, uid types.UID, name string, previous bool) (*runtimeapi.ContainerStatus, error)
	// Sandbox is the Pod's ready sandbox ID.
	Sandbox(ctx context.Context, uid types.UID) (string, error)
}

// ErrNotFound is a Pod, container or sandbox that does not exist.
var ErrNotFound = errors.New("not found")

// Server serves the kubelet API.
type Server struct {
	NodeName string
	Host     Host
	Runtime  internalapi.RuntimeService
	// Profiling serves /debug/pprof/ (enableProfilingHandler).
	Profiling bool
	Authn     authenticator.Request
	Authz     authorizer.UnconditionalAuthorizer
	Log       *zap.Logger
	// Metrics answers /metrics (the kubelet's own counters); nil serves none.
	Metrics prometheus.Gatherer
	// Stats answers /stats/summary; nil serves none.
	Stats interface {
		Summary(ctx context.Context) (*statsapi.Summary, error)
	}
}

// Handler is the whole API behind authentication and authorization.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /pods", s.pods)
	if s.Stats != nil {
		mux.HandleFunc("GET /stats/summary", s.summary)
		mux.Handle("GET /metrics/resource", resourceMetrics(s.Stats, s.Log))
	}
	if s.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.logs)
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, s.exec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, s.attach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, s.portForward)
	}
	if s.Profiling {
		// As upstream's enableProfilingHandler: authorized as nodes/proxy.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return s.auth(mux)
}

// auth authenticates and authorizes as upstream's kubelet does: the
// request becomes a verb on nodes/<subresource> of this node.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, ok, err := s.Authn.AuthenticateRequest(r)
		if err != nil || !ok {
			if err != nil {
				s.Log.Info("unauthorized request", zap.String("path", r.URL.Path), zap.Error(err))
			}
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		attrs := Attributes(s.NodeName, resp.User, r)
		dec, reason, err := s.Authz.Authorize(r.Context(), attrs)
		if err != nil || dec != authorizer.DecisionAllow {
			msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=%s, subresource=%s)", attrs.GetUser().GetName(),
				attrs.GetVerb(), attrs.GetResource(), attrs.GetSubresource())
			s.Log.Info("forbidden request", zap.String("msg", msg), zap.String("reason", reason), zap.Error(err))
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Attributes maps a request to what is authorized, as upstream's
// nodeAuthorizerAttributesGetter: POST create, GET get, ...; the path's
// first segment picks the subresource (stats, metrics, log, else proxy).
func Attributes(node string, u userInfo, r *http.Request) authorizer.AttributesRecord {
	verb := map[string]string{http.MethodPost: "create", http.MethodGet: "get", http.MethodPut: "update",
		http.MethodPatch: "patch", http.MethodDelete: "delete"}[r.Method]
	sub := "proxy"
	switch p := r.URL.Path; {
	case isSubpath(p, "/stats"):
		sub = "stats"
	case isSubpath(p, "/metrics"):
		sub = "metrics"
	case isSubpath(p, "/logs"):
		sub = "log"
	case isSubpath(p, "/checkpoint"):
		sub = "checkpoint"
	case isSubpath(p, "/configz"):
		sub = "configz"
	}
	return authorizer.AttributesRecord{User: u, Verb: verb, APIVersion: "v1", Resource: "nodes", Subresource: sub,
		Name: node, ResourceRequest: true, Path: r.URL.Path}
}

type userInfo = interface {
	GetName() string
	GetUID() string
	GetGroups() []string
	GetExtra() map[string][]string
}

func isSubpath(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, strings.TrimSuffix(prefix, "/")+"/")
}

func (s *Server) pod(ns, name string, uid types.UID) (*v1.Pod, bool) {
	for _, p := range s.Host.Pods() {
		if p.Namespace == ns && p.Name == name && (uid == "" || p.UID == uid) {
			return p, true
		}
	}
	return nil, false
}

func (s *Server) pods(w http.ResponseWriter, _ *http.Request) {
	list := &v1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	for _, p := range s.Host.Pods() {
		list.Items = append(list.Items, *p)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := jsonEncode(w, list); err != nil {
		s.Log.Warn("write pods", zap.Error(err))
	}
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	sum, err := s.Stats.Summary(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := jsonEncode(w, sum); err != nil {
		s.Log.Warn("write summary", zap.Error(err))
	}
}

func hasContainer(pod *v1.Pod, name string) bool {
	for _, cs := range [][]v1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	ns, name, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	query := r.URL.Query()
	if tail := query.Get("tail"); tail != "" { // the legacy spelling of tailLines
		query["tailLines"] = []string{tail}
		if tail == "all" {
			delete(query, "tailLines")
		}
	}
	opts, err := logOptions(query)
	if err != nil {
		http.Error(w, `{"message": "Unable to decode query."}`, http.StatusBadRequest)
		return
	}
	pod, ok := s.pod(ns, name, "")
	if !ok {
		http.Error(w, fmt.Sprintf("pod %q does not exist", name), http.StatusNotFound)
		return
	}
	if !hasContainer(pod, container) {
		http.Error(w, fmt.Sprintf("container %q not found in pod %q", container, name), http.StatusNotFound)
		return
	}
	st, err := s.Host.Container(r.Context(), pod.UID, container, opts.Previous)
	if err != nil {
		msg := fmt.Sprintf("container %q in pod %q is waiting to start: %v", container, name, err)
		if opts.Previous {
			msg = fmt.Sprintf("previous terminated container %q in pod %q not found", container, name)
		}
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	lo := &crilogs.LogOptions{TailLines: opts.TailLines, LimitBytes: opts.LimitBytes, Follow: opts.Follow,
		Timestamp: opts.Timestamps}
	if opts.SinceSeconds != nil {
		lo.Since = metav1.Now().Add(-secondsDuration(*opts.SinceSeconds))
	}
	if opts.SinceTime != nil {
		lo.Since = opts.SinceTime.Time
	}
	fw := flushwriter.Wrap(w)
	var stdout, stderr = fw, fw
	switch ptr.Deref(opts.Stream, v1.LogStreamAll) {
	case v1.LogStreamStdout:
		stderr = nil
	case v1.LogStreamStderr:
		stdout = nil
	}
	w.Header().Set("Transfer-Encoding", "chunked")
	if err := crilogs.ReadLogs(r.Context(), st.LogPath, st.Id, lo, s.Runtime, stdout, stderr); err != nil &&
		!errors.Is(err, context.Canceled) {
		s.Log.Info("read logs", zap.String("container", st.Id), zap.Error(err))
	}
}

type responder struct{ log *zap.Logger }

func (r responder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	r.log.Info("proxy to the runtime's streaming server", zap.Error(err))
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// stream proxies an upgraded request to the runtime's streaming URL.
//
// WebSocket streams (kubectl's v5 protocol, port-forward tunnelled over
// WebSocket) reach this kubelet as SPDY: the Node does not declare the
// ExtendWebSocketsToKubelet feature, so the API server translates them, as
// it does for an upstream kubelet with that gate off. The translator in
// k8s.io/apiserver/pkg/util/proxy is not linked: that package also links
// client-go's whole clientset and informers. A client that sends them to
// the kubelet directly gets a 400 saying so.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, u *url.URL) {
	proxy.NewUpgradeAwareHandler(u, nil, false, true, responder{s.Log}).ServeHTTP(w, r)
}

// ErrWebSocketStreaming is the answer to a WebSocket stream sent to the
// kubelet directly; through the API server it works.
var ErrWebSocketStreaming = errors.New("WebSocket streaming (v5.channel.k8s.io, SPDY tunnelling) is not served by this kubelet " +
	"(it does not declare ExtendWebSocketsToKubelet); connect through the API server, which translates it to SPDY")

func refuseWebSocket(w http.ResponseWriter, r *http.Request) bool {
	if wsstream.IsWebSocketRequestWithStreamCloseProtocol(r) || wsstream.IsWebSocketRequestWithTunnelingProtocol(r) {
		http.Error(w, ErrWebSocketStreaming.Error(), http.StatusBadRequest)
		return true
	}
	return false
}

func (s *Server) execTarget(w http.ResponseWriter, r *http.Request) (*remotecommandserver.Options, string, bool) {
	if refuseWebSocket(w, r) {
		return nil, "", false
	}
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, "", false
	}
	pod, ok := s.pod(r.PathValue("ns"), r.PathValue("pod"), types.UID(r.PathValue("uid")))
	if !ok {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return nil, "", false
	}
	st, err := s.Host.Container(r.Context(), pod.UID, r.PathValue("container"), false)
	if err != nil {
		http.Error(w, fmt.Sprintf("container not found (%q)", r.PathValue("container")), http.StatusNotFound)
		return nil, "", false
	}
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		http.Error(w, fmt.Sprintf("container %s is not running", r.PathValue("container")), http.StatusBadRequest)
		return nil, "", false
	}
	return opts, st.Id, true
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	opts, id, ok := s.execTarget(w, r)
	if !ok {
		return
	}
	resp, err := s.Runtime.Exec(r.Context(), &runtimeapi.ExecRequest{ContainerId: id, Cmd: r.URL.Query()["command"],
		Tty: opts.TTY, Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr})
	s.proxyTo(w, r, resp.GetUrl(), err)
}

func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	opts, id, ok := s.execTarget(w, r)
	if !ok {
		return
	}
	resp, err := s.Runtime.Attach(r.Context(), &runtimeapi.AttachRequest{ContainerId: id, Tty: opts.TTY,
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr})
	s.proxyTo(w, r, resp.GetUrl(), err)
}

func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	if refuseWebSocket(w, r) {
		return
	}
	o, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod, ok := s.pod(r.PathValue("ns"), r.PathValue("pod"), types.UID(r.PathValue("uid")))
	if !ok {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return
	}
	sb, err := s.Host.Sandbox(r.Context(), pod.UID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	resp, err := s.Runtime.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sb, Port: o.Ports})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	u, err := url.Parse(resp.GetUrl())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.stream(w, r, u)
}

func (s *Server) proxyTo(w http.ResponseWriter, r *http.Request, raw string, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.stream(w, r, u)
}
