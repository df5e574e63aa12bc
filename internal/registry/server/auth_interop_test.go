package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Real clients against the registry's auth: skopeo (containers/image),
// go-containerregistry, Debian's htpasswd making the user file, and
// Debian's docker-registry (distribution 2.8) verifying the tokens berth
// issues. Everything listens on 127.0.0.1.

// apacheHtpasswd makes a user file with Debian's htpasswd -B (bcrypt,
// $2y$, cost 5), as an admin would.
func apacheHtpasswd(t *testing.T, users ...string) string {
	t.Helper()
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Skip("needs htpasswd: apt-get install apache2-utils")
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	for i := 0; i+1 < len(users); i += 2 {
		args := []string{"-bB", path, users[i], users[i+1]}
		if i == 0 {
			args[0] = "-cbB"
		}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd %v: %v\n%s", args, err, out)
		}
	}
	return path
}

// authModes are the two ways berth authenticates on its own.
var authModes = []struct {
	name string
	cfg  func(t *testing.T, htpasswd, base string) AuthConfig
}{
	{"basic", func(t *testing.T, hp, base string) AuthConfig {
		return AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: testACL}
	}},
	{"token", func(t *testing.T, hp, base string) AuthConfig {
		_, key := newECKey(t)
		return AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: testACL,
			Token: &TokenConfig{Realm: base + "/token", Service: "reg.test", Issuer: "berth-test", Key: key}}
	}},
}

func TestAuthSkopeo(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (Debian package skopeo)")
	}
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			hp := apacheHtpasswd(t, "alice", "alice-pw", "bob", "bob-pw", "admin", "admin-pw")
			s := startAuth(t, nil, func(base string) AuthConfig { return mode.cfg(t, hp, base) })
			dir := t.TempDir()
			src := ociLayout(t, filepath.Join(dir, "oci"))
			run := func(args ...string) (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, skopeo, append([]string{"--insecure-policy"}, args...)...)
				// No credentials but the ones given on the command line.
				cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			ok := func(args ...string) {
				t.Helper()
				if out, err := run(args...); err != nil {
					t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			refused := func(args ...string) {
				t.Helper()
				out, err := run(args...)
				if err == nil {
					t.Fatalf("skopeo %s succeeded; want it refused", strings.Join(args, " "))
				}
				if lo := strings.ToLower(out); !strings.Contains(lo, "denied") && !strings.Contains(lo, "unauthorized") {
					t.Errorf("skopeo %s: refused, but not for auth:\n%s", strings.Join(args, " "), out)
				}
			}
			reg := "docker://" + s.addr
			ok("copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw", src, reg+"/team/app:v1")
			refused("copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", src, reg+"/team/app:v2")
			refused("copy", "--dest-tls-verify=false", "--dest-creds", "bob:bob-pw", src, reg+"/team/app:v2")
			refused("copy", "--dest-tls-verify=false", src, reg+"/team/app:v2")
			ok("copy", "--src-tls-verify=false", "--src-creds", "bob:bob-pw", reg+"/team/app:v1", "oci:"+filepath.Join(dir, "back")+":v1")
			refused("copy", "--src-tls-verify=false", reg+"/team/app:v1", "oci:"+filepath.Join(dir, "anon")+":v1")
			// Anonymous pulls of public/*, which admin pushed.
			ok("copy", "--dest-tls-verify=false", "--dest-creds", "admin:admin-pw", src, reg+"/public/img:v1")
			ok("copy", "--src-tls-verify=false", reg+"/public/img:v1", "oci:"+filepath.Join(dir, "pub")+":v1")
			ok("inspect", "--tls-verify=false", "--raw", reg+"/public/img:v1")
			// Delete: bob may not, alice may.
			refused("delete", "--tls-verify=false", "--creds", "bob:bob-pw", reg+"/team/app:v1")
			ok("delete", "--tls-verify=false", "--creds", "alice:alice-pw", reg+"/team/app:v1")
			if out, err := run("inspect", "--tls-verify=false", "--creds", "bob:bob-pw", "--raw", reg+"/team/app:v1"); err == nil {
				t.Errorf("team/app:v1 still there after alice deleted it:\n%s", out)
			}
		})
	}
}

// ociLayout writes a two-layer OCI image tagged v1 and returns skopeo's
// name for it.
func ociLayout(t *testing.T, dir string) string {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for i := 0; i < 2; i++ {
		l, err := random.Layer(50_000, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":v1"
}

// httpStatus is the status of a go-containerregistry error, 0 if none.
func httpStatus(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

// TestAuthGoContainerRegistry: go-containerregistry, which berth's client
// is built on, through both modes: push, pull, catalog, delete, refusals.
func TestAuthGoContainerRegistry(t *testing.T) {
	for _, mode := range authModes {
		t.Run(mode.name, func(t *testing.T) {
			hp := writeHtpasswd(t, "alice", "alice-pw", "bob", "bob-pw", "admin", "admin-pw")
			s := startAuth(t, nil, func(base string) AuthConfig { return mode.cfg(t, hp, base) })
			as := func(u, p string) remote.Option {
				if u == "" {
					return remote.WithAuth(authn.Anonymous)
				}
				return remote.WithAuth(&authn.Basic{Username: u, Password: p})
			}
			ref := func(r string) name.Reference { return must(name.ParseReference(s.addr+"/"+r, name.Insecure)) }
			img := must(random.Image(10_000, 2))
			if err := remote.Write(ref("team/g:v1"), img, as("alice", "alice-pw")); err != nil {
				t.Fatalf("alice push: %v", err)
			}
			// A second repository: go-containerregistry mounts the
			// layers from the first (needs pull there, push here).
			if err := remote.Write(ref("team/h:v1"), must(remote.Image(ref("team/g:v1"), as("alice", "alice-pw"))), as("alice", "alice-pw")); err != nil {
				t.Fatalf("alice push with mounts: %v", err)
			}
			for _, c := range []struct {
				who, pass string
				want      []int
			}{{"bob", "bob-pw", []int{401, 403}}, {"alice", "wrong", []int{401}}, {"", "", []int{401}}} {
				err := remote.Write(ref("team/g:v2"), img, as(c.who, c.pass))
				if st := httpStatus(err); err == nil || (st != c.want[0] && (len(c.want) < 2 || st != c.want[1])) {
					t.Errorf("push as %q: %v (status %d), want %v", c.who, err, st, c.want)
				}
			}
			got, err := remote.Image(ref("team/g:v1"), as("bob", "bob-pw"))
			if err != nil {
				t.Fatalf("bob pull: %v", err)
			}
			if must(got.Digest()) != must(img.Digest()) {
				t.Error("pulled another image")
			}
			if _, err := remote.Image(ref("team/g:v1"), as("", "")); httpStatus(err) != 401 {
				t.Errorf("anonymous pull of team/g: %v", err)
			}
			if _, err := remote.Catalog(context.Background(), must(name.NewRegistry(s.addr, name.Insecure)), as("bob", "bob-pw")); err == nil {
				t.Error("bob listed the catalog")
			}
			repos, err := remote.Catalog(context.Background(), must(name.NewRegistry(s.addr, name.Insecure)), as("admin", "admin-pw"))
			if err != nil || strings.Join(repos, ",") != "team/g,team/h" {
				t.Errorf("admin catalog %v, %v", repos, err)
			}
			if err := remote.Delete(ref("team/g:v1"), as("bob", "bob-pw")); err == nil {
				t.Error("bob deleted")
			}
			if err := remote.Delete(ref("team/g@"+must(img.Digest()).String()), as("alice", "alice-pw")); err != nil {
				t.Errorf("alice delete: %v", err)
			}
		})
	}
}

// TestOwnTokensVerifiedByDistribution: distribution 2.8 (Debian's
// docker-registry) configured with berth's token endpoint as its realm and
// berth's signing certificate as its rootcertbundle accepts the tokens
// berth issues (x5c) and enforces the access they grant.
func TestOwnTokensVerifiedByDistribution(t *testing.T) {
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("needs docker-registry: apt-get install docker-registry")
	}
	dir := t.TempDir()
	hp := writeHtpasswd(t, "alice", "alice-pw", "bob", "bob-pw")
	key, keyPath := newECKey(t)
	cert := newCert(t, "berth token signer", &key.PublicKey, false, nil, key, time.Now().Add(time.Hour))
	certPath := writeAuthPEM(t, filepath.Join(dir, "token.crt"), "CERTIFICATE", cert.Raw)

	var h http.Handler
	tokSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	realm := "http://" + tokSrv.Listener.Addr().String() + "/token"
	_, th, err := NewAuth(AuthConfig{Htpasswd: &HtpasswdConfig{Path: hp}, ACL: testACL,
		Token: &TokenConfig{Realm: realm, Service: "distribution.test", Issuer: "berth-test", Key: keyPath, Certificate: certPath}})
	if err != nil {
		t.Fatal(err)
	}
	h = th
	tokSrv.Start()
	t.Cleanup(tokSrv.Close)

	addr := startDockerRegistry(t, bin, dir, fmt.Sprintf(`auth:
  token:
    realm: %s
    service: distribution.test
    issuer: berth-test
    rootcertbundle: %s
`, realm, certPath))
	ref := func(r string) name.Reference { return must(name.ParseReference(addr+"/"+r, name.Insecure)) }
	img := must(random.Image(10_000, 2))
	alice := remote.WithAuth(&authn.Basic{Username: "alice", Password: "alice-pw"})
	bob := remote.WithAuth(&authn.Basic{Username: "bob", Password: "bob-pw"})
	if err := remote.Write(ref("team/d:v1"), img, alice); err != nil {
		t.Fatalf("alice push to distribution with a berth token: %v", err)
	}
	if err := remote.Write(ref("team/d:v2"), img, bob); httpStatus(err) != 401 {
		t.Errorf("bob push: %v, want 401 from distribution", err)
	}
	if _, err := remote.Image(ref("team/d:v1"), bob); err != nil {
		t.Errorf("bob pull: %v", err)
	}
	if _, err := remote.Image(ref("team/d:v1"), remote.WithAuth(authn.Anonymous)); httpStatus(err) != 401 {
		t.Errorf("anonymous pull: %v, want 401", err)
	}
}

// startDockerRegistry runs docker-registry on a free loopback port with
// the auth section given, until the test ends.
func startDockerRegistry(t *testing.T, bin, dir, auth string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}
http: {addr: %s}
%s`, filepath.Join(dir, "storage"), addr, auth)), 0o644)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry exited:\n%s", b)
		default:
		}
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr
		}
	}
	t.Fatal("docker-registry did not start within 20s")
	return ""
}
