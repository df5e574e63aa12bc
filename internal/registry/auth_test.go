package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry/registrytest"
)

func TestServerKey(t *testing.T) {
	for in, want := range map[string][2]string{
		"":                            {DockerHubServer, "index.docker.io"},
		"docker.io":                   {DockerHubServer, "index.docker.io"},
		"index.docker.io":             {DockerHubServer, "index.docker.io"},
		"registry-1.docker.io":        {DockerHubServer, "index.docker.io"},
		"https://index.docker.io/v1/": {DockerHubServer, "index.docker.io"},
		"reg.lan:5000":                {"reg.lan:5000", "reg.lan:5000"},
		"https://reg.lan:5000/":       {"reg.lan:5000", "reg.lan:5000"},
		"http://127.0.0.1:5000/v2/":   {"127.0.0.1:5000", "127.0.0.1:5000"},
	} {
		if k, h := ServerKey(in); k != want[0] || h != want[1] {
			t.Errorf("ServerKey(%q) = %q, %q; want %q, %q", in, k, h, want[0], want[1])
		}
	}
}

// dockerConfig reads $DOCKER_CONFIG/config.json.
func dockerConfig(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLoginLogout against docker-registry with Basic auth (htpasswd) and
// with token auth: wrong credentials store nothing; right ones are stored
// as docker login stores them and then used by Pull's default keychain;
// logout removes them and Pull is refused again.
func TestLoginLogout(t *testing.T) {
	mem := newTestRegistry(t)
	for _, mode := range []string{"basic", "token"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", t.TempDir())
			opts := []registrytest.Option{registrytest.WithBasicAuth("alice", "s3cret")}
			if mode == "token" {
				opts = append(opts, registrytest.WithTokenAuth("berth-test-issuer"))
			}
			reg := registrytest.Start(t, opts...)
			svc, img := localImage(t, mem, "test/src")
			ref := reg.Addr + "/team/app:1"
			if err := svc.Tag(img.ID.String(), ref); err != nil {
				t.Fatal(err)
			}
			if _, err := Login(context.Background(), reg.Addr, "alice", "wrong", fast); !errdefs.IsFailedPrecondition(err) ||
				!strings.Contains(err.Error(), "incorrect username or password") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("wrong password: %v", err)
			}
			if c := dockerConfig(t); c != nil {
				t.Fatalf("a refused login wrote config.json: %v", c)
			}
			key, err := Login(context.Background(), "http://"+reg.Addr+"/", "alice", "s3cret", fast)
			if err != nil {
				t.Fatal(err)
			}
			if key != reg.Addr {
				t.Errorf("stored under %q, want %q", key, reg.Addr)
			}
			auths, _ := dockerConfig(t)["auths"].(map[string]any)
			entry, _ := auths[reg.Addr].(map[string]any)
			if entry["auth"] != base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) {
				t.Errorf("config.json auths = %v", auths)
			}
			if fi, err := os.Stat(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("config.json mode: %v %v, want 0600", fi.Mode(), err)
			}
			// Push and pull with the stored credentials (default keychain).
			if _, _, err := Push(context.Background(), svc, ref, fast); err != nil {
				t.Fatalf("push after login: %v", err)
			}
			if _, err := Pull(context.Background(), newService(t), ref, fast); err != nil {
				t.Fatalf("pull after login: %v", err)
			}
			if had, err := Logout(reg.Addr); err != nil || !had {
				t.Fatalf("logout = %v, %v", had, err)
			}
			if had, err := Logout(reg.Addr); err != nil || had {
				t.Errorf("second logout = %v, %v; want not logged in", had, err)
			}
			if _, err := Pull(context.Background(), newService(t), ref, fast); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("pull after logout: %v, want refused", err)
			}
		})
	}
}

// TestLoginCredentialHelper: with credsStore set, the secret goes to the
// docker-credential-<name> helper, not into config.json, and comes back
// from it for pulls.
func TestLoginCredentialHelper(t *testing.T) {
	bin := t.TempDir()
	store := filepath.Join(t.TempDir(), "store")
	// The helper protocol: the verb as argument; store reads
	// {"ServerURL","Username","Secret"}, get and erase read the URL.
	helper := `#!/bin/sh
set -e
store=` + store + `
mkdir -p "$store"
case "$1" in
store) in=$(cat); url=$(printf '%s' "$in" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/'); printf '%s' "$in" > "$store/$(printf '%s' "$url" | tr '/:' '__')";;
get) url=$(cat); f="$store/$(printf '%s' "$url" | tr '/:' '__')"; if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi;;
erase) url=$(cat); rm -f "$store/$(printf '%s' "$url" | tr '/:' '__')";;
list) echo '{}';;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-berthtest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if err := os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(`{"credsStore":"berthtest"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t, registrytest.WithBasicAuth("bob", "hunter2"))
	mem := newTestRegistry(t)
	svc, img := localImage(t, mem, "test/src")
	ref := reg.Addr + "/team/app:1"
	if err := svc.Tag(img.ID.String(), ref); err != nil {
		t.Fatal(err)
	}
	if _, err := Login(context.Background(), reg.Addr, "bob", "hunter2", fast); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"))
	if err != nil || strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte("bob:hunter2"))) || strings.Contains(string(b), "hunter2") {
		t.Errorf("the secret is in config.json: %s (%v)", b, err)
	}
	entries, _ := os.ReadDir(store)
	if len(entries) != 1 {
		t.Fatalf("the helper stored %d entries, want 1", len(entries))
	}
	if _, _, err := Push(context.Background(), svc, ref, fast); err != nil {
		t.Fatalf("push with the helper's credentials: %v", err)
	}
	if had, err := Logout(reg.Addr); err != nil || !had {
		t.Fatalf("logout = %v, %v", had, err)
	}
	if entries, _ := os.ReadDir(store); len(entries) != 0 {
		t.Errorf("logout left %d entries in the helper", len(entries))
	}
}

func TestLoginRegistryDown(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := Login(context.Background(), "127.0.0.1:1", "a", "b", fast); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want connection refused", err)
	}
	if c := dockerConfig(t); c != nil {
		t.Errorf("config.json written: %v", c)
	}
}
