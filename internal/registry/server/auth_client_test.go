package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry"
	"github.com/berth-dev/berth/internal/registry/server"
)

// berth's own client (login, pull, push) against berth's registry with
// auth, through the exported API only: what `berth registry serve` and
// `berth login/pull/push` do.

// startRegistry serves a registry with auth on 127.0.0.1, the token
// endpoint (if any) on the same listener.
func startRegistry(t *testing.T, mk func(base string) server.AuthConfig) string {
	t.Helper()
	store, err := server.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	addr := srv.Listener.Addr().String()
	cfg := mk("http://" + addr)
	az, token, err := server.NewAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := server.New(store, server.WithAuthorizer(az))
	path := cfg.TokenPath()
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != nil && r.URL.Path == path {
			token.ServeHTTP(w, r)
			return
		}
		reg.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return addr
}

func TestBerthClientAgainstAuth(t *testing.T) {
	dir := t.TempDir()
	var lines []byte
	for _, u := range []string{"alice", "bob", "admin"} {
		h, _ := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		lines = fmt.Appendf(lines, "%s:%s\n", u, h)
	}
	hp := filepath.Join(dir, "htpasswd")
	os.WriteFile(hp, lines, 0o600)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPath := filepath.Join(dir, "token.key")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	acl := []server.ACLRule{
		{User: "alice", Repos: []string{"team/*"}, Actions: []string{"pull", "push", "delete"}},
		{User: "*", Repos: []string{"team/*"}, Actions: []string{"pull"}},
		{User: "anonymous", Repos: []string{"public/*"}, Actions: []string{"pull"}},
		{User: "admin", Repos: []string{"*"}, Actions: []string{"*"}},
	}
	for _, mode := range []struct {
		name string
		cfg  func(base string) server.AuthConfig
	}{
		{"basic", func(string) server.AuthConfig {
			return server.AuthConfig{Htpasswd: &server.HtpasswdConfig{Path: hp}, ACL: acl}
		}},
		{"token", func(base string) server.AuthConfig {
			return server.AuthConfig{Htpasswd: &server.HtpasswdConfig{Path: hp}, ACL: acl,
				Token: &server.TokenConfig{Realm: base + "/token", Service: "reg.test", Issuer: "berth", Key: keyPath}}
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			// Credentials only from this test's own Docker config.
			t.Setenv("DOCKER_CONFIG", t.TempDir())
			t.Setenv("HOME", t.TempDir())
			addr := startRegistry(t, mode.cfg)
			ctx := context.Background()
			fast := registry.WithRetry(1, time.Millisecond)
			// Content to start from, written by another client as admin.
			for _, r := range []string{"team/src:1", "public/img:1"} {
				ref, _ := name.ParseReference(addr+"/"+r, name.Insecure)
				img, _ := random.Image(20_000, 2)
				if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: "admin-pw"})); err != nil {
					t.Fatal(err)
				}
			}
			newService := func() *image.Service {
				svc, err := image.New(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				return svc
			}

			if _, err := registry.Login(ctx, addr, "alice", "wrong", fast); !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("login with a wrong password: %v", err)
			}
			if _, err := registry.Login(ctx, addr, "alice", "alice-pw", fast); err != nil {
				t.Fatalf("login: %v", err)
			}
			svc := newService()
			img, err := registry.Pull(ctx, svc, addr+"/team/src:1", fast)
			if err != nil {
				t.Fatalf("alice pull: %v", err)
			}
			if err := svc.Tag(img.ID.String(), addr+"/team/dst:1"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := registry.Push(ctx, svc, addr+"/team/dst:1", fast); err != nil {
				t.Fatalf("alice push: %v", err)
			}

			// bob pulls team/* but may not push there.
			if _, err := registry.Login(ctx, addr, "bob", "bob-pw", fast); err != nil {
				t.Fatalf("bob login: %v", err)
			}
			if err := svc.Tag(img.ID.String(), addr+"/team/bob:1"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := registry.Push(ctx, svc, addr+"/team/bob:1", fast); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("bob push: %v, want a refusal", err)
			}
			if _, err := registry.Pull(ctx, newService(), addr+"/team/dst:1", fast); err != nil {
				t.Errorf("bob pull: %v", err)
			}

			// Logged out: public/* only.
			if had, err := registry.Logout(addr); !had || err != nil {
				t.Fatalf("logout: %v %v", had, err)
			}
			if _, err := registry.Pull(ctx, newService(), addr+"/team/dst:1", fast); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("anonymous pull of team/dst: %v, want a refusal", err)
			}
			if _, err := registry.Pull(ctx, newService(), addr+"/public/img:1", fast); err != nil {
				t.Errorf("anonymous pull of public/img: %v", err)
			}
		})
	}
}
