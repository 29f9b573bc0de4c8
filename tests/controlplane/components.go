package main

import (
	"fmt"
	"path/filepath"
)

// The cluster-wide ranges. Pod IPs come from each node's podCIDR (10.244.<i>.0/24 for the
// first 256 nodes, then 10.245 .. 10.247, and past 1,000 nodes 10.224 .. 10.239: see podCIDR).
const (
	clusterCIDR = "10.224.0.0/11"
)

// The kwok nodes' lease: kwok renews each every quarter of its duration, so 5,000 nodes at the
// kubelet's 40 s make 500 lease writes a second, more than two cores serve beside the rest;
// the node lifecycle controller then finds leases late and marks every Pod not Ready.
const (
	defaultNodeLease = 40
	maxNodeLease     = 3600
)

// nodeLeaseSeconds is --node-lease-seconds.
var nodeLeaseSeconds = defaultNodeLease

// nodeMonitorGrace: the controller-manager's default (50 s) for the default lease, else as
// far past the lease as that is (a quarter of it).
func nodeMonitorGrace() []string {
	if nodeLeaseSeconds == defaultNodeLease {
		return nil
	}
	return []string{fmt.Sprintf("--node-monitor-grace-period=%ds", nodeLeaseSeconds+nodeLeaseSeconds/4)}
}

// controllerManagerArgs: every default controller (deployment, replicaset, statefulset,
// daemonset, job, cronjob, garbage collector, namespace, endpoints, endpointslice,
// serviceaccount and token, node lifecycle, ...), each with its own service account
// credentials, no leader election (one instance), health on 127.0.0.1:port.
func controllerManagerArgs(dir string, p *pki, port int) []string {
	return append([]string{
		"--kubeconfig=" + filepath.Join(dir, "controller-manager.kubeconfig"),
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + p.saKey,
		"--root-ca-file=" + p.caCert,
		"--cluster-name=controlplane",
		"--cluster-cidr=" + clusterCIDR,
		"--service-cluster-ip-range=" + p.clusterRange,
		// Above the default 20/s: with hundreds of nodes the node lifecycle and workload
		// controllers would otherwise queue behind the client's rate limit.
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "pki", "controller-manager"),
		"--v=0",
	}, nodeMonitorGrace()...)
}

func schedulerArgs(dir string, port int) []string {
	return []string{
		"--kubeconfig=" + filepath.Join(dir, "scheduler.kubeconfig"),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "pki", "scheduler"),
		"--v=0",
	}
}

func kwokArgs(dir string) []string {
	return []string{
		"--kubeconfig=" + filepath.Join(dir, "kwok.kubeconfig"),
		"--config=" + filepath.Join(dir, "kwok.yaml"),
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		fmt.Sprintf("--node-lease-duration-seconds=%d", nodeLeaseSeconds),
		"--v=WARN", // kwok logs every lease renewal at INFO
	}
}
