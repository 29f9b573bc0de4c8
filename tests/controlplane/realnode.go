package main

// --real-node: one real node, real-node-0, next to the kwok nodes. containerd (Debian's
// package) and a kubelet of the apiserver's release (built from k8s.io/kubernetes/cmd/kubelet
// in this module, see scripts/controlplane.sh build-real-node) run as children; Pods get
// addresses from the CNI bridge and host-local plugins (Debian's containernetworking-plugins)
// on a bridge in this network namespace, so the host reaches Pod IPs directly. Everything
// the node writes lives under DIR/node, except what the kernel keeps elsewhere: the bridge
// (kcp<slot>), the cgroups under /kube-controlplane-<slot>, the Pods' network namespaces
// (/var/run/netns/cni-*) and the shims' sockets; shutdown removes the Pods first, then those.

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	realNodeName = "real-node-0"
	// RealNodeLabel (value "true") and a NoSchedule taint of the same key mark the real
	// node: Pods land there only when they tolerate the taint.
	realNodeLabel = "appimage.kuscia.secretflow/real-node"
	// The name under which the pause image (--pause-image) is imported: containerd's
	// sandbox_image. Built here from busybox-static (scripts/images.sh), never pulled.
	pauseImageName = "localhost/kube-controlplane/pause:busybox"
	// Slots let several real nodes run on one machine at once (parallel test runs): slot
	// k owns bridge kcp<k>, Pod subnet 10.247.(240+k).0/24 (past the kwok nodes' podCIDRs,
	// which end at 10.247.231.0/24) and cgroup root /kube-controlplane-<k>.
	realNodeSlots = 10
)

type realNode struct {
	dir         string // DIR/node
	slot        int
	lock        *os.File
	bridge      string
	subnet      string // 10.247.(240+slot).0/24
	nodeIP      string // the bridge's address, 10.247.(240+slot).1: the kubelet's --node-ip
	cgroupRoot  string
	sock        string // containerd's CRI socket
	kubeletPort int
	healthPort  int
	kubeletBin  string
	pauseImage  string
	containerd  *child
	kubelet     *child
	stopOnce    sync.Once
}

// realNodeOptions are the command-line inputs of the real node.
type realNodeOptions struct {
	kubelet    string // path of the kubelet binary
	pauseImage string // OCI or docker archive of the pause image
}

// realNodePrereqs names what is missing on this machine for --real-node, or "".
func realNodePrereqs(o realNodeOptions) string {
	var missing []string
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (Debian package containerd / runc)")
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, plugin)); err != nil {
			missing = append(missing, filepath.Join(cniBinDir, plugin)+" (Debian package containernetworking-plugins)")
		}
	}
	if _, err := os.Stat(o.kubelet); err != nil {
		missing = append(missing, o.kubelet+" (scripts/controlplane.sh build-real-node)")
	}
	if _, err := os.Stat(o.pauseImage); err != nil {
		missing = append(missing, o.pauseImage+" (scripts/controlplane.sh build-real-node)")
	}
	return strings.Join(missing, ", ")
}

const cniBinDir = "/usr/lib/cni"

// prepareRealNode takes a slot, (re)creates the bridge, writes the configurations and
// the kubelet's certificates. Runs before the apiserver starts: the apiserver's flags
// need the kubelet client certificate.
func prepareRealNode(dir string, o realNodeOptions) (*realNode, error) {
	n := &realNode{dir: filepath.Join(dir, "node"), kubeletBin: o.kubelet, pauseImage: o.pauseImage}
	if err := os.MkdirAll("/run/kube-controlplane", 0o755); err != nil {
		return nil, err
	}
	for k := 0; k < realNodeSlots; k++ {
		f, err := os.OpenFile(fmt.Sprintf("/run/kube-controlplane/slot-%d.lock", k), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		n.slot, n.lock = k, f
		break
	}
	if n.lock == nil {
		return nil, fmt.Errorf("all %d real-node slots are in use (/run/kube-controlplane/slot-*.lock)", realNodeSlots)
	}
	n.bridge = fmt.Sprintf("kcp%d", n.slot)
	n.subnet = fmt.Sprintf("10.247.%d.0/24", 240+n.slot)
	n.nodeIP = fmt.Sprintf("10.247.%d.1", 240+n.slot)
	n.cgroupRoot = fmt.Sprintf("/kube-controlplane-%d", n.slot)
	// A run killed with SIGKILL leaves its mounts, bridge and cgroups: the slot is ours now.
	n.cleanupHost()
	_ = os.RemoveAll(n.dir)
	for _, d := range []string{"containerd", "kubelet/root", "cni/net.d", "cni/ipam", "pod-logs", "volume-plugins", "pki"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// The bridge and its address exist before the kubelet starts: its --node-ip is the
	// bridge's address (a loopback --node-ip leaves the Node without addresses, and
	// the apiserver then cannot reach the kubelet). The bridge plugin adopts it.
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.nodeIP + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	if err := n.makeCgroupRoot(); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	n.kubeletPort, n.healthPort = ports[0], ports[1]
	n.sock = filepath.Join(n.dir, "containerd", "containerd.sock")
	pdir := filepath.Join(dir, "pki")
	ca, caKey := filepath.Join(pdir, "ca.crt"), filepath.Join(pdir, "ca.key")
	_ = os.Remove(filepath.Join(n.dir, "pki", "kubelet.crt"))
	if err := errors.Join(
		genLeaf(ca, caKey, filepath.Join(n.dir, "pki", "kubelet.crt"), filepath.Join(n.dir, "pki", "kubelet.key"),
			pkix.Name{CommonName: userRealNode, Organization: []string{"system:nodes"}}, x509.ExtKeyUsageServerAuth,
			[]net.IP{net.ParseIP(n.nodeIP)}, []string{realNodeName}),
		genLeaf(ca, caKey, filepath.Join(pdir, "apiserver-kubelet-client.crt"), filepath.Join(pdir, "apiserver-kubelet-client.key"),
			pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth,
			nil, nil),
	); err != nil {
		return nil, fmt.Errorf("real node certificates: %w", err)
	}
	return n, nil
}

// apiserverArgs are the apiserver flags the real node needs: the Node authorizer for the
// kubelet's identity, a client certificate for logs/exec (the kubelet trusts our CA), the
// kubelet's certificate checked against our CA, and webhook/aggregated calls to a
// Service's endpoints (no kube-proxy: Pod IPs on the bridge are reachable, ClusterIPs not).
func (n *realNode) apiserverArgs(dir string) []string {
	pdir := filepath.Join(dir, "pki")
	return []string{
		"--authorization-mode=Node,RBAC",
		"--kubelet-client-certificate=" + filepath.Join(pdir, "apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + filepath.Join(pdir, "apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + filepath.Join(pdir, "ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-aggregator-routing=true",
	}
}

func (n *realNode) containerdConfig(registryAddr string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[7]q
  # This machine's root has no CAP_SYS_RESOURCE: writing /proc/self/oom_score_adj below
  # the current value fails ("failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[10]q
`, filepath.Join(n.dir, "containerd", "root"), filepath.Join(n.dir, "containerd", "state"), n.sock,
		n.sock+".ttrpc", filepath.Join(n.dir, "containerd", "debug.sock"), filepath.Join(n.dir, "containerd", "opt"),
		pauseImageName, cniBinDir, filepath.Join(n.dir, "cni", "net.d"), filepath.Join(n.dir, "containerd", "certs.d"))
}

func (n *realNode) cniConfig() string {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kube-controlplane",
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      n.bridge,
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": n.subnet, "gateway": n.nodeIP}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(n.dir, "cni", "ipam"),
			},
		}},
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return string(b)
}

func (n *realNode) kubeletConfig(caCert string) string {
	pki := filepath.Join(n.dir, "pki")
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
tlsCertFile: %[4]s
tlsPrivateKeyFile: %[5]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %[6]s
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: %[7]s
containerRuntimeEndpoint: unix://%[8]s
failSwapOn: false
registerWithTaints:
- key: %[9]s
  value: "true"
  effect: NoSchedule
# The machine's disk may be fuller than the defaults allow (nodefs.available 10%%): a
# DiskPressure taint would keep every Pod away. Images are never collected.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: %[10]s
volumePluginDir: %[11]s
resolvConf: /etc/resolv.conf
serializeImagePulls: false
maxPods: 50
`, n.nodeIP, n.kubeletPort, n.healthPort, filepath.Join(pki, "kubelet.crt"), filepath.Join(pki, "kubelet.key"), caCert,
		n.cgroupRoot, n.sock, realNodeLabel, filepath.Join(n.dir, "pod-logs"), filepath.Join(n.dir, "volume-plugins"))
}

// start starts containerd (configured to pull plain HTTP from the local registry),
// imports the pause image and starts the kubelet.
func (n *realNode) start(ctx context.Context, dir, server string, p *pki, registryAddr string) error {
	hosts := filepath.Join(n.dir, "containerd", "certs.d", registryAddr)
	if err := os.MkdirAll(hosts, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		filepath.Join(n.dir, "containerd", "config.toml"): n.containerdConfig(registryAddr),
		filepath.Join(hosts, "hosts.toml"): fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
			"http://"+registryAddr, "http://"+registryAddr),
		filepath.Join(n.dir, "cni", "net.d", "10-kube-controlplane.conflist"): n.cniConfig(),
		filepath.Join(n.dir, "kubelet", "config.yaml"):                        n.kubeletConfig(p.caCert),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
	}
	if err := writeKubeconfig(filepath.Join(n.dir, "kubelet", "kubeconfig"), server, p, userRealNode); err != nil {
		return err
	}
	var err error
	n.containerd, err = startExternal(dir, "containerd", "containerd", []string{"--config", filepath.Join(n.dir, "containerd", "config.toml")})
	if err != nil {
		return err
	}
	if err := n.waitContainerd(ctx); err != nil {
		return err
	}
	imp := exec.CommandContext(ctx, "ctr", "--address", n.sock, "--namespace", "k8s.io", "images", "import",
		"--no-unpack", n.pauseImage)
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("importing the pause image %s: %v: %s", n.pauseImage, err, strings.TrimSpace(string(out)))
	}
	n.serveAPIToPods(ctx, server)
	n.kubelet, err = startExternal(dir, "kubelet", n.kubeletBin, []string{
		"--config=" + filepath.Join(n.dir, "kubelet", "config.yaml"),
		"--kubeconfig=" + filepath.Join(n.dir, "kubelet", "kubeconfig"),
		"--root-dir=" + filepath.Join(n.dir, "kubelet", "root"),
		"--cert-dir=" + filepath.Join(n.dir, "pki"),
		"--hostname-override=" + realNodeName,
		"--node-ip=" + n.nodeIP,
		"--node-labels=" + realNodeLabel + "=true," + nodeNameLabel + "=" + realNodeName,
		"--v=1",
	})
	return err
}

// waitContainerd waits until containerd's CRI answers Version.
func (n *realNode) waitContainerd(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if gone, err := n.containerd.exited(); gone {
			return n.containerd.failure(err)
		}
		last = withCRI(n.sock, func(ctx context.Context, rs runtimeapi.RuntimeServiceClient) error {
			_, err := rs.Version(ctx, &runtimeapi.VersionRequest{})
			return err
		})
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("containerd's CRI did not answer within 30 s: %v (see %s)", last, n.containerd.logPath)
}

func withCRI(sock string, f func(context.Context, runtimeapi.RuntimeServiceClient) error) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return f(ctx, runtimeapi.NewRuntimeServiceClient(conn))
}

// ready reports whether the kubelet is healthy and real-node-0 is Ready without the
// node lifecycle's taints.
func (n *realNode) ready(ctx context.Context, cs kubernetes.Interface) (bool, string) {
	for _, c := range []*child{n.containerd, n.kubelet} {
		if gone, err := c.exited(); gone {
			return false, c.failure(err).Error()
		}
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.healthPort))
	if err != nil {
		return false, "kubelet /healthz: " + err.Error()
	}
	resp.Body.Close()
	node, err := cs.CoreV1().Nodes().Get(ctx, realNodeName, metav1.GetOptions{})
	if err != nil {
		return false, realNodeName + ": " + err.Error()
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
			return false, fmt.Sprintf("%s not Ready: %s", realNodeName, c.Message)
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Key != realNodeLabel {
			return false, fmt.Sprintf("%s tainted %s", realNodeName, t.Key)
		}
	}
	if len(node.Status.Addresses) == 0 {
		return false, realNodeName + " has no addresses"
	}
	return true, ""
}

// stop stops the kubelet, removes every Pod sandbox (their containers, network namespaces
// and addresses go with them), stops containerd and cleans up what the node left on the host.
func (n *realNode) stop() {
	if n == nil {
		return
	}
	n.stopOnce.Do(n.stopNow)
}

func (n *realNode) stopNow() {
	n.kubelet.stop(10 * time.Second)
	if n.containerd != nil {
		if gone, _ := n.containerd.exited(); !gone {
			err := withCRI(n.sock, func(ctx context.Context, rs runtimeapi.RuntimeServiceClient) error {
				list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
				if err != nil {
					return err
				}
				var errs []error
				for _, s := range list.Items {
					if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
						errs = append(errs, err)
					}
					if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
						errs = append(errs, err)
					}
				}
				return errors.Join(errs...)
			})
			if err != nil {
				errorf("real node: removing Pod sandboxes: %v", err)
			}
		}
		n.containerd.stop(10 * time.Second)
	}
	n.cleanupHost()
	if n.lock != nil {
		n.lock.Close()
	}
}

// cleanupHost unmounts what is mounted under DIR/node (deepest first), deletes the bridge
// and the node's cgroups. Quiet: most of it is usually gone already.
func (n *realNode) cleanupHost() {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && (f[4] == n.dir || strings.HasPrefix(f[4], n.dir+"/")) {
				mounts = append(mounts, f[4])
			}
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
		for _, m := range mounts {
			if err := syscall.Unmount(m, 0); err != nil {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	}
	if n.bridge != "" {
		_ = exec.Command("ip", "link", "del", n.bridge).Run()
		for i := 0; i < 10 && exec.Command("iptables", n.dnatRule("-D")...).Run() == nil; i++ {
		}
	}
	if n.cgroupRoot != "" && cgroupV2() {
		removeCgroupTree(filepath.Join("/sys/fs/cgroup", n.cgroupRoot))
	} else if n.cgroupRoot != "" {
		entries, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range entries {
			removeCgroupTree(filepath.Join("/sys/fs/cgroup", e.Name(), n.cgroupRoot))
		}
	}
}

// removeCgroupTree removes a cgroup directory and its children, deepest first (cgroup
// directories are removed with rmdir, never unlink of their files).
func removeCgroupTree(path string) {
	entries, err := os.ReadDir(path)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(path, e.Name()))
		}
	}
	_ = syscall.Rmdir(path)
}

// makeCgroupRoot creates the kubelet's cgroupRoot in every cgroup v1 hierarchy (the kubelet
// wants it to exist), with the root's cpus and memory nodes in the cpuset hierarchy.
func (n *realNode) makeCgroupRoot() error {
	if cgroupV2() {
		// One hierarchy: the kubelet enables the controllers it needs below its root.
		path := filepath.Join("/sys/fs/cgroup", n.cgroupRoot)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", path, err)
		}
		return nil
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, e := range entries {
		base := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			continue // not a hierarchy (or cgroup v2's unified, which this node does not use)
		}
		if e.Name() == "unified" {
			continue
		}
		path := filepath.Join(base, n.cgroupRoot)
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", path, err)
		}
		if e.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(base, f))
				if err == nil {
					err = os.WriteFile(filepath.Join(path, f), b, 0o644)
				}
				if err != nil {
					return fmt.Errorf("cgroup %s: %w", path, err)
				}
			}
		}
	}
	return nil
}

// cgroupV2 reports whether /sys/fs/cgroup is the unified (v2) hierarchy.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// apiForwardPort is where, on the bridge's address, the apiserver is forwarded for Pods.
const apiForwardPort = 6443

// dnatRule is the iptables rule (op -A or -D) sending the Pods' connections to the
// "kubernetes" Service (10.96.0.1:443, what in-cluster clients use) to the forwarder.
func (n *realNode) dnatRule(op string) []string {
	return []string{"-t", "nat", op, "PREROUTING", "-i", n.bridge, "-d", "10.96.0.1", "-p", "tcp", "--dport", "443",
		"-m", "comment", "--comment", "kube-controlplane " + n.bridge,
		"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%d", n.nodeIP, apiForwardPort)}
}

// serveAPIToPods lets Pods on the node reach the apiserver (which listens on 127.0.0.1
// only) through the "kubernetes" Service's ClusterIP, as in-cluster clients do: a TCP
// forwarder on the bridge's address and one DNAT rule for connections from the bridge. The
// apiserver's certificate names 10.96.0.1. Without iptables, Pods cannot reach the
// apiserver; the node still runs (a line in the log says so).
func (n *realNode) serveAPIToPods(ctx context.Context, server string) {
	target := strings.TrimPrefix(server, "https://")
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", n.nodeIP, apiForwardPort))
	if err != nil {
		errorf("real node: Pods cannot reach the apiserver: %v", err)
		return
	}
	if out, err := exec.Command("iptables", n.dnatRule("-A")...).CombinedOutput(); err != nil {
		errorf("real node: Pods cannot reach the apiserver: iptables: %v: %s", err, strings.TrimSpace(string(out)))
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}
