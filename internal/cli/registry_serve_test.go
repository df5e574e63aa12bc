package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/errdefs"
)

// lockedBuffer is written by the command's goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRegistryServe(t *testing.T) {
	// The real root command: its persistent --root (the engine's) must be
	// shadowed by serve's own.
	root := rootWithServe()
	storage := filepath.Join(t.TempDir(), "reg")
	var out lockedBuffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"registry", "serve", "--addr", "127.0.0.1:0", "--root", storage})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	addrRe := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		if m := addrRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := os.Stat(filepath.Join(storage, "blobs")); err != nil {
		t.Errorf("storage not under --root: %v", err)
	}
	cancel() // as SIGINT would
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not shut down")
	}
}

func TestRegistryServeNeedsRoot(t *testing.T) {
	root := rootWithServe()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"registry", "serve", "--addr", "127.0.0.1:0"})
	if err := root.Execute(); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("serve without --root: %v, want invalid argument", err)
	}
}

// rootWithServe is berth's root command with `registry serve`, whether or
// not cli.go wires it in yet.
func rootWithServe() *cobra.Command {
	root := newRootCommand()
	if c, _, err := root.Find([]string{"registry", "serve"}); err != nil || c.Name() != "serve" {
		addRegistryServeCommands(root)
	}
	return root
}
