package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/registry/registrytest"
)

// runStdin runs berth with stdin and keeps stdout and stderr apart, as
// the login verbs write the password warning to one and the result to
// the other.
func runStdin(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetIn(stdin)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// loginEnv points berth and Docker's client config at fresh directories,
// so no test reads or writes the host's /etc/berth or ~/.docker.
func loginEnv(t *testing.T) (dockerConfig string) {
	t.Helper()
	t.Setenv("BERTH_ROOT", t.TempDir())
	t.Setenv("BERTH_CONFIG", filepath.Join(t.TempDir(), "config.json"))
	dockerConfig = t.TempDir()
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	return dockerConfig
}

// storedAuth is config.json's auths[server].auth, "" when absent.
func storedAuth(t *testing.T, dockerConfig, server string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dockerConfig, "config.json"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("config.json: %v\n%s", err, b)
	}
	return c.Auths[server].Auth
}

// loginExitCode is the code Execute would exit with for err (runtimeMode off).
func loginExitCode(err error) int {
	var ce codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitCodeFor(nil, err)
}

// TestLoginFlags: the flag combinations docker login refuses, with its
// messages and exit code 1, before any registry is asked or anything is
// written.
func TestLoginFlags(t *testing.T) {
	dc := loginEnv(t)
	for _, c := range []struct {
		args      []string
		want      string
		warnsOfP  bool
		stdinUsed bool
	}{
		{[]string{"login", "-u", "alice", "-p", "x", "--password-stdin", "127.0.0.1:1"}, "--password and --password-stdin are mutually exclusive", true, false},
		{[]string{"login", "--password-stdin", "127.0.0.1:1"}, "Must provide --username with --password-stdin", false, false},
		// Not a terminal and nothing given: no prompt, an error saying what to pass.
		{[]string{"login", "127.0.0.1:1"}, "--password-stdin", false, false},
		{[]string{"login", "-u", "alice", "127.0.0.1:1"}, "--password-stdin", false, false},
		// An empty password on stdin is no password.
		{[]string{"login", "-u", "alice", "--password-stdin", "127.0.0.1:1"}, "no credentials", false, true},
	} {
		stdout, stderr, err := runStdin(t, strings.NewReader("\n"), c.args...)
		if err == nil || !strings.Contains(userMessage(err), c.want) || loginExitCode(err) != 1 {
			t.Errorf("%v: err %v (exit %d), want %q and exit 1", c.args, err, loginExitCode(err), c.want)
			continue
		}
		if msg := userMessage(err); strings.Contains(msg, "\n") || strings.HasSuffix(msg, "invalid argument") {
			t.Errorf("%v: message %q is not one clean line", c.args, msg)
		}
		if warned := strings.Contains(stderr, "WARNING! Using --password via the CLI is insecure. Use --password-stdin."); warned != c.warnsOfP {
			t.Errorf("%v: warning printed %v, want %v (stderr %q)", c.args, warned, c.warnsOfP, stderr)
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q", c.args, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(dc, "config.json")); !os.IsNotExist(err) {
		t.Errorf("refused flags wrote config.json: %v", err)
	}
	if _, _, err := runStdin(t, strings.NewReader(""), "login", "a", "b"); err == nil {
		t.Error("login with two servers: want an error")
	}
}

// TestLoginLogoutCommands drives login and logout against docker-registry
// with Basic and with token auth, as a script would.
func TestLoginLogoutCommands(t *testing.T) {
	for _, mode := range []string{"basic", "token"} {
		t.Run(mode, func(t *testing.T) {
			dc := loginEnv(t)
			opts := []registrytest.Option{registrytest.WithBasicAuth("alice", "s3cret")}
			if mode == "token" {
				opts = append(opts, registrytest.WithTokenAuth("berth-test-issuer"))
			}
			reg := registrytest.Start(t, opts...)
			want := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))

			// Wrong password: one line naming the registry, exit 1, nothing stored.
			stdout, _, err := runStdin(t, strings.NewReader("wrong\n"), "login", "-u", "alice", "--password-stdin", reg.Addr)
			msg := userMessage(err)
			if err == nil || loginExitCode(err) != 1 || !strings.HasPrefix(msg, "login to "+reg.Addr+": ") ||
				!strings.Contains(msg, "incorrect username or password") || strings.Contains(msg, "\n") {
				t.Errorf("wrong password: err %q, exit %d", msg, loginExitCode(err))
			}
			if stdout != "" {
				t.Errorf("wrong password printed %q", stdout)
			}
			if _, err := os.Stat(filepath.Join(dc, "config.json")); !os.IsNotExist(err) {
				t.Errorf("a refused login wrote config.json: %v", err)
			}

			// --password-stdin: the trailing newline (CRLF too) is not the password's.
			stdout, stderr, err := runStdin(t, strings.NewReader("s3cret\r\n"), "login", "-u", "alice", "--password-stdin", "http://"+reg.Addr+"/")
			if err != nil || stdout != "Login Succeeded\n" || stderr != "" {
				t.Fatalf("login: %v, stdout %q, stderr %q", err, stdout, stderr)
			}
			if got := storedAuth(t, dc, reg.Addr); got != want {
				t.Errorf("stored auth %q, want %q", got, want)
			}
			if fi, err := os.Stat(filepath.Join(dc, "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("config.json: %v, %v; want mode 0600", fi, err)
			}

			out, _, err := runStdin(t, nil, "logout", reg.Addr)
			if err != nil || out != "Removing login credentials for "+reg.Addr+"\n" {
				t.Errorf("logout: %v, %q", err, out)
			}
			if got := storedAuth(t, dc, reg.Addr); got != "" {
				t.Errorf("logout left %q", got)
			}
			out, _, err = runStdin(t, nil, "logout", reg.Addr)
			if err != nil || out != "Not logged in to "+reg.Addr+"\n" {
				t.Errorf("second logout: %v, %q", err, out)
			}

			// -p works, with Docker's warning on stderr only.
			stdout, stderr, err = runStdin(t, strings.NewReader(""), "login", "--username", "alice", "--password", "s3cret", reg.Addr)
			if err != nil || stdout != "Login Succeeded\n" || stderr != "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n" {
				t.Fatalf("login -p: %v, stdout %q, stderr %q", err, stdout, stderr)
			}
			if got := storedAuth(t, dc, reg.Addr); got != want {
				t.Errorf("after login -p: stored auth %q, want %q", got, want)
			}

			// No -u: the stored credentials are tried first, as docker login does.
			stdout, stderr, err = runStdin(t, strings.NewReader(""), "login", reg.Addr)
			if err != nil || stdout != "Authenticating with existing credentials...\nLogin Succeeded\n" || stderr != "" {
				t.Errorf("login with stored credentials: %v, stdout %q, stderr %q", err, stdout, stderr)
			}
			// Stale ones: said on stderr, then the usual ask, which needs
			// a terminal; what was stored stays.
			stale := base64.StdEncoding.EncodeToString([]byte("alice:old"))
			cfg := `{"auths":{"` + reg.Addr + `":{"auth":"` + stale + `"}}}`
			if err := os.WriteFile(filepath.Join(dc, "config.json"), []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			_, stderr, err = runStdin(t, strings.NewReader(""), "login", reg.Addr)
			if err == nil || loginExitCode(err) != 1 || !strings.HasPrefix(stderr, "Login did not succeed, error: ") ||
				!strings.Contains(stderr, "incorrect username or password") {
				t.Errorf("login with stale credentials: %v (exit %d), stderr %q", err, loginExitCode(err), stderr)
			}
			if got := storedAuth(t, dc, reg.Addr); got != stale {
				t.Errorf("a failed login changed the stored credentials: %q", got)
			}
		})
	}
}

// TestLoginRegistryDown: a registry that does not answer is reported,
// with exit 1, and nothing is stored.
func TestLoginRegistryDown(t *testing.T) {
	dc := loginEnv(t)
	_, _, err := runStdin(t, strings.NewReader("pw\n"), "login", "-u", "alice", "--password-stdin", "127.0.0.1:1")
	if err == nil || loginExitCode(err) != 1 || !strings.Contains(userMessage(err), "connection refused") {
		t.Errorf("registry down: %v (exit %d)", err, loginExitCode(err))
	}
	if _, err := os.Stat(filepath.Join(dc, "config.json")); !os.IsNotExist(err) {
		t.Errorf("a failed login wrote config.json: %v", err)
	}
}

// TestLogoutDockerHub: without a server, logout is Docker Hub's, named by
// Docker's key, and needs no network.
func TestLogoutDockerHub(t *testing.T) {
	dc := loginEnv(t)
	out, _, err := runStdin(t, nil, "logout")
	if err != nil || out != "Not logged in to https://index.docker.io/v1/\n" {
		t.Errorf("logout: %v, %q", err, out)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("bob:hub"))
	if err := os.WriteFile(filepath.Join(dc, "config.json"), []byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runStdin(t, nil, "logout", "docker.io")
	if err != nil || out != "Removing login credentials for https://index.docker.io/v1/\n" {
		t.Errorf("logout docker.io: %v, %q", err, out)
	}
	if got := storedAuth(t, dc, "https://index.docker.io/v1/"); got != "" {
		t.Errorf("logout left %q", got)
	}
}
