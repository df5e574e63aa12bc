package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
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

// runningServe is `berth registry serve` running in the test's process.
type runningServe struct {
	addr           string // 127.0.0.1:PORT
	stdout, stderr *lockedBuffer
	stop           func() error // as SIGINT would; the command's result
}

// startServe runs `berth registry serve args...` until the test ends and
// waits for it to say where it listens.
func startServe(t *testing.T, args ...string) *runningServe {
	t.Helper()
	// The real root command: its persistent --root (the engine's) must be
	// shadowed by serve's own.
	root := rootWithServe()
	rs := &runningServe{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	root.SetOut(rs.stdout)
	root.SetErr(rs.stderr)
	root.SetArgs(append([]string{"registry", "serve"}, args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var once sync.Once
	var result error
	rs.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Error("serve did not shut down")
			}
		})
		return result
	}
	t.Cleanup(func() { rs.stop() })

	addrRe := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if m := addrRe.FindStringSubmatch(rs.stdout.String()); m != nil {
			rs.addr = m[1]
			return rs
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s%s", err, rs.stdout, rs.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address printed:\n%s", rs.stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runServe runs `berth registry serve args...` expecting it to fail.
func runServe(t *testing.T, args ...string) error {
	t.Helper()
	root := rootWithServe()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"registry", "serve"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	if err == nil {
		t.Fatalf("serve %v: no error", args)
	}
	return err
}

func httpGet(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRegistryServe(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "reg")
	rs := startServe(t, "--addr", "127.0.0.1:0", "--root", storage)
	resp, _ := httpGet(t, nil, "http://"+rs.addr+"/v2/")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := os.Stat(filepath.Join(storage, "blobs")); err != nil {
		t.Errorf("storage not under --root: %v", err)
	}
	if err := rs.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestRegistryServeNeedsRoot(t *testing.T) {
	if err := runServe(t, "--addr", "127.0.0.1:0"); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "--root") {
		t.Fatalf("serve without --root: %v, want invalid argument naming --root", err)
	}
}

// TestRegistryServeConfigFile runs from a file, with flags over it: the
// file's settings hold where no flag is given (JSON log, no delete), flags
// given win (--addr), relative paths are the file's.
func TestRegistryServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "registry.yaml")
	os.WriteFile(cfg, []byte(`
addr: 127.0.0.1:1   # overridden by --addr
root: storage
delete:
  enabled: false
log:
  format: json
  accessLog: true
`), 0o644)
	rs := startServe(t, "--config", cfg, "--addr", "127.0.0.1:0")
	base := "http://" + rs.addr
	if _, err := os.Stat(filepath.Join(dir, "storage", "blobs")); err != nil {
		t.Errorf("root: storage not taken from the file's directory: %v", err)
	}

	// Health.
	if resp, body := httpGet(t, nil, base+"/health"); resp.StatusCode != 200 || body != `{"status":"ok"}`+"\n" {
		t.Errorf("/health: %d %s", resp.StatusCode, body)
	}
	// Deletes are off (the file), and counted by code.
	req, _ := http.NewRequest("DELETE", base+"/v2/a/manifests/v1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("DELETE with delete.enabled false: %d", resp.StatusCode)
	}
	for range 3 {
		httpGet(t, nil, base+"/v2/")
	}
	_, metrics := httpGet(t, nil, base+"/metrics")
	for _, want := range []string{
		`berth_registry_http_requests_total{method="GET",code="200"} 4` + "\n", // /health and 3 × /v2/
		`berth_registry_http_requests_total{method="DELETE",code="405"} 1` + "\n",
		"berth_registry_storage_blobs 0\n",
		"berth_registry_uploads_in_progress 0\n",
		"# TYPE process_resident_memory_bytes gauge\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}

	// Access log: JSON (the file's format), one line per request but the
	// probes, which are at debug level.
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(rs.stderr.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if rec["msg"] == "request" {
			lines = append(lines, rec)
		}
	}
	if len(lines) != 4 {
		t.Fatalf("want 4 access log lines (DELETE and 3 GETs), got %d:\n%s", len(lines), rs.stderr)
	}
	if l := lines[0]; l["method"] != "DELETE" || l["path"] != "/v2/a/manifests/v1" || l["status"] != 405.0 || l["user_agent"] == "" {
		t.Errorf("access log line: %v", l)
	}
}

func TestRegistryServeFlagsOverFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "registry.yaml")
	os.WriteFile(cfg, []byte("root: storage\nlog:\n  format: json\n  accessLog: true\nmetrics:\n  enabled: true\n"), 0o644)
	rs := startServe(t, "--config", cfg, "--addr", "127.0.0.1:0", "--log-format", "text", "--access-log=false", "--metrics=false")
	base := "http://" + rs.addr
	if resp, _ := httpGet(t, nil, base+"/metrics"); resp.StatusCode != 404 {
		t.Errorf("/metrics with --metrics=false: %d", resp.StatusCode)
	}
	rs.stop()
	if strings.Contains(rs.stderr.String(), "msg=request") || strings.Contains(rs.stderr.String(), `"msg":"request"`) {
		t.Errorf("--access-log=false did not stop the access log:\n%s", rs.stderr)
	}
}

func TestRegistryServeRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "registry.yaml")
	os.WriteFile(cfg, []byte("root: /tmp/x\nhttp:\n  plian: true\n"), 0o644)
	err := runServe(t, "--config", cfg)
	msg := userMessage(err)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(msg, `"plian"`) || !strings.Contains(msg, cfg) || strings.Contains(msg, "\n") {
		t.Fatalf("unknown key: %q, want one line naming the key and the file (invalid argument)", msg)
	}
}

func TestRegistryServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	root := filepath.Join(t.TempDir(), "reg")
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		err := runServe(t, "--addr", addr, "--root", root)
		msg := userMessage(err)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(msg, "--tls-cert") || !strings.Contains(msg, "--insecure-http") {
			t.Errorf("--addr %s without TLS: %q, want a refusal saying what to do", addr, msg)
		}
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("storage created before the configuration was checked")
	}
}

// TestRegistryServeTLS serves TLS with a certificate of a test CA, with
// client certificates required: a Go client and skopeo (--src-cert-dir,
// the layout Docker's certs.d uses) push and pull through it.
func TestRegistryServeTLS(t *testing.T) {
	dir := t.TempDir()
	testutil.TestCA(t, dir, "server", "client")
	rs := startServe(t, "--addr", "127.0.0.1:0", "--root", filepath.Join(dir, "reg"),
		"--tls-cert", filepath.Join(dir, "server.crt"), "--tls-key", filepath.Join(dir, "server.key"),
		"--tls-client-ca", filepath.Join(dir, "ca.crt"))
	if !strings.Contains(rs.stdout.String(), "(https)") {
		t.Errorf("startup line does not say https: %q", rs.stdout)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool.AppendCertsFromPEM(caPEM)
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}}}
	client := &http.Client{Transport: tr}
	if resp, _ := httpGet(t, client, "https://"+rs.addr+"/v2/"); resp.StatusCode != 200 {
		t.Fatalf("GET /v2/ over TLS: %d", resp.StatusCode)
	}
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if _, err := noCert.Get("https://" + rs.addr + "/v2/"); err == nil {
		t.Error("a client without a certificate got in")
	}

	// Push with go-containerregistry, pull with skopeo.
	ref, err := name.ParseReference(rs.addr + "/tls/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(50_000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(tr)); err != nil {
		t.Fatalf("push over TLS: %v", err)
	}
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Log("skopeo not installed: the skopeo half is skipped")
		return
	}
	// skopeo's cert dir: CAs as *.crt, a client pair as *.cert and *.key.
	certDir := filepath.Join(dir, "certs.d")
	os.MkdirAll(certDir, 0o755)
	copyFile(t, filepath.Join(dir, "ca.crt"), filepath.Join(certDir, "ca.crt"))
	copyFile(t, filepath.Join(dir, "client.crt"), filepath.Join(certDir, "client.cert"))
	copyFile(t, filepath.Join(dir, "client.key"), filepath.Join(certDir, "client.key"))
	out, err := exec.Command(skopeo, "--insecure-policy", "copy", "--src-cert-dir", certDir,
		"docker://"+rs.addr+"/tls/app:v1", "oci:"+filepath.Join(dir, "layout")+":v1").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy over mutual TLS: %v\n%s", err, out)
	}
	// The copy converted to OCI; the manifest as served is what was pushed.
	raw, err := exec.Command(skopeo, "inspect", "--raw", "--cert-dir", certDir, "docker://"+rs.addr+"/tls/app:v1").Output()
	if err != nil {
		t.Fatalf("skopeo inspect over mutual TLS: %v", err)
	}
	if want, _ := img.Digest(); digest.FromBytes(raw).String() != want.String() {
		t.Errorf("skopeo read manifest %s, pushed %s", digest.FromBytes(raw), want)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
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
