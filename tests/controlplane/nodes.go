package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

const (
	maxNodes = 5000
	// Every node carries nodeNameLabel=<its name>, so that a test can target a subset.
	nodeNameLabel = "appimage.test/node"
)

// nodeName is the name of the i-th simulated node: kwok-node-0 .. kwok-node-(N-1).
func nodeName(i int) string { return fmt.Sprintf("kwok-node-%d", i) }

// parseNodeLabels parses "k=v,k2=v2" (--node-labels) into a map, checking keys and values
// as the API server would, so that a typo fails at start with the flag named.
func parseNodeLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return labels, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("--node-labels: %q is not key=value (example: --node-labels zone=a,tier=gpu)", kv)
		}
		if errs := validation.IsQualifiedName(k); len(errs) != 0 {
			return nil, fmt.Errorf("--node-labels: invalid key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) != 0 {
			return nil, fmt.Errorf("--node-labels: invalid value %q for %q: %s", v, k, strings.Join(errs, "; "))
		}
		if k == nodeNameLabel || k == hookNodeNotReady {
			return nil, fmt.Errorf("--node-labels: %q is set by kube-controlplane itself; choose another key", k)
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("--node-labels: key %q given twice", k)
		}
		labels[k] = v
	}
	return labels, nil
}

// fakeNode is the i-th Node object: managed by kwok (annotation), no taints, its own
// podCIDR (kwok takes Pod IPs from it), and the given labels plus its own name label.
func fakeNode(i int, labels map[string]string) *corev1.Node {
	name := nodeName(i)
	l := map[string]string{
		nodeNameLabel:            name,
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	for k, v := range labels {
		l[k] = v
	}
	cidr := podCIDR(i)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      l,
			Annotations: map[string]string{kwokNodeAnnotation: "fake", "node.alpha.kubernetes.io/ttl": "0"},
		},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
}

// podCIDR is the i-th node's: 10.244.<i>.0/24 for the first 256, on through 10.247.231 for
// the first 1,000 (the real node's bridges sit past them), then from 10.224.0.0/24 for the
// rest, up to 5,000; all within clusterCIDR.
func podCIDR(i int) string {
	if i < 1000 {
		return fmt.Sprintf("10.%d.%d.0/24", 244+i/256, i%256)
	}
	j := i - 1000
	return fmt.Sprintf("10.%d.%d.0/24", 224+j/256, j%256)
}

// ensureNodes creates the N nodes (a reused DIR keeps existing ones) and deletes
// simulated nodes from an earlier start with a larger N.
func ensureNodes(ctx context.Context, cs kubernetes.Interface, n int, labels map[string]string) error {
	want := map[string]bool{}
	// 32 creates in flight: one by one, 5,000 nodes take minutes of round trips.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 0; i < n; i++ {
		node := fakeNode(i, labels)
		want[node.Name] = true
		g.Go(func() error {
			_, err := cs.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating node %s: %w", node.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodeNameLabel})
	if err != nil {
		return err
	}
	for _, node := range list.Items {
		if !want[node.Name] && strings.HasPrefix(node.Name, "kwok-node-") {
			if err := cs.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting stale node %s: %w", node.Name, err)
			}
		}
	}
	return nil
}

// nodesReady reports whether all N nodes are Ready and untainted (the node lifecycle
// controller has removed its not-ready taint), else which are not. One LIST, not N GETs:
// the check runs in a 5 s context, which N GETs cannot fit for hundreds of nodes.
func nodesReady(ctx context.Context, cs kubernetes.Interface, n int) (bool, string, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodeNameLabel})
	if err != nil {
		return false, "", err
	}
	byName := make(map[string]*corev1.Node, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	var waiting []string
	for i := 0; i < n; i++ {
		node, ok := byName[nodeName(i)]
		if !ok {
			waiting = append(waiting, nodeName(i)+" not created")
			continue
		}
		ready := false
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		switch {
		case !ready:
			waiting = append(waiting, node.Name+" not Ready")
		case len(node.Spec.Taints) > 0:
			waiting = append(waiting, fmt.Sprintf("%s tainted %v", node.Name, taintKeys(node.Spec.Taints)))
		}
	}
	if len(waiting) > 5 {
		waiting = append(waiting[:5], fmt.Sprintf("and %d more", len(waiting)-5))
	}
	return len(waiting) == 0, strings.Join(waiting, ", "), nil
}

func taintKeys(ts []corev1.Taint) []string {
	var keys []string
	for _, t := range ts {
		keys = append(keys, t.Key)
	}
	sort.Strings(keys)
	return keys
}
