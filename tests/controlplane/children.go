package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as the upstream mains do
	_ "k8s.io/component-base/metrics/prometheus/version"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "time/tzdata" // CronJob time zones, as kube-controller-manager's main has it
)

// Hidden subcommands: the parent re-executes this binary as each component, so that
// each has its own global flags, feature gates, metrics registry and signal handling.
const (
	subControllerManager = "controller-manager"
	subScheduler         = "scheduler"
	subKwok              = "kwok"
)

// runSubcommand runs a component in this (child) process; ok is false if args[0] names none.
func runSubcommand(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case subControllerManager, subScheduler, subKwok:
		// Upstream mains read os.Args; make them see only the component's own flags.
		os.Args = append([]string{os.Args[0] + " " + args[0]}, args[1:]...)
	default:
		return 0, false
	}
	switch args[0] {
	case subControllerManager:
		cmd := kcmapp.NewControllerManagerCommand()
		cmd.SetArgs(args[1:])
		return cli.Run(cmd), true
	case subScheduler:
		cmd := schedapp.NewSchedulerCommand()
		cmd.SetArgs(args[1:])
		return cli.Run(cmd), true
	case subKwok:
		return runKwok(args[1:]), true
	}
	return 0, false
}

// child is one component process started by the parent.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, valid after done
}

// spawnRequests is served by one goroutine locked to its OS thread: PR_SET_PDEATHSIG
// fires when the *thread* that forked the child exits, so that thread must live as
// long as the process.
var spawnRequests = make(chan func())

func init() {
	go func() {
		runtime.LockOSThread()
		for f := range spawnRequests {
			f()
		}
	}()
}

// startChild re-executes this binary as subcommand sub, its stdout and stderr in
// DIR/<name>.log. The child is killed if this process dies.
func startChild(dir, name, sub string, args []string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startExternal(dir, name, self, append([]string{sub}, args...))
}

// startExternal runs program (a path, or a name looked up on PATH) with args as a child,
// like startChild: output in DIR/<name>.log, killed if this process dies.
func startExternal(dir, name, program string, args []string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	c := &child{name: name, logPath: logPath, done: make(chan struct{})}
	c.cmd = exec.Command(program, args...)
	c.cmd.Stdout = logFile
	c.cmd.Stderr = logFile
	c.cmd.Dir = dir
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	errCh := make(chan error, 1)
	spawnRequests <- func() { errCh <- c.cmd.Start() }
	if err := <-errCh; err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the child has exited, with its status.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		if c.err == nil {
			return true, errors.New("exited with status 0")
		}
		return true, c.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, then SIGKILL after grace; it waits for the exit.
func (c *child) stop(grace time.Duration) {
	if c == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(grace):
	}
	errorf("%s did not stop within %s, killing it", c.name, grace)
	_ = c.cmd.Process.Kill()
	<-c.done
}

// failure describes an unexpected exit, with the end of the child's log.
func (c *child) failure(err error) error {
	return fmt.Errorf("%s %v (see %s); last lines:\n%s", c.name, err, c.logPath, tail(c.logPath, 25))
}

// healthy asks https://127.0.0.1:port/path (a component's self-signed serving
// certificate, anonymous access to health paths) and reports whether it said ok.
func healthy(port int, path string) (bool, string) {
	hc := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // loopback health probe
	}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", port, path))
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
		return true, ""
	}
	return false, fmt.Sprintf("%s: HTTP %d: %s", path, resp.StatusCode, lastLines(string(body), 6))
}
