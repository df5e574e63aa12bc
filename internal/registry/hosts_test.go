package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestLoadHosts(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "config.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h, err := LoadHosts(filepath.Join(dir, "missing.json"))
	if err != nil || len(h.Insecure)+len(h.Mirrors) != 0 {
		t.Fatalf("missing file: %+v, %v; want defaults", h, err)
	}
	h, err = LoadHosts(write(`{"insecure-registries":["reg.lan:5000","10.0.0.0/8"],"registry-mirrors":["https://mirror.example.com"],"debug":true}`))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"reg.lan:5000": true, "reg.lan:5001": false, "10.1.2.3:443": true, "11.0.0.1": false,
		"127.0.0.1:5000": true, "[::1]:5000": true, "localhost:80": true, "docker.io": false,
	} {
		if got := h.IsInsecure(host); got != want {
			t.Errorf("IsInsecure(%s) = %v, want %v", host, got, want)
		}
	}
	if ms := h.mirrors(); len(ms) != 1 || ms[0] != (mirror{host: "mirror.example.com"}) {
		t.Errorf("mirrors = %+v", ms)
	}
	for _, bad := range []string{
		`{"insecure-registries":`,
		`{"registry-mirrors":["mirror.example.com"]}`,
		`{"registry-mirrors":["https://mirror.example.com/v2/"]}`,
		`{"insecure-registries":["http://reg.lan"]}`,
	} {
		p := write(bad)
		if _, err := LoadHosts(p); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadHosts(%s) = %v, want invalid argument naming the file", bad, err)
		}
	}
}

// TestPullFromMirror: a docker.io image comes from the configured
// mirrors, the first that has it, and is recorded under its docker.io
// name. No request leaves the machine: the mirrors have the image.
func TestPullFromMirror(t *testing.T) {
	empty := newTestRegistry(t)
	mirror := newTestRegistry(t)
	mirror.push(t, "library/busybox:latest", randomImage(t, 1))
	svc := newService(t)
	hosts := &Hosts{Mirrors: []string{"http://" + empty.host, "http://" + mirror.host}}
	img, err := Pull(context.Background(), svc, "busybox", WithHosts(hosts), fast)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.RepoTags, []string{"docker.io/library/busybox:latest"}) {
		t.Errorf("RepoTags = %v", img.RepoTags)
	}
	if empty.count("GET", "/v2/library/busybox/manifests/latest") != 1 || mirror.count("GET", "/blobs/") != 2 {
		t.Errorf("requests: empty mirror %v, mirror %v", empty.requests, mirror.requests)
	}
	// Mirrors are for Docker Hub only.
	if _, err := Pull(context.Background(), svc, empty.host+"/library/busybox", WithHosts(hosts), fast); !errdefs.IsNotFound(err) {
		t.Errorf("pull from another registry: %v, want not found there", err)
	}
}

// TestCertsDir: a registry's CA in certs.d/<host:port>/ca.crt makes its
// certificate trusted; a client certificate in the same directory is
// presented to a registry that asks for one.
func TestCertsDir(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")

	get := func(h *Hosts) (int, error) {
		tr, err := h.transport(host, false)
		if err != nil {
			return 0, err
		}
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/v2/")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	certs := t.TempDir()
	if _, err := get(&Hosts{CertsDirs: []string{certs}}); err == nil {
		t.Fatal("an unknown CA was trusted")
	}
	dir := filepath.Join(certs, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, err := get(&Hosts{CertsDirs: []string{certs}}); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("with the CA: %d, %v; want 401 (trusted, no client certificate yet)", code, err)
	}
	// httptest's certificate and key serve as the client pair too.
	der, err := x509.MarshalPKCS8PrivateKey(srv.TLS.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "client.cert"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "client.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, err := get(&Hosts{CertsDirs: []string{certs}}); err != nil || code != http.StatusOK {
		t.Fatalf("with the client certificate: %d, %v; want 200", code, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.crt"), []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := get(&Hosts{CertsDirs: []string{certs}}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "other.crt") {
		t.Errorf("a broken CA file: %v, want an error naming it", err)
	}
}
