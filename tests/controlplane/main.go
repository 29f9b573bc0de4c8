// kube-controlplane: a whole Kubernetes cluster for end-to-end tests: kube-apiserver
// and embedded etcd in this process; kube-controller-manager, kube-scheduler and
// (with --nodes) kwok's simulated nodes as child processes of this same binary.
//
//	kube-controlplane --dir DIR [--nodes N [--node-labels k=v,...]] [--real-node [--kubelet PATH] [--pause-image PATH]]
//	                  [--registry] [--parent-pid N [--remove-dir]]
//
// --real-node adds one real node, real-node-0 (containerd, a kubelet, CNI bridge; see
// realnode.go) and implies --registry: a local OCI registry on 127.0.0.1 (registry.go)
// whose address is in DIR/registry.addr.
//
// Everything listens on 127.0.0.1 on ports chosen at runtime. When the cluster is
// ready, the admin kubeconfig is at DIR/kubeconfig, DIR/ready holds its path, and
// one line "READY <path>" is printed on stdout. SIGTERM/SIGINT (or the death of
// --parent-pid) stops the children, the API server and etcd, exit code 0.
// With --remove-dir, DIR is deleted after a shutdown caused by the parent's
// death: a test binary cannot clean up a control plane it holds in a static.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/grpclog"
)

// startTimeout is the limit to READY, plus startPerNode for each simulated node: the node
// lifecycle controller untaints hundreds of nodes at its client's rate.
const (
	startTimeout = 120 * time.Second
	startPerNode = 150 * time.Millisecond
	// realNodeStartTimeout: containerd, the pause image's import, the kubelet's first
	// registration and its CNI network becoming ready.
	realNodeStartTimeout = 120 * time.Second
)

func main() {
	if code, ok := runSubcommand(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(run())
}

func errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kube-controlplane: "+format+"\n", args...)
}

func run() int {
	var dir string
	var parentPID int
	var removeDir bool
	var nodes int
	var nodeLabelsFlag string
	fs := flag.NewFlagSet("kube-controlplane", flag.ContinueOnError)
	fs.StringVar(&dir, "dir", "", "state directory (created if missing); required")
	fs.IntVar(&parentPID, "parent-pid", 0, "exit cleanly when this process no longer exists")
	fs.BoolVar(&removeDir, "remove-dir", false, "delete --dir after the --parent-pid process is gone and everything stopped")
	fs.IntVar(&nodes, "nodes", 0, fmt.Sprintf("simulated (kwok) nodes kwok-node-0..N-1, at most %d", maxNodes))
	fs.StringVar(&nodeLabelsFlag, "node-labels", "", "labels k=v,... for every node (with --nodes)")
	fs.IntVar(&nodeLeaseSeconds, "node-lease-seconds", defaultNodeLease, fmt.Sprintf("the kwok nodes' lease duration, %d..%d s; renewed every quarter of it (raise it for thousands of nodes)", defaultNodeLease, maxNodeLease))
	var withRegistry, withRealNode bool
	var realOpts realNodeOptions
	exeDir := "."
	if self, err := os.Executable(); err == nil {
		exeDir = filepath.Dir(self)
	}
	fs.BoolVar(&withRegistry, "registry", false, "run a local OCI registry on 127.0.0.1 (address in DIR/registry.addr)")
	fs.BoolVar(&withRealNode, "real-node", false, "run one real node, "+realNodeName+" (containerd, kubelet, CNI bridge); implies --registry")
	fs.StringVar(&realOpts.kubelet, "kubelet", filepath.Join(exeDir, "kubelet"), "kubelet binary for --real-node")
	fs.StringVar(&realOpts.pauseImage, "pause-image", filepath.Join(exeDir, "images", "pause.tar"), "pause image archive for --real-node, imported as "+pauseImageName)
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if dir == "" || fs.NArg() != 0 {
		errorf("usage: kube-controlplane --dir DIR [--nodes N [--node-labels k=v,...]] [--real-node [--kubelet PATH] [--pause-image PATH]] [--registry] [--parent-pid N [--remove-dir]]")
		return 2
	}
	if nodes < 0 || nodes > maxNodes {
		errorf("--nodes %d: must be between 0 and %d", nodes, maxNodes)
		return 2
	}
	if nodeLeaseSeconds < defaultNodeLease || nodeLeaseSeconds > maxNodeLease {
		errorf("--node-lease-seconds %d: must be between %d and %d", nodeLeaseSeconds, defaultNodeLease, maxNodeLease)
		return 2
	}
	nodeLabels, err := parseNodeLabels(nodeLabelsFlag)
	if err != nil {
		errorf("%v", err)
		return 2
	}
	if len(nodeLabels) > 0 && nodes == 0 {
		errorf("--node-labels needs --nodes N (N > 0)")
		return 2
	}
	if withRealNode {
		withRegistry = true
		// Children run in DIR: relative paths would name other files there.
		for _, p := range []*string{&realOpts.kubelet, &realOpts.pauseImage} {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
		if missing := realNodePrereqs(realOpts); missing != "" {
			errorf("--real-node: missing on this machine: %s", missing)
			return 1
		}
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		errorf("invalid --dir: %v", err)
		return 2
	}
	dir = absDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		errorf("cannot create %s: %v", dir, err)
		return 1
	}
	readyFile := filepath.Join(dir, "ready")
	_ = os.Remove(readyFile)

	logPath := filepath.Join(dir, "apiserver.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		errorf("cannot open %s: %v", logPath, err)
		return 1
	}
	defer logFile.Close()
	// Route every library logger we can reach into the log file; stdout is
	// reserved for the READY line and stderr for our own messages.
	log.SetOutput(logFile)
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, logFile, logFile))

	start := time.Now()
	deadline := start.Add(startTimeout + time.Duration(nodes)*startPerNode)
	if withRealNode {
		deadline = deadline.Add(realNodeStartTimeout)
	}

	// Signals and parent watch cancel ctx; a second signal forces exit.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigCh
		cancel()
		<-sigCh
		errorf("second signal, exiting immediately")
		os.Exit(0)
	}()
	var parentGone atomic.Bool
	if parentPID > 0 {
		go watchParent(ctx, parentPID, func() {
			parentGone.Store(true)
			cancel()
		})
		if removeDir {
			// Runs when run returns, after the API server and etcd have stopped.
			defer func() {
				if parentGone.Load() {
					_ = os.RemoveAll(dir)
				}
			}()
		}
	}

	p, err := ensurePKI(dir)
	if err != nil {
		errorf("generating certificates/keys: %v", err)
		return 1
	}

	var real *realNode
	var apiExtra []string
	if withRealNode {
		if real, err = prepareRealNode(dir, realOpts); err != nil {
			errorf("--real-node: %v", err)
			return 1
		}
		// Stops the node if we return before the components own it (comps.stop stops it after).
		defer real.stop()
		apiExtra = real.apiserverArgs(dir)
	}
	var reg *localRegistry
	if withRegistry {
		if reg, err = startRegistry(ctx, dir); err != nil {
			errorf("starting the registry: %v", err)
			return 1
		}
	}

	etcd, etcdURL, err := startEtcd(ctx, dir, deadline)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		errorf("starting etcd: %v (see %s)", err, filepath.Join(dir, "etcd.log"))
		return 1
	}
	stopEtcd := func() {
		done := make(chan struct{})
		go func() { etcd.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			errorf("etcd did not stop within 20s")
		}
	}

	api, err := startAPIServer(ctx, dir, p, etcdURL, logFile, apiExtra)
	if err != nil {
		stopEtcd()
		errorf("starting kube-apiserver: %v (see %s)", err, logPath)
		return 1
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, api.url, p, userAdmin); err != nil {
		cancel()
		api.wait(30 * time.Second)
		stopEtcd()
		errorf("writing kubeconfig: %v", err)
		return 1
	}

	if err := waitReady(ctx, api, p, deadline, etcd.Err()); err != nil {
		cancel()
		api.wait(30 * time.Second)
		stopEtcd()
		if ctx.Err() != nil && !strings.Contains(err.Error(), "exited") {
			return 0 // stopped by signal/parent during startup
		}
		errorf("control plane not ready after %s: %v", time.Since(start).Round(time.Millisecond), err)
		errorf("last lines of %s:\n%s", logPath, tail(logPath, 25))
		return 1
	}
	comps, err := startComponents(ctx, dir, api.url, p, nodes, nodeLabels)
	if err == nil && real != nil {
		comps.real = real
		err = real.start(ctx, dir, api.url, p, reg.addr)
	}
	if err == nil {
		err = comps.wait(ctx, api.url, p, deadline, logFile)
	}
	if err != nil {
		// Stopped by a signal or the parent's death, or a failure: decided before cancel().
		stopped := ctx.Err() != nil
		comps.stop()
		cancel()
		api.wait(30 * time.Second)
		stopEtcd()
		if stopped {
			return 0
		}
		errorf("cluster not ready after %s: %v", time.Since(start).Round(time.Millisecond), err)
		return 1
	}
	if err := writeFileAtomic(readyFile, []byte(kubeconfig)); err != nil {
		comps.stop()
		cancel()
		api.wait(30 * time.Second)
		stopEtcd()
		errorf("writing %s: %v", readyFile, err)
		return 1
	}
	fmt.Fprintf(os.Stdout, "READY %s\n", kubeconfig)
	_ = os.Stdout.Sync()
	fmt.Fprintf(logFile, "kube-controlplane: READY after %s, apiserver %s, etcd %s, %d nodes, real node %v\n",
		time.Since(start).Round(time.Millisecond), api.url, etcdURL, nodes, real != nil)

	code := 0
	select {
	case <-ctx.Done():
	case err := <-api.done:
		api.exited = true
		errorf("kube-apiserver exited unexpectedly: %v (see %s)", err, logPath)
		code = 1
	case err := <-etcd.Err():
		errorf("etcd failed: %v", err)
		code = 1
	case err := <-comps.done():
		errorf("%v", err)
		code = 1
	}
	_ = os.Remove(readyFile)
	comps.stop()
	cancel()
	if !api.wait(30 * time.Second) {
		errorf("kube-apiserver did not stop within 30s")
	}
	stopEtcd()
	return code
}

// watchParent cancels when process pid is gone (or a zombie), polling every second.
func watchParent(ctx context.Context, pid int, cancel func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if !processAlive(pid) {
			fmt.Fprintf(os.Stderr, "kube-controlplane: parent process %d is gone, shutting down\n", pid)
			cancel()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return false
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 && s[i+2] == 'Z' {
			return false
		}
	}
	return true
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
