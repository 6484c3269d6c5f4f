package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeployCoreDNS creates CoreDNS behind 10.96.0.10 and waits until it is
// available.
func (c *Cluster) DeployCoreDNS(ctx context.Context, image string) error {
	sa, role, bind, cm, dep, svc := CoreDNSObjects(image)
	cs, ns := c.Client, sa.Namespace
	steps := []func() error{
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, bind, metav1.CreateOptions{})
			return err
		},
		func() error { _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); return err },
		func() error { _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); return err },
		func() error {
			_, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
			return err
		},
	}
	for _, s := range steps {
		if err := createIgnoreExists(s()); err != nil {
			return fmt.Errorf("coredns: %w", err)
		}
	}
	return c.waitDeployment(ctx, ns, dep.Name, 180*time.Second)
}

func (c *Cluster) waitDeployment(ctx context.Context, ns, name string, timeout time.Duration) error {
	return c.poll(ctx, "deployment "+ns+"/"+name, timeout, func(ctx context.Context) (bool, error) {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return deploymentAvailable(d), nil
	})
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want
}

// DemoResult is what the demo showed.
type DemoResult struct {
	ClusterIPURL, NodePortURL string
	ClusterIPAnswer           string
	NodePortAnswer            string
}

// RunDemo deploys the demo and makes one request through the ClusterIP and
// one through the NodePort from the host, returning the answers.
func (c *Cluster) RunDemo(ctx context.Context, image string) (*DemoResult, error) {
	ns, dep, cip, np := DemoObjects(image)
	cs := c.Client
	if err := createIgnoreExists(func() error { _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); return err }()); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	for _, s := range []func() error{
		func() error {
			_, err := cs.AppsV1().Deployments(DemoNamespace).Create(ctx, dep, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Services(DemoNamespace).Create(ctx, cip, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().Services(DemoNamespace).Create(ctx, np, metav1.CreateOptions{})
			return err
		},
	} {
		if err := createIgnoreExists(s()); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	}
	if err := c.waitDeployment(ctx, DemoNamespace, dep.Name, 180*time.Second); err != nil {
		return nil, err
	}
	svc, err := cs.CoreV1().Services(DemoNamespace).Get(ctx, cip.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	nps, err := cs.CoreV1().Services(DemoNamespace).Get(ctx, np.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	res := &DemoResult{
		ClusterIPURL: "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/hostname",
		NodePortURL:  "http://" + net.JoinHostPort(c.Host.IP.String(), strconv.Itoa(int(nps.Spec.Ports[0].NodePort))) + "/hostname",
	}
	// The proxy programs rules a moment after the endpoints are ready: retry
	// briefly rather than fail on the first refused connection.
	if res.ClusterIPAnswer, err = c.get(ctx, res.ClusterIPURL); err != nil {
		return res, err
	}
	if res.NodePortAnswer, err = c.get(ctx, res.NodePortURL); err != nil {
		return res, err
	}
	return res, nil
}

func (c *Cluster) get(ctx context.Context, url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	var last error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return strings.TrimSpace(string(b)), nil
			}
			err = fmt.Errorf("%s: %s %v", url, resp.Status, rerr)
		}
		last = err
		c.Log.Debug("demo request failed, retrying", zap.Error(err))
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return "", fmt.Errorf("demo request %s: %w", url, last)
}
