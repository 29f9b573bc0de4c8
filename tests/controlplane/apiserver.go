package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/zpages/flagz"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

type apiServer struct {
	url      string
	done     chan error    // receives app.Run's result once
	finished chan struct{} // closed when app.Run has returned
	exited   bool
}

// wait waits up to timeout for the API server to return; true if it did.
func (a *apiServer) wait(timeout time.Duration) bool {
	select {
	case <-a.finished:
		return true
	case <-time.After(timeout):
		return false
	}
}

// startAPIServer runs kube-apiserver in-process, doing what the RunE of
// app.NewAPIServerCommand() does, but with our own context (so that shutdown
// is under our control) and our own listener on a free 127.0.0.1 port.
func startAPIServer(ctx context.Context, dir string, p *pki, etcdURL string, logOut *os.File, extraArgs []string) (*apiServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + dir + "/pki",
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--token-auth-file=" + p.tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-account-issuer=" + p.saIssuer,
		"--service-cluster-ip-range=" + p.clusterRange,
		"--allow-privileged=true",
		// The Endpoints of the "kubernetes" Service cannot hold a loopback
		// address; without this the reconciler logs errors forever.
		"--endpoint-reconciler-type=none",
		"--v=0",
	}
	// An extra flag replaces a flag of the same name (list flags would append): --real-node
	// replaces --authorization-mode (see realNode.apiserverArgs).
	for _, extra := range extraArgs {
		name, _, _ := strings.Cut(extra, "=")
		kept := args[:0]
		for _, a := range args {
			if n, _, _ := strings.Cut(a, "="); n != name {
				kept = append(kept, a)
			}
		}
		args = append(kept, extra)
	}

	s := options.NewServerRunOptions()
	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	namedFlagSets := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: namedFlagSets}
	options.AddCustomGlobalFlags(namedFlagSets.FlagSet("generic"))
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		ln.Close()
		return nil, fmt.Errorf("flags: %w", err)
	}
	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = port

	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		ln.Close()
		return nil, err
	}
	// kube-apiserver loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if err := logsapi.ValidateAndApplyWithOptions(s.Logs,
		&logsapi.LoggingOptions{ErrorStream: logOut, InfoStream: logOut}, featureGate); err != nil {
		ln.Close()
		return nil, err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		ln.Close()
		return nil, utilerrors.NewAggregate(errs)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()

	a := &apiServer{
		url:      fmt.Sprintf("https://127.0.0.1:%d", port),
		done:     make(chan error, 1),
		finished: make(chan struct{}),
	}
	go func() {
		err := app.Run(ctx, completed)
		if err == nil && ctx.Err() == nil {
			err = errors.New("returned without error")
		}
		a.done <- err
		close(a.finished)
	}()
	return a, nil
}

// writeKubeconfig writes a kubeconfig for user (a name in the static token file).
func writeKubeconfig(path, server string, p *pki, user string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["controlplane"] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: p.caPEM,
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: p.tokens[user]}
	cfg.Contexts["controlplane"] = &clientcmdapi.Context{Cluster: "controlplane", AuthInfo: user}
	cfg.CurrentContext = "controlplane"
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waitReady polls /readyz until it answers 200 "ok", then makes sure the
// "default" namespace exists.
func waitReady(ctx context.Context, a *apiServer, p *pki, deadline time.Time, etcdErr <-chan error) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.caPEM) {
		return errors.New("cannot parse CA certificate")
	}
	hc := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	defer hc.CloseIdleConnections()
	last := "no answer yet"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+p.adminToken)
		if resp, err := hc.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				break
			}
			last = fmt.Sprintf("/readyz: HTTP %d: %s", resp.StatusCode, lastLines(string(body), 6))
		}
		select {
		case err := <-a.done:
			a.exited = true
			return fmt.Errorf("kube-apiserver exited: %v", err)
		case err := <-etcdErr:
			return fmt.Errorf("etcd failed: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out; last: %s", last)
		}
	}

	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host:            a.url,
		BearerToken:     p.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.caPEM},
	})
	if err != nil {
		return err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cs.CoreV1().Namespaces().Get(cctx, metav1.NamespaceDefault, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = cs.CoreV1().Namespaces().Create(cctx,
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceDefault}}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("creating namespace default: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	// readyz lists checks; show the failing ones if possible.
	var failed []string
	for _, l := range lines {
		if strings.HasPrefix(l, "[-]") {
			failed = append(failed, l)
		}
	}
	if len(failed) > 0 {
		lines = failed
	}
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "; ")
}
