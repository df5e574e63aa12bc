package server

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestConformance runs the OCI distribution-spec conformance suite (a
// separate Go program, built outside this module: see
// docs/registry-server.md) against a fresh registry on loopback. It is
// skipped unless BERTH_CONFORMANCE_BIN names the built binary.
func TestConformance(t *testing.T) {
	bin := os.Getenv("BERTH_CONFORMANCE_BIN")
	if bin == "" {
		t.Skip("BERTH_CONFORMANCE_BIN is not set (see docs/registry-server.md to build the suite)")
	}
	addr := startServer(t)
	results := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+addr,
		"OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results,
		// Optional features berth has: turn their checks on.
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	report := out.String()
	if os.Getenv("BERTH_CONFORMANCE_REPORT") != "" {
		os.WriteFile(os.Getenv("BERTH_CONFORMANCE_REPORT"), out.Bytes(), 0o644)
	}
	counts := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(Pass|Skip|Disabled|FAIL|Error|Total)\.*:\s+(\d+)$`).FindAllStringSubmatch(report, -1) {
		if _, seen := counts[m[1]]; !seen {
			counts[m[1]] = m[2]
		}
	}
	t.Logf("conformance: pass %s, fail %s, error %s, skip %s, disabled %s, total %s",
		counts["Pass"], counts["FAIL"], counts["Error"], counts["Skip"], counts["Disabled"], counts["Total"])
	if err != nil || counts["FAIL"] != "0" || counts["Error"] != "0" {
		i := strings.Index(report, "OCI Conformance Result")
		if i < 0 {
			i = 0
		}
		t.Fatalf("conformance suite failed (%v):\n%s", err, report[:min(len(report), i+4000)])
	}
}

// startServer serves a registry over a fresh store on 127.0.0.1 and
// returns its host:port; it is stopped when the test ends.
func startServer(t *testing.T, opts ...Option) string {
	t.Helper()
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(store, opts...).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}
