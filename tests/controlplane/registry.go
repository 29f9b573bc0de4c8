package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// A local OCI registry (distribution API v2) on 127.0.0.1, in this process:
// go-containerregistry's pkg/registry, a small handler made for tests (its own
// dependency check keeps it to the standard library and go-containerregistry's v1
// types), with blobs on disk under DIR/registry and manifests in memory. It holds
// what is pushed while this process lives: tests push their images after READY.
type localRegistry struct {
	addr string // 127.0.0.1:PORT
	srv  *http.Server
}

func startRegistry(ctx context.Context, dir string) (*localRegistry, error) {
	blobs := filepath.Join(dir, "registry", "blobs")
	_ = os.RemoveAll(filepath.Join(dir, "registry")) // manifests do not survive a restart; neither do blobs
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logFile.Close()
		return nil, err
	}
	logger := log.New(logFile, "", log.LstdFlags)
	h := registry.New(registry.Logger(logger), registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)))
	r := &localRegistry{addr: ln.Addr().String(), srv: &http.Server{Handler: h, ErrorLog: logger, ReadHeaderTimeout: 30 * time.Second}}
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("registry stopped: %v", err)
		}
		logFile.Close()
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.srv.Shutdown(sctx)
	}()
	if err := writeFileAtomic(filepath.Join(dir, "registry.addr"), []byte(r.addr+"\n")); err != nil {
		return nil, fmt.Errorf("writing registry.addr: %w", err)
	}
	return r, nil
}
