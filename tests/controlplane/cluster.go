package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// components are the child processes around the in-process apiserver.
type components struct {
	children      []*child
	kcmPort       int
	schedulerPort int
	nodes         int
	nodeLabels    map[string]string
	real          *realNode // --real-node, else nil
}

// startComponents writes the components' kubeconfigs (and kwok's Stages), starts
// kube-controller-manager, kube-scheduler and, with nodes > 0, kwok, then creates the
// nodes. On error, whatever was started is stopped.
func startComponents(ctx context.Context, dir, server string, p *pki, nodes int, labels map[string]string) (*components, error) {
	c := &components{nodes: nodes, nodeLabels: labels}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	c.kcmPort, c.schedulerPort = ports[0], ports[1]
	for file, user := range map[string]string{
		"controller-manager.kubeconfig": userControllerManager,
		"scheduler.kubeconfig":          userScheduler,
		"kwok.kubeconfig":               userAdmin,
	} {
		if err := writeKubeconfig(filepath.Join(dir, file), server, p, user); err != nil {
			return nil, err
		}
	}
	type spec struct {
		name, sub string
		args      []string
	}
	specs := []spec{
		{"controller-manager", subControllerManager, controllerManagerArgs(dir, p, c.kcmPort)},
		{"scheduler", subScheduler, schedulerArgs(dir, c.schedulerPort)},
	}
	if nodes > 0 {
		if err := writeKwokConfig(filepath.Join(dir, "kwok.yaml")); err != nil {
			return nil, fmt.Errorf("kwok stages: %w", err)
		}
		specs = append(specs, spec{"kwok", subKwok, kwokArgs(dir)})
	}
	for _, s := range specs {
		ch, err := startChild(dir, s.name, s.sub, s.args)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.children = append(c.children, ch)
	}
	if nodes > 0 {
		cs, err := adminClient(server, p)
		if err == nil {
			err = ensureNodes(ctx, cs, nodes, labels)
		}
		if err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func adminClient(server string, p *pki) (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(&rest.Config{
		Host:            server,
		BearerToken:     p.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.caPEM},
		// No client-side throttling: creating and checking up to 1,000 nodes at 5 requests/s
		// would take minutes.
		QPS: -1,
	})
}

// exitedChild returns the failure of the first child that has exited, if any.
func (c *components) exitedChild() error {
	children := c.children
	if c.real != nil {
		children = append(append([]*child(nil), children...), c.real.containerd, c.real.kubelet)
	}
	for _, ch := range children {
		if ch == nil {
			continue
		}
		if gone, err := ch.exited(); gone {
			return ch.failure(err)
		}
	}
	return nil
}

// wait returns once the controller-manager is healthy and has made namespace
// default's ServiceAccount, the scheduler is ready, and every node is Ready and
// untainted; or with the reason it cannot be.
func (c *components) wait(ctx context.Context, server string, p *pki, deadline time.Time, logOut io.Writer) error {
	cs, err := adminClient(server, p)
	if err != nil {
		return err
	}
	last := "no check yet"
	logged := time.Now()
	for {
		if err := c.exitedChild(); err != nil {
			return err
		}
		ok, why := c.check(ctx, cs)
		if ok {
			return nil
		}
		last = why
		if time.Since(logged) > 2*time.Second {
			fmt.Fprintf(logOut, "kube-controlplane: waiting for %s\n", why)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out; waiting for: %s", last)
		}
	}
}

func (c *components) check(ctx context.Context, cs kubernetes.Interface) (bool, string) {
	if ok, why := healthy(c.kcmPort, "/healthz"); !ok {
		return false, "kube-controller-manager " + why
	}
	if ok, why := healthy(c.schedulerPort, "/readyz"); !ok {
		return false, "kube-scheduler " + why
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(cctx, "default", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "ServiceAccount default/default (made by the serviceaccount controller)"
	} else if err != nil {
		return false, err.Error()
	}
	if c.real != nil {
		if ok, why := c.real.ready(cctx, cs); !ok {
			return false, "real node: " + why
		}
	}
	if c.nodes > 0 {
		ok, why, err := nodesReady(cctx, cs, c.nodes)
		if err != nil {
			return false, err.Error()
		}
		if !ok {
			return false, "nodes: " + why
		}
	}
	return true, ""
}

// stop stops the children, last started first.
func (c *components) stop() {
	if c == nil {
		return
	}
	c.real.stop()
	for i := len(c.children) - 1; i >= 0; i-- {
		c.children[i].stop(10 * time.Second)
	}
}

// done returns a channel that yields the failure of the first child to exit.
func (c *components) done() <-chan error {
	out := make(chan error, 1)
	children := c.children
	if c.real != nil {
		children = append(append([]*child(nil), children...), c.real.containerd, c.real.kubelet)
	}
	for _, ch := range children {
		go func() {
			<-ch.done
			gone, err := ch.exited()
			if gone {
				select {
				case out <- ch.failure(err):
				default:
				}
			}
		}()
	}
	return out
}
