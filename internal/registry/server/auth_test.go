package server

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/berth-dev/berth/internal/errdefs"
)

// ---- fixtures ----

// writeHtpasswd writes user:bcrypt lines at bcrypt's lowest cost (fast
// tests; the parser accepts any cost).
func writeHtpasswd(t testing.TB, users ...string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(users); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(users[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", users[i], h)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeAuthPEM(t testing.TB, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newECKey makes a P-256 key and writes it as PKCS#8 PEM.
func newECKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return k, writeAuthPEM(t, filepath.Join(t.TempDir(), "key.pem"), "PRIVATE KEY", der)
}

// newCert issues a certificate for pub, signed by parent (nil: self-signed
// with key).
func newCert(t testing.TB, cn string, pub crypto.PublicKey, isCA bool, parent *x509.Certificate, parentKey crypto.Signer, notAfter time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signToken signs claims with key; hdr adds or overrides header fields.
func signToken(t testing.TB, key crypto.Signer, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	m, err := signingMethod(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testClaims are valid claims from iss for aud granting access.
func testClaims(iss, aud string, access ...resourceActions) jwt.MapClaims {
	now := time.Now()
	if access == nil {
		access = []resourceActions{}
	}
	return jwt.MapClaims{"iss": iss, "sub": "someone", "aud": aud, "exp": now.Add(time.Minute).Unix(),
		"nbf": now.Unix(), "iat": now.Unix(), "jti": "t1", "access": access}
}

func pullOf(name string) resourceActions {
	return resourceActions{Type: "repository", Name: name, Actions: []string{"pull"}}
}

func basicHdr(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// authServer is a registry with auth on 127.0.0.1 and, for token auth,
// the token endpoint on the same listener at the realm's path: the
// wiring `berth registry serve` does.
type authServer struct {
	*testRegistry
	addr string
}

// startAuth starts a registry over store (a fresh one when nil) with the
// configuration mk makes from the server's base URL.
func startAuth(t *testing.T, store *Store, mk func(base string) AuthConfig) *authServer {
	t.Helper()
	if store == nil {
		var err error
		if store, err = Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	addr := srv.Listener.Addr().String()
	cfg := mk("http://" + addr)
	az, th, err := NewAuth(cfg, WithAuthLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	h = withTokenEndpoint(New(store, WithAuthorizer(az)), cfg.TokenPath(), th)
	srv.Start()
	t.Cleanup(srv.Close)
	return &authServer{testRegistry: &testRegistry{t: t, url: srv.URL, store: store}, addr: addr}
}

// withTokenEndpoint serves token at path and everything else from reg.
func withTokenEndpoint(reg http.Handler, path string, token http.Handler) http.Handler {
	if token == nil {
		return reg
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			token.ServeHTTP(w, r)
			return
		}
		reg.ServeHTTP(w, r)
	})
}

// seedRepos pushes an image as repo:v1 straight into store, with no auth.
func seedRepos(t *testing.T, store *Store, repos ...string) map[string]string {
	t.Helper()
	srv := httptest.NewServer(New(store))
	defer srv.Close()
	tr := &testRegistry{t: t, url: srv.URL, store: store}
	digests := map[string]string{}
	for _, repo := range repos {
		m, d := tr.image(repo, nil)
		tr.do("PUT", "/v2/"+repo+"/manifests/v1", m, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
		digests[repo] = string(d)
	}
	return digests
}

// testACL: alice owns team/*, bob (any user) pulls team/*, everyone
// pulls public/*, admin has everything and the catalog.
var testACL = []ACLRule{
	{User: "alice", Repos: []string{"team/*"}, Actions: []string{"pull", "push", "delete"}},
	{User: "*", Repos: []string{"team/*"}, Actions: []string{"pull"}},
	{User: "anonymous", Repos: []string{"public/*"}, Actions: []string{"pull"}},
	{User: "admin", Repos: []string{"*"}, Actions: []string{"*"}},
}

// ---- htpasswd ----

func TestParseHtpasswd(t *testing.T) {
	good, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	g := string(good)
	for _, tc := range []struct {
		name, in, err string
		users         int
	}{
		{"bcrypt, comments, blanks, CRLF", "# users\n\nalice:" + g + "\r\n  bob:" + strings.Replace(g, "$2a$", "$2y$", 1) + "  \n", "", 2},
		{"$2b$", "a:" + strings.Replace(g, "$2a$", "$2b$", 1), "", 1},
		{"empty file", "", "", 0},
		{"apr1", "alice:$apr1$abcdefgh$0123456789abcdefghijkl", `line 1: user "alice" has an Apache MD5 ($apr1$) hash; only bcrypt is accepted: set the password again with htpasswd -B FILE alice`, 0},
		{"sha1", "a:" + g + "\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", `line 2: user "bob" has a SHA-1 ({SHA}) hash`, 0},
		{"crypt", "bob:abJnggxhB/yWI", "DES crypt", 0},
		{"sha512-crypt", "bob:$6$salt$abc", "SHA-crypt ($6$)", 0},
		{"plain", "bob:secret", "plain-text password", 0},
		{"broken bcrypt", "bob:$2y$05$short", "malformed bcrypt hash", 0},
		{"no colon", "bob", "line 1: not user:hash", 0},
		{"empty user", ":" + g, "not user:hash", 0},
		{"duplicate", "a:" + g + "\na:" + g, `line 2: user "a" is already on line 1`, 0},
		{"reserved", "anonymous:" + g, `"anonymous" is reserved`, 0},
		{"space in name", "a b:" + g, "spaces or control characters", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users, err := parseHtpasswd([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to say %q", err, tc.err)
				}
				return
			}
			if err != nil || len(users) != tc.users {
				t.Fatalf("%d users, err %v; want %d", len(users), err, tc.users)
			}
		})
	}
}

// TestHtpasswdApacheTool: files made by Debian's htpasswd -B ($2y$) are
// read; a user added while the registry runs can log in at once; an MD5
// entry is refused at load, and while running it is logged and the users
// read before are kept.
func TestHtpasswdApacheTool(t *testing.T) {
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Skip("needs htpasswd: apt-get install apache2-utils")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd %v: %v\n%s", args, err, out)
		}
	}
	run("-cbB", path, "alice", "alice-pw")
	var logs bytes.Buffer
	h, err := loadHtpasswd(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !h.check("alice", "alice-pw") || h.check("alice", "wrong") || h.check("bob", "bob-pw") {
		t.Fatal("check gave the wrong answer")
	}
	if !h.check("alice", "alice-pw") { // from the cache this time
		t.Fatal("cached check failed")
	}
	// Same size and mtime granularity could hide a change; make sure the
	// stamp moves.
	time.Sleep(10 * time.Millisecond)
	run("-bB", path, "bob", "bob-pw")
	if !h.check("bob", "bob-pw") {
		t.Fatal("a user added while running cannot log in")
	}
	// A changed password drops the cached one.
	run("-bB", path, "alice", "new-pw")
	if h.check("alice", "alice-pw") || !h.check("alice", "new-pw") {
		t.Fatal("a changed password: the old one still works, or the new one does not")
	}
	run("-bm", path, "carol", "carol-pw") // MD5: refused
	if !h.check("bob", "bob-pw") {
		t.Fatal("a broken file locked out the users read before")
	}
	if !strings.Contains(logs.String(), "only bcrypt is accepted") {
		t.Errorf("the refused reload was not logged: %s", logs.String())
	}
	if _, err := loadHtpasswd(path, slog.Default()); err == nil || !strings.Contains(err.Error(), `user "carol" has an Apache MD5`) {
		t.Fatalf("loading an MD5 entry: %v", err)
	}
}

// TestHtpasswdConcurrent: checks from many requests at once, while the
// file is rewritten, give right answers (run with -race).
func TestHtpasswdConcurrent(t *testing.T) {
	path := writeHtpasswd(t, "alice", "pw", "bob", "pw")
	h, err := loadHtpasswd(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			other := writeHtpasswd(t, "alice", "pw", "bob", "pw", fmt.Sprintf("u%d", i), "x")
			os.Rename(other, path)
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if !h.check("alice", "pw") || h.check("bob", "wrong") || h.check("nobody", "pw") {
					t.Error("wrong answer")
					return
				}
			}
		}()
	}
	wg.Wait()
	<-done
}

// ---- ACL ----

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		p, n string
		ok   bool
	}{
		{"*", "a", true}, {"*", "a/b/c", true}, {"team/*", "team/app", true}, {"team/*", "team/a/b", true},
		{"team/*", "team", false}, {"team/*", "teams/app", false}, {"team/*", "other/team/app", false},
		{"*/cache", "a/b/cache", true}, {"*/cache", "a/cached", false}, {"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false}, {"app", "app", true}, {"app", "apps", false}, {"**", "", true},
		{strings.Repeat("*a", 30), strings.Repeat("a", 200) + "b", false},
	} {
		if got := matchGlob(tc.p, tc.n); got != tc.ok {
			t.Errorf("matchGlob(%q, %q) = %v", tc.p, tc.n, got)
		}
	}
}

func TestACLGrants(t *testing.T) {
	a, err := newACL(testACL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, repo string
		want       string
	}{
		{"alice", "team/app", "pull,push,delete"},
		{"alice", "team/a/b", "pull,push,delete"},
		{"alice", "public/x", "pull"}, // anonymous rules hold for everyone
		{"alice", "other", ""},
		{"bob", "team/app", "pull"},
		{"", "team/app", ""},
		{"", "public/x", "pull"},
		{"admin", "anything/at/all", "pull,push,delete"},
	} {
		if got := strings.Join(a.repoActions(tc.user, tc.repo), ","); got != tc.want {
			t.Errorf("%q on %s: %q, want %q", tc.user, tc.repo, got, tc.want)
		}
	}
	if a.catalog("alice") || !a.catalog("admin") || a.catalog("") {
		t.Error("catalog granted to the wrong users")
	}
	// Token grants are the intersection with what was asked.
	for _, tc := range []struct {
		user string
		req  resourceActions
		want string
	}{
		{"bob", resourceActions{"repository", "team/app", []string{"push", "pull"}}, "pull"},
		{"alice", resourceActions{"repository", "team/app", []string{"push", "pull"}}, "pull,push"},
		{"alice", resourceActions{"repository", "team/app", []string{"*"}}, "pull,push,delete"},
		{"alice", resourceActions{"repository", "team/app", []string{"pull", "frobnicate"}}, "pull"},
		{"alice", resourceActions{"repository", "Team/App", []string{"pull"}}, ""},
		{"admin", resourceActions{"registry", "catalog", []string{"*"}}, "*"},
		{"alice", resourceActions{"registry", "catalog", []string{"*"}}, ""},
		{"admin", resourceActions{"registry", "other", []string{"*"}}, ""},
		{"admin", resourceActions{"repository(plugin)", "x", []string{"pull"}}, ""},
	} {
		if got := strings.Join(a.grant(tc.user, tc.req).Actions, ","); got != tc.want {
			t.Errorf("grant %q %v: %q, want %q", tc.user, tc.req, got, tc.want)
		}
	}
	// No rules: every user everything, anonymous nothing.
	d, _ := newACL(nil)
	if !d.allows("x", []Access{{"repository", "a", []string{"pull", "push", "delete"}}, {"registry", "catalog", []string{"*"}}}) ||
		d.allows("", []Access{{"repository", "a", []string{"pull"}}}) {
		t.Error("default ACL")
	}
}

// ---- Basic ----

// TestBasicAuthMatrix walks who may do what with Basic credentials, and
// checks that without the right credentials an existing repository and
// a missing one get the same answer.
func TestBasicAuthMatrix(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	digests := seedRepos(t, store, "team/app", "public/img", "secret/x")
	hp := writeHtpasswd(t, "alice", "alice-pw", "bob", "bob-pw", "admin", "admin-pw")
	s := startAuth(t, store, func(string) AuthConfig {
		return AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp, Realm: "test realm"}, ACL: testACL}
	})
	none := []string{}
	empty := []string{"Authorization", basicHdr("", "")} // containers/image without credentials
	wrong := []string{"Authorization", basicHdr("alice", "nope")}
	mallory := []string{"Authorization", basicHdr("mallory", "x")}
	bearer := []string{"Authorization", "Bearer abc"}
	alice := []string{"Authorization", basicHdr("alice", "alice-pw")}
	bob := []string{"Authorization", basicHdr("bob", "bob-pw")}
	admin := []string{"Authorization", basicHdr("admin", "admin-pw")}
	blob := string(digest.FromString("x"))
	type step struct {
		who          []string
		method, path string
		status       int
		code         ErrorCode
	}
	steps := []step{
		{none, "GET", "/v2/", 401, CodeUnauthorized},
		{wrong, "GET", "/v2/", 401, CodeUnauthorized},
		{mallory, "GET", "/v2/", 401, CodeUnauthorized},
		{bearer, "GET", "/v2/", 401, CodeUnauthorized},
		{alice, "GET", "/v2/", 200, ""},
		{bob, "GET", "/v2/", 200, ""},
		// anonymous: public only
		{none, "GET", "/v2/public/img/manifests/v1", 200, ""},
		{empty, "GET", "/v2/public/img/manifests/v1", 200, ""},
		{empty, "GET", "/v2/team/app/manifests/v1", 401, CodeUnauthorized},
		{none, "GET", "/v2/public/nothing/manifests/v1", 404, CodeNameUnknown},
		{none, "POST", "/v2/public/img/blobs/uploads/", 401, CodeUnauthorized},
		{none, "GET", "/v2/_catalog", 401, CodeUnauthorized},
		// bob pulls team/*, nothing more
		{bob, "GET", "/v2/team/app/manifests/v1", 200, ""},
		{bob, "GET", "/v2/team/app/tags/list", 200, ""},
		{bob, "GET", "/v2/public/img/manifests/v1", 200, ""},
		{bob, "POST", "/v2/team/app/blobs/uploads/", 403, CodeDenied},
		{bob, "DELETE", "/v2/team/app/manifests/" + digests["team/app"], 403, CodeDenied},
		{bob, "GET", "/v2/secret/x/manifests/v1", 403, CodeDenied},
		{bob, "GET", "/v2/_catalog", 403, CodeDenied},
		// alice: team/* fully, secret/x not at all, so no mount from it
		{alice, "POST", "/v2/team/app/blobs/uploads/", 202, ""},
		{alice, "POST", "/v2/team/new/blobs/uploads/?mount=" + blob + "&from=secret/x", 403, CodeDenied},
		{alice, "POST", "/v2/other/blobs/uploads/", 403, CodeDenied},
		{alice, "GET", "/v2/_catalog", 403, CodeDenied},
		{alice, "DELETE", "/v2/team/app/manifests/" + digests["team/app"], 202, ""},
		{admin, "GET", "/v2/_catalog", 200, ""},
		{admin, "GET", "/v2/secret/x/manifests/v1", 200, ""},
	}
	for _, st := range steps {
		r := s.do(st.method, st.path, nil, st.who...)
		if st.code == "" {
			r.want(t, st.status)
		} else {
			r.wantError(t, st.status, st.code)
		}
		if st.status == 401 {
			if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="test realm"` {
				t.Errorf("%s %s: WWW-Authenticate %q", st.method, st.path, got)
			}
		}
	}
	// Without the right credentials, existing and missing look alike.
	for _, who := range [][]string{none, wrong, mallory, bob} {
		for _, p := range [][2]string{
			{"GET", "/v2/secret/NAME/manifests/v1"},
			{"HEAD", "/v2/secret/NAME/manifests/v1"},
			{"GET", "/v2/secret/NAME/tags/list"},
			{"GET", "/v2/secret/NAME/blobs/" + blob},
			{"DELETE", "/v2/secret/NAME/manifests/" + digests["secret/x"]},
			{"POST", "/v2/secret/NAME/blobs/uploads/"},
		} {
			a := s.do(p[0], strings.Replace(p[1], "NAME", "x", 1), nil, who...)
			b := s.do(p[0], strings.Replace(p[1], "NAME", "y", 1), nil, who...)
			sameAnswer(t, a, b, "secret/x", "secret/y")
		}
	}
}

// sameAnswer fails when two responses differ by more than the repository
// name they were about.
func sameAnswer(t *testing.T, a, b response, nameA, nameB string) {
	t.Helper()
	if a.StatusCode != b.StatusCode || a.StatusCode < 400 {
		t.Errorf("%s %s: %d and %s: %d: an outsider can tell them apart", a.Request.Method, nameA, a.StatusCode, nameB, b.StatusCode)
		return
	}
	if ba, bb := strings.ReplaceAll(string(a.body), nameA, nameB), string(b.body); ba != bb {
		t.Errorf("%s: bodies differ:\n%s\n%s", a.Request.Method, ba, bb)
	}
	for _, h := range []string{"WWW-Authenticate", "Content-Length", "Content-Type"} {
		if va, vb := strings.ReplaceAll(a.Header.Get(h), nameA, nameB), b.Header.Get(h); va != vb {
			t.Errorf("%s: %s %q vs %q", a.Request.Method, h, va, vb)
		}
	}
}

// ---- token ----

// tokenSetup is an htpasswd + own-issuer registry.
type tokenSetup struct {
	*authServer
	key     *ecdsa.PrivateKey
	realm   string
	digests map[string]string
}

func startTokenAuth(t *testing.T, withCert bool) *tokenSetup {
	t.Helper()
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	digests := seedRepos(t, store, "team/app", "public/img", "secret/x")
	hp := writeHtpasswd(t, "alice", "alice-pw", "bob", "bob-pw", "admin", "admin-pw")
	key, keyPath := newECKey(t)
	certPath := ""
	if withCert {
		cert := newCert(t, "berth token signer", &key.PublicKey, false, nil, key, time.Now().Add(time.Hour))
		certPath = writeAuthPEM(t, filepath.Join(t.TempDir(), "cert.pem"), "CERTIFICATE", cert.Raw)
	}
	ts := &tokenSetup{key: key, digests: digests}
	ts.authServer = startAuth(t, store, func(base string) AuthConfig {
		ts.realm = base + "/token"
		return AuthConfig{
			Htpasswd: &HtpasswdConfig{Path: hp},
			Token: &TokenConfig{Realm: ts.realm, Service: "reg.test", Issuer: "berth-test",
				Key: keyPath, Certificate: certPath, Expiry: 2 * time.Minute},
			ACL: testACL,
		}
	})
	return ts
}

// token asks the token endpoint; who is nil for anonymous.
func (ts *tokenSetup) token(t *testing.T, who []string, query string) (string, response) {
	t.Helper()
	r := ts.do("GET", "/token?"+query, nil, who...)
	if r.StatusCode != 200 {
		return "", r
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil {
		t.Fatalf("token response %s: %v", r.body, err)
	}
	if tr.Token == "" || tr.Token != tr.AccessToken || tr.ExpiresIn != 120 {
		t.Fatalf("token response %s", r.body)
	}
	if at, err := time.Parse(time.RFC3339, tr.IssuedAt); err != nil || time.Since(at) > time.Minute {
		t.Fatalf("issued_at %q", tr.IssuedAt)
	}
	return tr.Token, r
}

func bearerHdr(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func TestTokenAuthFlow(t *testing.T) {
	ts := startTokenAuth(t, true)
	chal := `Bearer realm="` + ts.realm + `",service="reg.test"`

	// The challenges clients learn from.
	r := ts.do("GET", "/v2/", nil)
	r.wantError(t, 401, CodeUnauthorized)
	if got := r.Header.Get("WWW-Authenticate"); got != chal {
		t.Errorf("GET /v2/ challenge %q, want %q", got, chal)
	}
	r = ts.do("POST", "/v2/team/app/blobs/uploads/?mount="+string(digest.FromString("x"))+"&from=public/img", nil)
	if got, want := r.Header.Get("WWW-Authenticate"), chal+`,scope="repository:team/app:pull,push repository:public/img:pull"`; got != want {
		t.Errorf("mount challenge %q, want %q", got, want)
	}
	r = ts.do("GET", "/v2/_catalog", nil)
	if got, want := r.Header.Get("WWW-Authenticate"), chal+`,scope="registry:catalog:*"`; got != want {
		t.Errorf("catalog challenge %q, want %q", got, want)
	}

	alice := []string{"Authorization", basicHdr("alice", "alice-pw")}
	bob := []string{"Authorization", basicHdr("bob", "bob-pw")}

	// alice gets what she asks for; the token is what verifiers expect.
	tok, _ := ts.token(t, alice, "service=reg.test&scope=repository:team/app:push,pull&account=alice")
	var c tokenClaims
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, &c)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["alg"] != "ES256" || parsed.Header["kid"] != jwkThumbprint(&ts.key.PublicKey, true) {
		t.Errorf("header %v", parsed.Header)
	}
	if x5c, _ := parsed.Header["x5c"].([]any); len(x5c) != 1 {
		t.Errorf("x5c %v, want the certificate", parsed.Header["x5c"])
	}
	if c.Issuer != "berth-test" || c.Subject != "alice" || len(c.Audience) != 1 || c.Audience[0] != "reg.test" ||
		c.ID == "" || c.IssuedAt == nil || c.NotBefore == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) != 2*time.Minute {
		t.Errorf("claims %+v", c.RegisteredClaims)
	}
	if got, _ := json.Marshal(c.Access); string(got) != `[{"type":"repository","name":"team/app","actions":["pull","push"]}]` {
		t.Errorf("access %s", got)
	}
	ts.do("POST", "/v2/team/app/blobs/uploads/", nil, bearerHdr(tok)...).want(t, 202)
	ts.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(tok)...).want(t, 200)
	// Its token is for team/app only.
	r = ts.do("GET", "/v2/team/other/manifests/v1", nil, bearerHdr(tok)...)
	r.wantError(t, 401, CodeUnauthorized)
	if got, want := r.Header.Get("WWW-Authenticate"), chal+`,scope="repository:team/other:pull",error="insufficient_scope"`; got != want {
		t.Errorf("insufficient scope challenge %q, want %q", got, want)
	}
	// A token without scope is a login: GET /v2/ accepts it.
	login, _ := ts.token(t, alice, "service=reg.test&account=alice&offline_token=true&client_id=docker")
	ts.do("GET", "/v2/", nil, bearerHdr(login)...).want(t, 200)

	// bob asks for push and gets pull only.
	tok, _ = ts.token(t, bob, "scope=repository:team/app:pull,push")
	ts.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(tok)...).want(t, 200)
	r = ts.do("POST", "/v2/team/app/blobs/uploads/", nil, bearerHdr(tok)...)
	r.wantError(t, 401, CodeUnauthorized)
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("bob's push: %q", r.Header.Get("WWW-Authenticate"))
	}
	tok, _ = ts.token(t, bob, "scope=repository:team/app:delete")
	ts.do("DELETE", "/v2/team/app/manifests/"+ts.digests["team/app"], nil, bearerHdr(tok)...).wantError(t, 401, CodeUnauthorized)
	// ... and existing or not, the same refusal.
	tokX, _ := ts.token(t, bob, "scope=repository:secret/x:pull")
	tokY, _ := ts.token(t, bob, "scope=repository:secret/y:pull")
	sameAnswer(t, ts.do("GET", "/v2/secret/x/manifests/v1", nil, bearerHdr(tokX)...),
		ts.do("GET", "/v2/secret/y/manifests/v1", nil, bearerHdr(tokY)...), "secret/x", "secret/y")
	sameAnswer(t, ts.do("GET", "/v2/secret/x/manifests/v1", nil), ts.do("GET", "/v2/secret/y/manifests/v1", nil), "secret/x", "secret/y")

	// Anonymous: a token, granting what anonymous rules allow.
	tok, _ = ts.token(t, nil, "scope=repository:public/img:pull&scope=repository:team/app:pull")
	ts.do("GET", "/v2/public/img/manifests/v1", nil, bearerHdr(tok)...).want(t, 200)
	ts.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(tok)...).wantError(t, 401, CodeUnauthorized)
	tok, _ = ts.token(t, []string{"Authorization", basicHdr("", "")}, "scope=repository:public/img:pull")
	ts.do("GET", "/v2/public/img/manifests/v1", nil, bearerHdr(tok)...).want(t, 200)

	// The catalog: admin only.
	tok, _ = ts.token(t, []string{"Authorization", basicHdr("admin", "admin-pw")}, "scope=registry:catalog:*")
	ts.do("GET", "/v2/_catalog", nil, bearerHdr(tok)...).want(t, 200)
	tok, _ = ts.token(t, alice, "scope=registry:catalog:*")
	ts.do("GET", "/v2/_catalog", nil, bearerHdr(tok)...).wantError(t, 401, CodeUnauthorized)

	// Several scopes in one parameter, as challenges give them.
	tok, _ = ts.token(t, alice, "scope=repository:team/b:pull,push+repository:public/img:pull")
	ts.do("POST", "/v2/team/b/blobs/uploads/?mount="+string(digest.FromString("x"))+"&from=public/img", nil, bearerHdr(tok)...).want(t, 202)

	// The token endpoint's refusals.
	_, r = ts.token(t, []string{"Authorization", basicHdr("alice", "wrong")}, "scope=repository:team/app:pull")
	r.wantError(t, 401, CodeUnauthorized)
	if r.Header.Get("WWW-Authenticate") != `Basic realm="berth registry"` {
		t.Errorf("token endpoint challenge %q", r.Header.Get("WWW-Authenticate"))
	}
	_, r = ts.token(t, []string{"Authorization", "Bearer x"}, "")
	r.wantError(t, 401, CodeUnauthorized)
	_, r = ts.token(t, alice, "service=other")
	r.wantError(t, 400, CodeUnsupported)
	_, r = ts.token(t, alice, "account=bob")
	r.wantError(t, 400, CodeUnsupported)
	_, r = ts.token(t, alice, "scope=repository:team/app")
	r.wantError(t, 400, CodeUnsupported)
	_, r = ts.token(t, alice, "scope="+strings.Repeat("repository:a:pull+", 65))
	r.wantError(t, 400, CodeUnsupported)
	ts.do("POST", "/token", nil).wantError(t, 405, CodeUnsupported)
	// Basic credentials are not accepted by a token registry.
	ts.do("GET", "/v2/team/app/manifests/v1", nil, alice...).wantError(t, 401, CodeUnauthorized)
}

// TestTokenRefused: a registry must refuse every token it did not issue,
// or issued for someone else, or that is out of date.
func TestTokenRefused(t *testing.T) {
	ts := startTokenAuth(t, false)
	kid := jwkThumbprint(&ts.key.PublicKey, true)
	other, _ := newECKey(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	access := []resourceActions{pullOf("team/app")}
	now := time.Now()
	with := func(k string, v any) jwt.MapClaims {
		c := testClaims("berth-test", "reg.test", access...)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hdr := map[string]any{"kid": kid}
	good := signToken(t, ts.key, hdr, testClaims("berth-test", "reg.test", access...))
	ts.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(good)...).want(t, 200)
	// Within the minute of leeway for clock skew: still good.
	skewed := signToken(t, ts.key, hdr, with("exp", now.Add(-30*time.Second).Unix()))
	ts.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(skewed)...).want(t, 200)
	pubDER, _ := x509.MarshalPKIXPublicKey(&ts.key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, testClaims("berth-test", "reg.test", access...))
	hs.Header["kid"] = kid
	hsTok, _ := hs.SignedString(pubPEM)
	enc := base64.RawURLEncoding.EncodeToString
	body, _ := json.Marshal(testClaims("berth-test", "reg.test", access...))
	noneTok := enc([]byte(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`)) + "." + enc(body) + "."
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + enc([]byte(strings.Replace(string(must(base64.RawURLEncoding.DecodeString(parts[1]))), "team/app", "team/apq", 1))) + "." + parts[2]
	for name, tok := range map[string]string{
		"expired":          signToken(t, ts.key, hdr, with("exp", now.Add(-2*time.Minute).Unix())),
		"no exp":           signToken(t, ts.key, hdr, with("exp", nil)),
		"not yet valid":    signToken(t, ts.key, hdr, with("nbf", now.Add(2*time.Minute).Unix())),
		"wrong audience":   signToken(t, ts.key, hdr, with("aud", "other")),
		"no audience":      signToken(t, ts.key, hdr, with("aud", nil)),
		"wrong issuer":     signToken(t, ts.key, hdr, with("iss", "other")),
		"other key":        signToken(t, other, hdr, testClaims("berth-test", "reg.test", access...)),
		"other RSA key":    signToken(t, rsaKey, hdr, testClaims("berth-test", "reg.test", access...)),
		"unknown kid":      signToken(t, ts.key, map[string]any{"kid": "nope"}, testClaims("berth-test", "reg.test", access...)),
		"no kid":           signToken(t, ts.key, nil, testClaims("berth-test", "reg.test", access...)),
		"alg none":         noneTok,
		"HS256 public key": hsTok,
		"tampered claims":  tampered,
		"garbage":          "abc.def.ghi",
		"empty segments":   "..",
		"huge":             strings.Repeat("a", maxTokenLen+1),
	} {
		r := ts.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(tok)...)
		if r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %q, want 401 invalid_token", name, r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestExternalIssuer: tokens signed by a key whose certificate chains to
// the configured bundle (through an intermediate in x5c) are accepted;
// anything not chained to it is refused. JWKS and public-key trust too.
func TestExternalIssuer(t *testing.T) {
	store, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seedRepos(t, store, "team/app")
	dir := t.TempDir()
	far := time.Now().Add(time.Hour)
	rootKey, _ := newECKey(t)
	root := newCert(t, "test root CA", &rootKey.PublicKey, true, nil, rootKey, far)
	interKey, _ := newECKey(t)
	inter := newCert(t, "test intermediate CA", &interKey.PublicKey, true, root, rootKey, far)
	leafKey, _ := newECKey(t)
	leaf := newCert(t, "token signer", &leafKey.PublicKey, false, inter, interKey, far)
	expiredLeaf := newCert(t, "old signer", &leafKey.PublicKey, false, inter, interKey, time.Now().Add(-time.Minute))
	bundle := writeAuthPEM(t, filepath.Join(dir, "bundle.pem"), "CERTIFICATE", root.Raw)
	// Another CA, not in the bundle, with a certificate of the same name.
	strangerKey, _ := newECKey(t)
	stranger := newCert(t, "test root CA", &strangerKey.PublicKey, true, nil, strangerKey, far)
	strangerLeaf := newCert(t, "token signer", &leafKey.PublicKey, false, stranger, strangerKey, far)

	ext := func(e ExternalConfig) func(string) AuthConfig {
		return func(string) AuthConfig {
			e.Realm, e.Service, e.Issuer = "https://auth.example/token", "reg.test", "auth.example"
			return AuthConfig{External: &e}
		}
	}
	s := startAuth(t, store, ext(ExternalConfig{RootCertBundle: bundle}))
	b64 := func(cs ...*x509.Certificate) []string {
		var out []string
		for _, c := range cs {
			out = append(out, base64.StdEncoding.EncodeToString(c.Raw))
		}
		return out
	}
	ok := testClaims("auth.example", "reg.test", pullOf("team/app"))
	check := func(s *authServer, name, tok string, want int) {
		t.Helper()
		r := s.do("GET", "/v2/team/app/manifests/v1", nil, bearerHdr(tok)...)
		if r.StatusCode != want {
			t.Errorf("%s: %d %s, want %d", name, r.StatusCode, r.Header.Get("WWW-Authenticate"), want)
		}
	}
	check(s, "chained through x5c", signToken(t, leafKey, map[string]any{"x5c": b64(leaf, inter)}, ok), 200)
	check(s, "signed by the root, kid by thumbprint", signToken(t, rootKey, map[string]any{"kid": jwkThumbprint(&rootKey.PublicKey, true)}, ok), 200)
	check(s, "signed by the root, libtrust kid (distribution 2.x)", signToken(t, rootKey, map[string]any{"kid": libtrustKeyID(&rootKey.PublicKey)}, ok), 200)
	check(s, "intermediate missing from x5c", signToken(t, leafKey, map[string]any{"x5c": b64(leaf)}, ok), 401)
	check(s, "chained to another CA", signToken(t, leafKey, map[string]any{"x5c": b64(strangerLeaf, stranger)}, ok), 401)
	check(s, "self-signed leaf in x5c", signToken(t, strangerKey, map[string]any{"x5c": b64(stranger)}, ok), 401)
	check(s, "expired certificate", signToken(t, leafKey, map[string]any{"x5c": b64(expiredLeaf, inter)}, ok), 401)
	check(s, "x5c of another key", signToken(t, strangerKey, map[string]any{"x5c": b64(leaf, inter)}, ok), 401)
	check(s, "leaf key by kid, not a root", signToken(t, leafKey, map[string]any{"kid": jwkThumbprint(&leafKey.PublicKey, true)}, ok), 401)
	check(s, "x5c not a list", signToken(t, leafKey, map[string]any{"x5c": "abc"}, ok), 401)
	check(s, "wrong issuer", signToken(t, leafKey, map[string]any{"x5c": b64(leaf, inter)}, testClaims("other", "reg.test", pullOf("team/app"))), 401)
	r := s.do("GET", "/v2/team/app/manifests/v1", nil)
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="https://auth.example/token",service="reg.test",scope="repository:team/app:pull"` {
		t.Errorf("external challenge %q", got)
	}

	// JWKS: keys by kid.
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": base64.RawURLEncoding.EncodeToString(rsaKey.N.Bytes()), "e": "AQAB"},
		{"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": base64.RawURLEncoding.EncodeToString(must(ecCoordinatesOf(&leafKey.PublicKey))[0]),
			"y": base64.RawURLEncoding.EncodeToString(must(ecCoordinatesOf(&leafKey.PublicKey))[1])},
	}})
	jwksPath := filepath.Join(dir, "jwks.json")
	os.WriteFile(jwksPath, jwks, 0o644)
	s = startAuth(t, store, ext(ExternalConfig{JWKS: jwksPath}))
	check(s, "JWKS RSA kid", signToken(t, rsaKey, map[string]any{"kid": "rsa-1"}, ok), 200)
	check(s, "JWKS EC kid", signToken(t, leafKey, map[string]any{"kid": "ec-1"}, ok), 200)
	check(s, "JWKS key under another kid", signToken(t, leafKey, map[string]any{"kid": "rsa-1"}, ok), 401)
	check(s, "JWKS, x5c ignored without a bundle", signToken(t, leafKey, map[string]any{"x5c": b64(leaf, inter)}, ok), 401)

	// A PEM public key, matched by thumbprint.
	der, _ := x509.MarshalPKIXPublicKey(&leafKey.PublicKey)
	pk := writeAuthPEM(t, filepath.Join(dir, "pub.pem"), "PUBLIC KEY", der)
	s = startAuth(t, store, ext(ExternalConfig{PublicKey: pk}))
	check(s, "public key by thumbprint", signToken(t, leafKey, map[string]any{"kid": jwkThumbprint(&leafKey.PublicKey, true)}, ok), 200)
	check(s, "another key", signToken(t, rootKey, map[string]any{"kid": jwkThumbprint(&leafKey.PublicKey, true)}, ok), 401)
}

func ecCoordinatesOf(k *ecdsa.PublicKey) ([2][]byte, error) {
	x, y, err := ecCoordinates(k)
	return [2][]byte{x, y}, err
}

// TestKeyIDs pins the key IDs to distribution's: the JWK thumbprint of
// RFC 7638's own example key, and a libtrust ID's shape.
func TestKeyIDs(t *testing.T) {
	// RFC 7638 section 3.1.
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	if got := jwkThumbprint(pub, true); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Errorf("RFC 7638 thumbprint %s", got)
	}
	k, _ := newECKey(t)
	if id := libtrustKeyID(&k.PublicKey); len(id) != 59 || strings.Count(id, ":") != 11 {
		t.Errorf("libtrust ID %q", id)
	}
}

// ---- configuration ----

func TestAuthConfigYAML(t *testing.T) {
	doc := `
htpasswd: {path: /etc/berth/registry.htpasswd, realm: "berth registry"}
token:
  realm: https://reg.example:5000/token
  service: reg.example
  issuer: berth-registry
  key: /etc/berth/registry-token.key
  certificate: /etc/berth/registry-token.crt
  expiry: 5m
acl:
  - {user: alice, repos: ["team/*"], actions: [pull, push, delete]}
  - {user: "*", repos: ["*"], actions: [pull]}
  - {user: anonymous, repos: ["public/*"], actions: [pull]}
`
	var c AuthConfig
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Token.Expiry != 5*time.Minute || c.Htpasswd.Realm != "berth registry" || len(c.ACL) != 3 || c.ACL[1].User != "*" ||
		c.TokenPath() != "/token" || len(c.FilePaths()) != 3 {
		t.Errorf("decoded %+v", c)
	}
	ext := "external: {realm: x, service: y, issuer: z, rootCertBundle: /a.pem, jwks: /b.json, publicKey: /c.pem}"
	var e AuthConfig
	if err := yaml.Unmarshal([]byte(ext), &e); err != nil || e.External.RootCertBundle != "/a.pem" || e.External.PublicKey != "/c.pem" {
		t.Errorf("external: %+v %v", e.External, err)
	}
}

func TestAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	hp := writeHtpasswd(t, "alice", "pw")
	md5 := filepath.Join(dir, "md5")
	os.WriteFile(md5, []byte("alice:$apr1$x$y\n"), 0o600)
	_, key := newECKey(t)
	otherKey, _ := newECKey(t)
	cert := writeAuthPEM(t, filepath.Join(dir, "other.crt"), "CERTIFICATE",
		newCert(t, "x", &otherKey.PublicKey, false, nil, otherKey, time.Now().Add(time.Hour)).Raw)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakKey := writeAuthPEM(t, filepath.Join(dir, "weak.pem"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(weak))
	encrypted := writeAuthPEM(t, filepath.Join(dir, "enc.pem"), "ENCRYPTED PRIVATE KEY", []byte("x"))
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	badJWKS := filepath.Join(dir, "bad.json")
	os.WriteFile(badJWKS, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), 0o600)
	tok := func(mod func(*TokenConfig)) AuthConfig {
		tc := &TokenConfig{Realm: "https://r.example/token", Service: "s", Issuer: "i", Key: key}
		mod(tc)
		return AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, Token: tc}
	}
	ext := func(mod func(*ExternalConfig)) AuthConfig {
		e := &ExternalConfig{Realm: "https://r.example/token", Service: "s", Issuer: "i"}
		mod(e)
		return AuthConfig{External: e}
	}
	for _, tc := range []struct {
		name string
		cfg  AuthConfig
		want string
	}{
		{"acl alone", AuthConfig{ACL: testACL}, "auth.htpasswd is needed for acl and token"},
		{"token alone", AuthConfig{Token: &TokenConfig{}}, "auth.htpasswd is needed"},
		{"no htpasswd path", AuthConfig{Htpasswd: &HtpasswdConfig{}}, "auth.htpasswd.path is empty"},
		{"missing htpasswd", AuthConfig{Htpasswd: &HtpasswdConfig{Path: filepath.Join(dir, "nope")}}, "create it with: htpasswd -cB"},
		{"md5 htpasswd", AuthConfig{Htpasswd: &HtpasswdConfig{Path: md5}}, "only bcrypt is accepted"},
		{"quote in realm", AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp, Realm: `a"b`}}, "may not hold quotes"},
		{"bad action", AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: []ACLRule{{User: "a", Repos: []string{"*"}, Actions: []string{"write"}}}}, `rule 1: unknown action "write"`},
		{"bad pattern", AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: []ACLRule{{User: "a", Repos: []string{"Team/*"}, Actions: []string{"pull"}}}}, `"Team/*" can never match`},
		{"no repos", AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: []ACLRule{{User: "a", Actions: []string{"push"}}}}, "lists no repos"},
		{"no user", AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: []ACLRule{{Repos: []string{"*"}, Actions: []string{"pull"}}}}, "rule 1: no user"},
		{"no actions", AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: []ACLRule{{User: "a", Repos: []string{"*"}}}}, "no actions"},
		{"relative realm", tok(func(c *TokenConfig) { c.Realm = "/token" }), "absolute URL"},
		{"realm without a path", tok(func(c *TokenConfig) { c.Realm = "https://r.example" }), "needs a path of its own"},
		{"realm under /v2/", tok(func(c *TokenConfig) { c.Realm = "https://r.example/v2/token" }), "outside /v2/"},
		{"no service", tok(func(c *TokenConfig) { c.Service = "" }), "needs service"},
		{"no key", tok(func(c *TokenConfig) { c.Key = "" }), "auth.token.key is empty"},
		{"key not PEM", tok(func(c *TokenConfig) { c.Key = notPEM }), "holds no PEM private key"},
		{"weak key", tok(func(c *TokenConfig) { c.Key = weakKey }), "1024 bits is too weak"},
		{"encrypted key", tok(func(c *TokenConfig) { c.Key = encrypted }), "is encrypted"},
		{"short expiry", tok(func(c *TokenConfig) { c.Expiry = 10 * time.Second }), "too short"},
		{"certificate of another key", tok(func(c *TokenConfig) { c.Certificate = cert }), "is not for the key"},
		{"certificate not PEM", tok(func(c *TokenConfig) { c.Certificate = notPEM }), "holds no PEM certificate"},
		{"external and htpasswd", AuthConfig{External: &ExternalConfig{}, Htpasswd: &HtpasswdConfig{Path: hp}}, "cannot be combined"},
		{"external without trust", ext(func(*ExternalConfig) {}), "needs rootCertBundle, jwks or publicKey"},
		{"external bundle not PEM", ext(func(e *ExternalConfig) { e.RootCertBundle = notPEM }), "holds no PEM certificate"},
		{"external JWKS with an HMAC key", ext(func(e *ExternalConfig) { e.JWKS = badJWKS }), `key type "oct" is not supported`},
		{"external public key not PEM", ext(func(e *ExternalConfig) { e.PublicKey = notPEM }), "holds no PEM public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewAuth(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error is not of class invalid argument: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
		})
	}
	if a, h, err := NewAuth(AuthConfig{}); a != nil || h != nil || err != nil {
		t.Errorf("empty config: %v %v %v", a, h, err)
	}
}

// ---- fuzzing ----

// The parsers read what clients and admins send. Seeds live in
// testdata/fuzz/<FuzzName>/.

func FuzzParseHtpasswd(f *testing.F) {
	good, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, s := range []string{"alice:" + string(good), "# c\n\n", "a:$apr1$x$y", "a", ":", "a:$2y$", "a:b:c", "anonymous:" + string(good)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseHtpasswd(data)
		if err != nil {
			return
		}
		for u, h := range users {
			if !validUserName(u) || u == AnonymousUser || u == AnyUser {
				t.Fatalf("accepted user %q", u)
			}
			if _, err := bcrypt.Cost([]byte(h)); err != nil || hashKind(h) != "" {
				t.Fatalf("accepted hash %q for %q", h, u)
			}
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"repository:team/app:pull,push", "registry:catalog:*", "repository:host:5000/a:pull", "a::b", ":", "x:y:", "repository:a:pull,,push"} {
		f.Add(s)
	}
	a, _ := newACL(testACL)
	f.Fuzz(func(t *testing.T, s string) {
		ra, err := parseScope(s)
		if err != nil {
			return
		}
		if ra.Type == "" || ra.Name == "" || len(ra.Actions) == 0 || strings.Contains(ra.Type, ":") {
			t.Fatalf("parseScope(%q) = %+v", s, ra)
		}
		for _, act := range ra.Actions {
			if act == "" || strings.Contains(act, ",") {
				t.Fatalf("parseScope(%q): action %q", s, act)
			}
		}
		// What the ACL grants is always within what was asked for,
		// except that "*" asks for everything held.
		g := a.grant("alice", ra)
		for _, act := range g.Actions {
			if !slices.Contains(ra.Actions, act) && !slices.Contains(ra.Actions, "*") {
				t.Fatalf("granted %q for scope %q", act, s)
			}
		}
	})
}

// FuzzVerifyToken: no input makes the verifier panic, and none but a
// token the key signed is accepted.
func FuzzVerifyToken(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	kid := jwkThumbprint(&key.PublicKey, true)
	// With roots, so that x5c headers are parsed and chains checked too.
	roots := x509.NewCertPool()
	roots.AddCert(newCert(f, "fuzz CA", &key.PublicKey, true, nil, key, time.Now().Add(time.Hour)))
	v := &tokenVerifier{issuer: "i", service: "s", roots: roots, keys: map[string]crypto.PublicKey{kid: &key.PublicKey}, now: time.Now}
	good := signToken(f, key, map[string]any{"kid": kid}, testClaims("i", "s", pullOf("a")))
	for _, s := range []string{good, good + "x", "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", strings.Replace(good, ".", "", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if _, err := v.verify(raw); err == nil && raw != good {
			// Strict base64 gives a token one spelling, so anything
			// else accepted is a forgery.
			t.Fatalf("accepted a token not signed by the key: %q", raw)
		}
	})
}
