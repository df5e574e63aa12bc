package registrytest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// Service is the service name the registry announces in its Bearer
// challenge and expects as the audience of tokens.
const Service = "berth-test-registry"

// Registry is a running docker-registry serving plain HTTP on 127.0.0.1.
// It lives until the test that started it ends.
type Registry struct {
	// Addr is the host:port the registry listens on, 127.0.0.1:PORT; it is
	// also the registry part of image references (Addr + "/name:tag").
	Addr string
	// URL is "http://" + Addr.
	URL string
	// Dir holds the configuration, the log and the storage (see the
	// package documentation for the layout).
	Dir string
	// Username and Password are the credentials set by WithBasicAuth;
	// empty without it.
	Username, Password string
	// Realm is the token endpoint named in the Bearer challenge, and
	// Issuer the issuer of its tokens; both empty without WithTokenAuth.
	Realm, Issuer string

	cmd  *exec.Cmd
	exit chan error // receives the result of cmd.Wait once
}

// Option configures Start.
type Option func(*config)

type config struct {
	user, password string
	tokenIssuer    string
	anonymousPull  bool
}

// WithBasicAuth requires credentials. Alone, the registry itself checks
// them (htpasswd with a bcrypt hash, the only kind distribution accepts);
// with WithTokenAuth, the token server checks them instead.
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.user, c.password = user, password }
}

// WithTokenAuth puts the registry behind token authentication: it answers
// 401 with a Bearer challenge naming the harness's token endpoint, which
// issues JWTs from issuer. Credentials given with WithBasicAuth get every
// action they ask for; anonymous requests get none unless
// WithAnonymousPull is given too.
func WithTokenAuth(issuer string) Option {
	return func(c *config) { c.tokenIssuer = issuer }
}

// WithAnonymousPull lets the token endpoint grant "pull" to requests
// without credentials, as public repositories on Docker Hub do.
func WithAnonymousPull() Option {
	return func(c *config) { c.anonymousPull = true }
}

// Start runs a fresh registry for t and stops it when t ends. It skips t
// when docker-registry (or, for WithBasicAuth alone, htpasswd) is not
// installed.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("needs %s: apt-get install docker-registry", Binary)
	}
	var c config
	for _, o := range opts {
		o(&c)
	}
	r := &Registry{Dir: t.TempDir(), Username: c.user, Password: c.password}

	var auth string
	switch {
	case c.tokenIssuer != "":
		auth = r.startTokenServer(t, c)
	case c.user != "":
		auth = r.writeHtpasswd(t, c)
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("start registry: pick a port: %v", err)
		}
		r.Addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		r.URL = "http://" + r.Addr
		if err := r.writeConfig(auth); err != nil {
			t.Fatalf("start registry: %v", err)
		}
		err = r.start(t)
		if err == nil {
			return r
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("start registry: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

// freePort asks the kernel for a free port. Another process may take it
// before the registry binds it; Start retries when that happens.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *Registry) writeConfig(auth string) error {
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(r.Dir, "storage"), r.Addr, auth)
	return os.WriteFile(filepath.Join(r.Dir, "config.yml"), []byte(cfg), 0o644)
}

// start runs the registry and waits until GET /v2/ answers. On failure it
// has stopped the process and returns the error with the log's tail.
func (r *Registry) start(t testing.TB) error {
	logPath := filepath.Join(r.Dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(Binary, "serve", filepath.Join(r.Dir, "config.yml"))
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", Binary, err)
	}
	r.cmd = cmd
	r.exit = make(chan error, 1)
	go func() { r.exit <- cmd.Wait() }()

	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		return strings.TrimSpace(string(b))
	}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-r.exit:
			log := readLog()
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("%s: %w", r.Addr, errAddrInUse)
			}
			return fmt.Errorf("docker-registry exited (%v) before serving:\n%s", err, log)
		default:
		}
		resp, err := client.Get(r.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				t.Cleanup(r.stop)
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop()
	return fmt.Errorf("docker-registry did not answer GET %s/v2/ within 20s:\n%s", r.URL, readLog())
}

// stop sends SIGTERM, then SIGKILL if the registry has not exited after
// five seconds, and reaps it.
func (r *Registry) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exit:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exit
	}
	r.cmd = nil
}

// writeHtpasswd writes Dir/htpasswd with a bcrypt hash made by Apache's
// htpasswd (bcrypt is not in the standard library) and returns the auth
// section of the configuration.
func (r *Registry) writeHtpasswd(t testing.TB, c config) string {
	t.Helper()
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Skip("needs htpasswd for a bcrypt hash: apt-get install apache2-utils")
	}
	out, err := exec.Command(bin, "-nbB", c.user, c.password).Output()
	if err != nil {
		t.Fatalf("hash password with htpasswd: %v", err)
	}
	path := filepath.Join(r.Dir, "htpasswd")
	if err := os.WriteFile(path, bytes.TrimSpace(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`auth:
  htpasswd:
    realm: %s
    path: %s
`, Service, path)
}

// startTokenServer generates the signing key and its self-signed
// certificate, writes the certificate where the registry reads its trusted
// roots, serves the token endpoint and returns the auth section of the
// configuration.
func (r *Registry) startTokenServer(t testing.TB, c config) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: c.tokenIssuer},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(r.Dir, "token", "rootcert.pem")
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	kid, err := libtrustKeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ts := &tokenServer{cfg: c, key: key, certDER: der, kid: kid}
	srv := httptest.NewServer(http.HandlerFunc(ts.serveToken))
	t.Cleanup(srv.Close)
	r.Realm = srv.URL + "/token"
	r.Issuer = c.tokenIssuer
	return fmt.Sprintf(`auth:
  token:
    realm: %s
    service: %s
    issuer: %s
    rootcertbundle: %s
`, r.Realm, Service, c.tokenIssuer, bundle)
}

// libtrustKeyID is the key ID distribution 2.8 derives from the keys in
// rootcertbundle (docker/libtrust): the SHA-256 of the DER public key,
// truncated to 240 bits, base32 in groups of four joined by colons.
func libtrustKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:min(i+4, len(s))])
	}
	return strings.Join(groups, ":"), nil
}

type tokenServer struct {
	cfg     config
	key     *rsa.PrivateKey
	certDER []byte
	kid     string
}

type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// serveToken implements GET /token?service=...&scope=TYPE:NAME:ACTIONS
// (scope may repeat), the Docker token protocol. Wrong credentials get
// 401; anonymous requests get a token that grants only what the options
// allow, as real token services do.
func (s *tokenServer) serveToken(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := req.URL.Query()
	if svc := q.Get("service"); svc != "" && svc != Service {
		http.Error(w, fmt.Sprintf("unknown service %q", svc), http.StatusBadRequest)
		return
	}
	subject := ""
	if user, pass, ok := req.BasicAuth(); ok {
		if s.cfg.user == "" || user != s.cfg.user || pass != s.cfg.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Service+`"`)
			http.Error(w, "invalid username or password", http.StatusUnauthorized)
			return
		}
		subject = user
	}
	var granted []access
	for _, scope := range q["scope"] {
		for _, one := range strings.Fields(scope) {
			a, ok := parseScope(one)
			if !ok {
				http.Error(w, fmt.Sprintf("malformed scope %q", one), http.StatusBadRequest)
				return
			}
			var actions []string
			for _, act := range a.Actions {
				if subject != "" || (s.cfg.anonymousPull && a.Type == "repository" && act == "pull") {
					actions = append(actions, act)
				}
			}
			granted = append(granted, access{Type: a.Type, Name: a.Name, Actions: actions})
		}
	}
	token, err := s.sign(subject, granted)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        token,
		"access_token": token,
		"expires_in":   300,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

// parseScope splits "repository:NAME:pull,push". NAME may hold colons (a
// registry host with a port), so the type ends at the first colon and the
// actions start after the last.
func parseScope(s string) (access, bool) {
	first, last := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if first <= 0 || last <= first+1 || last == len(s)-1 {
		return access{}, false
	}
	return access{Type: s[:first], Name: s[first+1 : last], Actions: strings.Split(s[last+1:], ",")}, true
}

// sign makes an RS256 JWT. The header carries both the certificate chain
// (x5c), which distribution verifies against rootcertbundle, and the
// libtrust key ID (kid) of the same key, which it uses when x5c is absent.
func (s *tokenServer) sign(subject string, granted []access) (string, error) {
	now := time.Now()
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	if granted == nil {
		granted = []access{}
	}
	header, err := json.Marshal(map[string]any{
		"alg": "RS256",
		"typ": "JWT",
		"kid": s.kid,
		"x5c": []string{base64.StdEncoding.EncodeToString(s.certDER)},
	})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(map[string]any{
		"iss":    s.cfg.tokenIssuer,
		"sub":    subject,
		"aud":    Service,
		"exp":    now.Add(5 * time.Minute).Unix(),
		"nbf":    now.Add(-10 * time.Second).Unix(),
		"iat":    now.Unix(),
		"jti":    fmt.Sprintf("%x", jti),
		"access": granted,
	})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", err
	}
	return signingInput + "." + enc.EncodeToString(sig), nil
}

// PushOCILayout copies the image tagged TAG in the OCI layout at layoutDir
// into the registry as ref ("NAME:TAG"), with skopeo, using the
// registry's credentials when it has some. Client tests use it to put an
// image in place without relying on the code under test.
func (r *Registry) PushOCILayout(t testing.TB, layoutDir, ref string) {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("needs skopeo to push an image: apt-get install skopeo")
	}
	i := strings.LastIndex(ref, ":")
	if i <= 0 || strings.Contains(ref[i:], "/") {
		t.Fatalf("push %q: ref must be NAME:TAG", ref)
	}
	tag := ref[i+1:]
	// An explicit policy keeps the push independent of the host's
	// /etc/containers/policy.json.
	policy := filepath.Join(r.Dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--policy", policy, "copy", "--dest-tls-verify=false"}
	if r.Username != "" {
		args = append(args, "--dest-creds", r.Username+":"+r.Password)
	}
	args = append(args, "oci:"+layoutDir+":"+tag, "docker://"+r.Addr+"/"+ref)
	cmd := exec.Command(bin, args...)
	// Keep skopeo away from the invoking user's auth files.
	cmd.Env = append(os.Environ(), "REGISTRY_AUTH_FILE="+filepath.Join(r.Dir, "auth.json"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("push %s to %s: skopeo %s: %v\n%s", layoutDir, ref, strings.Join(args, " "), err, out)
	}
}
