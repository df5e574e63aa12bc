package registry

// More Login/Logout tests, beside auth_test.go's: what docker login and
// logout do that those do not exercise (credHelpers for one server, keys
// older Docker versions wrote, Docker Hub's names, a config.json berth
// must not clobber).

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry/registrytest"
)

// writeDockerConfig writes $DOCKER_CONFIG/config.json.
func writeDockerConfig(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pushWithCredentials writes a random image to reg as repo:tag with
// go-containerregistry and the given credentials, not through any
// keychain, so what the registry holds does not depend on berth's login.
func pushWithCredentials(t *testing.T, reg *registrytest.Registry, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: reg.Username, Password: reg.Password})
	if err := remote.Write(r, randomImage(t, 1), remote.WithAuth(auth)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// credentialHelper installs docker-credential-berthtest on PATH. It keeps
// one file per server under the returned directory and logs each verb it
// runs to calls, so a test can tell the helper was asked.
func credentialHelper(t *testing.T) (store, calls string) {
	t.Helper()
	bin := t.TempDir()
	store = filepath.Join(t.TempDir(), "store")
	calls = filepath.Join(t.TempDir(), "calls")
	// The protocol: the verb as argument; store reads
	// {"ServerURL","Username","Secret"} on stdin, get and erase read the
	// server URL; get of an unknown server prints Docker's sentence and
	// exits 1, which docker/cli turns into "no credentials".
	script := `#!/bin/sh
set -e
store=` + store + `
mkdir -p "$store"
echo "$1" >> ` + calls + `
key() { printf '%s' "$1" | tr '/:' '__'; }
case "$1" in
store) in=$(cat); url=$(printf '%s' "$in" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/'); printf '%s' "$in" > "$store/$(key "$url")";;
get) url=$(cat); f="$store/$(key "$url")"; if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi;;
erase) url=$(cat); rm -f "$store/$(key "$url")";;
list) echo '{}';;
*) exit 2;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-berthtest"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return store, calls
}

// TestLoginCredHelperForServer: credHelpers names a helper for one
// registry; login goes through it (the secret never reaches config.json),
// the rest of config.json survives, Pull's default keychain asks the
// helper, and logout erases the helper's entry.
func TestLoginCredHelperForServer(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	store, calls := credentialHelper(t)
	reg := registrytest.Start(t, registrytest.WithBasicAuth("carol", "c0rrect"))
	ref := reg.Addr + "/team/app:1"
	pushWithCredentials(t, reg, ref)
	other := base64.StdEncoding.EncodeToString([]byte("dave:other"))
	cfgPath := writeDockerConfig(t, `{"auths":{"other.example:5000":{"auth":"`+other+`"}},"credHelpers":{"`+reg.Addr+`":"berthtest"},"psFormat":"table {{.ID}}"}`)

	if _, err := Login(context.Background(), reg.Addr, "carol", "wrong", fast); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("wrong password: %v", err)
	}
	if entries, _ := os.ReadDir(store); len(entries) != 0 {
		t.Fatalf("a refused login reached the helper: %d entries", len(entries))
	}
	if _, err := Login(context.Background(), reg.Addr, "carol", "c0rrect", fast); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "c0rrect") || strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte("carol:c0rrect"))) {
		t.Errorf("the secret is in config.json:\n%s", b)
	}
	c := dockerConfig(t)
	auths, _ := c["auths"].(map[string]any)
	if e, _ := auths["other.example:5000"].(map[string]any); e["auth"] != other {
		t.Errorf("login lost another registry's credentials: %v", auths)
	}
	if e, _ := auths[reg.Addr].(map[string]any); e["auth"] != nil {
		t.Errorf("config.json has an auth for %s: %v", reg.Addr, e)
	}
	if c["psFormat"] != "table {{.ID}}" {
		t.Errorf("login lost psFormat: %v", c)
	}
	if helpers, _ := c["credHelpers"].(map[string]any); helpers[reg.Addr] != "berthtest" {
		t.Errorf("login lost credHelpers: %v", c["credHelpers"])
	}
	secret, err := os.ReadFile(filepath.Join(store, strings.ReplaceAll(reg.Addr, ":", "_")))
	if err != nil || !strings.Contains(string(secret), `"Secret":"c0rrect"`) || !strings.Contains(string(secret), `"Username":"carol"`) {
		t.Fatalf("the helper holds %q (%v)", secret, err)
	}

	os.Remove(calls)
	if _, err := Pull(context.Background(), newService(t), ref, fast); err != nil {
		t.Fatalf("pull with the helper's credentials: %v", err)
	}
	if log, _ := os.ReadFile(calls); !strings.Contains(string(log), "get") {
		t.Errorf("pull did not ask the helper (calls: %q)", log)
	}

	if had, err := Logout(reg.Addr); err != nil || !had {
		t.Fatalf("logout = %v, %v", had, err)
	}
	if entries, _ := os.ReadDir(store); len(entries) != 0 {
		t.Errorf("logout left %d entries in the helper", len(entries))
	}
	if _, err := Pull(context.Background(), newService(t), ref, fast); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("pull after logout: %v, want refused", err)
	}
	if auths, _ := dockerConfig(t)["auths"].(map[string]any); auths["other.example:5000"] == nil {
		t.Errorf("logout lost another registry's credentials: %v", auths)
	}
}

// TestLogoutLegacyKeys: older Docker versions stored credentials under
// "https://host:port" (or http://). Pull's keychain still finds them
// (docker/cli's file store matches keys by host name), so logout must
// remove them too, as docker logout does, or a "logged out" user keeps
// pulling with them.
func TestLogoutLegacyKeys(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithBasicAuth("erin", "0ld"))
	ref := reg.Addr + "/team/app:1"
	pushWithCredentials(t, reg, ref)
	auth := base64.StdEncoding.EncodeToString([]byte("erin:0ld"))
	for _, key := range []string{"https://" + reg.Addr, "http://" + reg.Addr, "https://" + reg.Addr + "/"} {
		t.Run(key, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", t.TempDir())
			writeDockerConfig(t, `{"auths":{"`+key+`":{"auth":"`+auth+`"}}}`)
			if _, err := Pull(context.Background(), newService(t), ref, fast); err != nil {
				t.Fatalf("pull with credentials under %q: %v", key, err)
			}
			if had, err := Logout(reg.Addr); err != nil || !had {
				t.Fatalf("logout = %v, %v", had, err)
			}
			if auths, _ := dockerConfig(t)["auths"].(map[string]any); len(auths) != 0 {
				t.Errorf("logout left %v", auths)
			}
			if _, err := Pull(context.Background(), newService(t), ref, fast); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("pull after logout: %v, want refused", err)
			}
		})
	}
}

// TestLogoutDockerHub: every name of Docker Hub logs out of the one key
// Docker stores it under; nothing is stored or created when there was
// nothing to remove. No network: logout never talks to the registry.
func TestLogoutDockerHub(t *testing.T) {
	for _, server := range []string{"", "docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/"} {
		t.Run(server, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", t.TempDir())
			if had, err := Logout(server); err != nil || had {
				t.Fatalf("logout with no config.json = %v, %v", had, err)
			}
			if c := dockerConfig(t); c != nil {
				t.Fatalf("logout with nothing to remove wrote config.json: %v", c)
			}
			auth := base64.StdEncoding.EncodeToString([]byte("frank:hub"))
			writeDockerConfig(t, `{"auths":{"`+DockerHubServer+`":{"auth":"`+auth+`"},"reg.lan:5000":{"auth":"`+auth+`"}}}`)
			if had, err := Logout(server); err != nil || !had {
				t.Fatalf("logout = %v, %v", had, err)
			}
			auths, _ := dockerConfig(t)["auths"].(map[string]any)
			if _, ok := auths[DockerHubServer]; ok || auths["reg.lan:5000"] == nil {
				t.Errorf("after logout of Docker Hub: %v", auths)
			}
			if had, err := Logout(server); err != nil || had {
				t.Errorf("second logout = %v, %v", had, err)
			}
		})
	}
}

// TestLoginRefusesBadInput: a malformed config.json is reported, not
// overwritten (docker/cli#5075: Docker once replaced such files with one
// holding only the new login), and missing credentials never reach the
// registry.
func TestLoginRefusesBadInput(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithBasicAuth("gina", "pw"))

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	p := writeDockerConfig(t, `{"auths":`)
	_, err := Login(context.Background(), reg.Addr, "gina", "pw", fast)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("malformed config.json: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != `{"auths":` {
		t.Errorf("login rewrote a malformed config.json: %q", b)
	}
	if _, err := Logout(reg.Addr); !errdefs.IsInvalidArgument(err) {
		t.Errorf("logout with a malformed config.json: %v", err)
	}

	t.Setenv("DOCKER_CONFIG", filepath.Join(t.TempDir(), "not", "yet"))
	for _, c := range [][2]string{{"", "pw"}, {"gina", ""}} {
		if _, err := Login(context.Background(), reg.Addr, c[0], c[1], fast); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Login(%q, %q): %v, want invalid argument", c[0], c[1], err)
		}
	}
	// The directory is created, with Docker's mode, on the first login.
	if _, err := Login(context.Background(), reg.Addr, "gina", "pw", fast); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(os.Getenv("DOCKER_CONFIG"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("DOCKER_CONFIG directory: %v, %v; want 0700", fi, err)
	}
}
