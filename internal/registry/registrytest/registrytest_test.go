package registrytest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// authFunc adds credentials to a request; nil sends none.
type authFunc func(*http.Request)

func basic(user, pass string) authFunc {
	return func(req *http.Request) { req.SetBasicAuth(user, pass) }
}

func bearer(token string) authFunc {
	return func(req *http.Request) { req.Header.Set("Authorization", "Bearer "+token) }
}

func do(t *testing.T, method, u string, body []byte, header map[string]string, auth authFunc) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

// pushBlob uploads b monolithically: POST for an upload, PUT ?digest=.
func pushBlob(t *testing.T, r *Registry, name string, b []byte, auth authFunc) string {
	t.Helper()
	resp, body := do(t, http.MethodPost, r.URL+"/v2/"+name+"/blobs/uploads/", nil, nil, auth)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s: %s", resp.Status, body)
	}
	loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	dgst := digestOf(b)
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	resp, body = do(t, http.MethodPut, loc.String(), b, map[string]string{"Content-Type": "application/octet-stream"}, auth)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish upload: %s: %s", resp.Status, body)
	}
	return dgst
}

const manifestType = "application/vnd.oci.image.manifest.v1+json"

// pushImage pushes a one-layer image and returns its manifest and blobs.
func pushImage(t *testing.T, r *Registry, name, tag string, auth authFunc) (manifest []byte, blobs map[string][]byte) {
	t.Helper()
	layer, config := []byte("not really a tar, but the registry does not look"), []byte(`{}`)
	blobs = map[string][]byte{}
	for _, b := range [][]byte{layer, config} {
		blobs[pushBlob(t, r, name, b, auth)] = b
	}
	manifest = fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		manifestType, digestOf(config), len(config), digestOf(layer), len(layer))
	resp, body := do(t, http.MethodPut, r.URL+"/v2/"+name+"/manifests/"+tag, manifest,
		map[string]string{"Content-Type": manifestType}, auth)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %s: %s", resp.Status, body)
	}
	return manifest, blobs
}

// checkImage reads back what pushImage wrote.
func checkImage(t *testing.T, r *Registry, name, tag string, manifest []byte, blobs map[string][]byte, auth authFunc) {
	t.Helper()
	resp, body := do(t, http.MethodGet, r.URL+"/v2/"+name+"/manifests/"+tag, nil,
		map[string]string{"Accept": manifestType}, auth)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, manifest) {
		t.Fatalf("get manifest: %s: %s", resp.Status, body)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != digestOf(manifest) {
		t.Errorf("manifest digest %q, want %q", got, digestOf(manifest))
	}
	for dgst, want := range blobs {
		resp, body := do(t, http.MethodGet, r.URL+"/v2/"+name+"/blobs/"+dgst, nil, nil, auth)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("get blob %s: %s: %q", dgst, resp.Status, body)
		}
	}
}

func TestStartPlain(t *testing.T) {
	r := Start(t)
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") || r.URL != "http://"+r.Addr {
		t.Fatalf("Addr %q URL %q", r.Addr, r.URL)
	}
	resp, body := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s: %s", resp.Status, body)
	}
	manifest, blobs := pushImage(t, r, "test/plain", "v1", nil)
	checkImage(t, r, "test/plain", "v1", manifest, blobs, nil)
	// Delete is enabled.
	resp, body = do(t, http.MethodDelete, r.URL+"/v2/test/plain/manifests/"+digestOf(manifest), nil, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete manifest: %s: %s", resp.Status, body)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "storage", "docker", "registry", "v2", "repositories", "test", "plain")); err != nil {
		t.Errorf("storage not under Dir: %v", err)
	}
}

func TestStop(t *testing.T) {
	var r *Registry
	t.Run("inner", func(t *testing.T) { r = Start(t) })
	if r == nil {
		t.Skip("inner test did not start a registry")
	}
	if _, err := http.Get(r.URL + "/v2/"); err == nil {
		t.Fatal("registry still answers after its test ended")
	}
}

func TestBasicAuth(t *testing.T) {
	r := Start(t, WithBasicAuth("alice", "s3cret"))
	resp, _ := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("anonymous GET /v2/: %s, WWW-Authenticate %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, basic("alice", "wrong")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %s", resp.Status)
	}
	auth := basic("alice", "s3cret")
	if resp, body := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, auth); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ with credentials: %s: %s", resp.Status, body)
	}
	manifest, blobs := pushImage(t, r, "test/basic", "v1", auth)
	checkImage(t, r, "test/basic", "v1", manifest, blobs, auth)
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// challenge parses a Bearer WWW-Authenticate header into its parameters.
func challenge(t *testing.T, resp *http.Response) map[string]string {
	t.Helper()
	h := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(h, "Bearer ") {
		t.Fatalf("want 401 with a Bearer challenge, got %s, WWW-Authenticate %q", resp.Status, h)
	}
	params := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(h, -1) {
		params[m[1]] = m[2]
	}
	return params
}

// fetchToken asks the realm for a token as a client would.
func fetchToken(t *testing.T, realm, service, scope string, auth authFunc) (int, string) {
	t.Helper()
	u, err := url.Parse(realm)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("service", service)
	if scope != "" {
		q.Set("scope", scope)
	}
	u.RawQuery = q.Encode()
	resp, body := do(t, http.MethodGet, u.String(), nil, nil, auth)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" {
		t.Fatalf("token response %q: %v", body, err)
	}
	return resp.StatusCode, tok.Token
}

func TestTokenAuth(t *testing.T) {
	r := Start(t, WithTokenAuth("berth-test-issuer"), WithBasicAuth("bob", "hunter2"))
	resp, _ := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, nil)
	ch := challenge(t, resp)
	if ch["realm"] != r.Realm || ch["service"] != Service {
		t.Fatalf("challenge %v, want realm %q service %q", ch, r.Realm, Service)
	}

	if code, _ := fetchToken(t, ch["realm"], ch["service"], "", basic("bob", "wrong")); code != http.StatusUnauthorized {
		t.Fatalf("token with a wrong password: %d, want 401", code)
	}
	_, tok := fetchToken(t, ch["realm"], ch["service"], "", basic("bob", "hunter2"))
	// The registry checks the signature: a token signed by another key fails.
	forged := tok[:strings.LastIndex(tok, ".")+1] + strings.Repeat("A", len(tok)-strings.LastIndex(tok, ".")-1)
	if resp, _ := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, bearer(forged)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ with a forged token: %s, want 401", resp.Status)
	}
	if resp, body := do(t, http.MethodGet, r.URL+"/v2/", nil, nil, bearer(tok)); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ with a token: %s: %s", resp.Status, body)
	}

	const name = "test/token"
	// The registry asks for the scope it needs.
	resp, _ = do(t, http.MethodPost, r.URL+"/v2/"+name+"/blobs/uploads/", nil, nil, nil)
	// distribution lists the actions in no fixed order.
	if got := challenge(t, resp)["scope"]; got != "repository:"+name+":pull,push" && got != "repository:"+name+":push,pull" {
		t.Fatalf("upload challenge scope %q, want repository:%s with pull and push", got, name)
	}
	_, tok = fetchToken(t, ch["realm"], ch["service"], "repository:"+name+":pull,push", basic("bob", "hunter2"))
	manifest, blobs := pushImage(t, r, name, "v1", bearer(tok))
	checkImage(t, r, name, "v1", manifest, blobs, bearer(tok))

	// Anonymous gets a token, but no access without WithAnonymousPull.
	_, anon := fetchToken(t, ch["realm"], ch["service"], "repository:"+name+":pull", nil)
	resp, _ = do(t, http.MethodGet, r.URL+"/v2/"+name+"/manifests/v1", nil, map[string]string{"Accept": manifestType}, bearer(anon))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous pull: %s, want 401", resp.Status)
	}
}

func TestTokenAuthAnonymousPull(t *testing.T) {
	r := Start(t, WithTokenAuth("berth-test-issuer"), WithBasicAuth("bob", "hunter2"), WithAnonymousPull())
	const name = "public/img"
	_, tok := fetchToken(t, r.Realm, Service, "repository:"+name+":pull,push", basic("bob", "hunter2"))
	manifest, blobs := pushImage(t, r, name, "latest", bearer(tok))

	_, anon := fetchToken(t, r.Realm, Service, "repository:"+name+":pull,push", nil)
	checkImage(t, r, name, "latest", manifest, blobs, bearer(anon))
	resp, _ := do(t, http.MethodPost, r.URL+"/v2/"+name+"/blobs/uploads/", nil, nil, bearer(anon))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous push: %s, want 401", resp.Status)
	}
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want access
		ok   bool
	}{
		{"repository:library/busybox:pull", access{"repository", "library/busybox", []string{"pull"}}, true},
		{"repository:a/b:pull,push", access{"repository", "a/b", []string{"pull", "push"}}, true},
		{"repository:localhost:5000/a:pull", access{"repository", "localhost:5000/a", []string{"pull"}}, true},
		{"registry:catalog:*", access{"registry", "catalog", []string{"*"}}, true},
		{"repository:a", access{}, false},
		{"repository::pull", access{}, false},
		{"repository:a:", access{}, false},
	} {
		got, ok := parseScope(tc.in)
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseScope(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLibtrustKeyIDShape(t *testing.T) {
	id, err := libtrustKeyID(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$`).MatchString(id) {
		t.Fatalf("key ID %q is not 12 colon-separated base32 groups", id)
	}
}

// writeOCILayout writes a minimal one-layer image tagged tag into dir, in
// the OCI image layout, and returns the manifest digest.
func writeOCILayout(t *testing.T, dir, tag string) string {
	t.Helper()
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeBlob := func(b []byte) string {
		d := digestOf(b)
		if err := os.WriteFile(filepath.Join(blobDir, strings.TrimPrefix(d, "sha256:")), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}

	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	content := []byte("hello from registrytest\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gzBuf bytes.Buffer
	gz := gzip.NewWriter(&gzBuf)
	if _, err := gz.Write(tarBuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	layer := gzBuf.Bytes()
	layerDigest := writeBlob(layer)

	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},`+
		`"rootfs":{"type":"layers","diff_ids":[%q]}}`, digestOf(tarBuf.Bytes()))
	configDigest := writeBlob(config)

	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}]}`,
		manifestType, configDigest, len(config), layerDigest, len(layer))
	manifestDigest := writeBlob(manifest)

	index := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",`+
		`"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"annotations":{"org.opencontainers.image.ref.name":%q}}]}`,
		manifestType, manifestDigest, len(manifest), tag)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return manifestDigest
}

func TestPushOCILayout(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"basic", []Option{WithBasicAuth("carol", "pw")}},
		{"token", []Option{WithTokenAuth("berth-test-issuer"), WithBasicAuth("carol", "pw")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Start(t, tc.opts...)
			layout := t.TempDir()
			want := writeOCILayout(t, layout, "v1")
			r.PushOCILayout(t, layout, "test/layout:v1")

			var auth authFunc
			switch {
			case r.Realm != "":
				_, tok := fetchToken(t, r.Realm, Service, "repository:test/layout:pull", basic(r.Username, r.Password))
				auth = bearer(tok)
			case r.Username != "":
				auth = basic(r.Username, r.Password)
			}
			resp, body := do(t, http.MethodGet, r.URL+"/v2/test/layout/manifests/v1", nil,
				map[string]string{"Accept": manifestType}, auth)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("get pushed manifest: %s: %s", resp.Status, body)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != want {
				t.Errorf("pushed manifest digest %q, want %q (skopeo rewrote the image)", got, want)
			}
		})
	}
}

func mustKey(t *testing.T) *rsa.PublicKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &key.PublicKey
}
