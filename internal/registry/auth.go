package registry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/berth-dev/berth/internal/errdefs"
)

// DockerHubServer is the key Docker stores Docker Hub's credentials
// under, and the server `berth login` talks to without an argument.
const DockerHubServer = "https://index.docker.io/v1/"

// ServerKey normalizes a login server as docker login does: Docker Hub's
// names ("", docker.io, index.docker.io, registry-1.docker.io, its v1 URL)
// become DockerHubServer; others lose their scheme and trailing slash
// ("https://reg.lan:5000/" -> "reg.lan:5000"). host is what to talk to.
func ServerKey(server string) (key, host string) {
	s := strings.TrimSpace(server)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s = strings.TrimSuffix(s, "/")
	switch s {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io", "index.docker.io/v1":
		return DockerHubServer, "index.docker.io"
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i] // a path names nothing at a registry's root
	}
	return s, s
}

// dockerConfigDir is where Docker's client keeps config.json: $DOCKER_CONFIG,
// or ~/.docker. It is read on every call (docker/cli's config.Dir caches
// it once per process).
func dockerConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".docker")
}

func loadDockerConfig() (*configfile.ConfigFile, error) {
	dir := dockerConfigDir()
	cf, err := config.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("%s/config.json is unreadable or malformed (%v); fix it, or point DOCKER_CONFIG elsewhere: %w",
			dir, err, errdefs.ErrInvalidArgument)
	}
	return cf, nil
}

// Login checks user and password against server (a registry host[:port];
// "" means Docker Hub) and, only if the registry accepts them, stores
// them as docker login does: in config.json's auths as base64
// "user:password", or through the credential helper it names
// (credsStore, credHelpers). It returns the key they were stored under.
func Login(ctx context.Context, server, user, password string, opts ...Option) (string, error) {
	key, host := ServerKey(server)
	if user == "" || password == "" {
		return "", fmt.Errorf("login to %s: a user name and a password are needed: %w", host, errdefs.ErrInvalidArgument)
	}
	cf, err := loadDockerConfig()
	if err != nil {
		return "", fmt.Errorf("login to %s: %w", host, err)
	}
	o := newOptions(opts)
	o.keychain = fixedKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: password})}
	if err := o.checkLogin(ctx, host); err != nil {
		return "", fmt.Errorf("login to %s: %w", host, err)
	}
	store := cf.GetCredentialsStore(key)
	if err := store.Store(types.AuthConfig{Username: user, Password: password, ServerAddress: key}); err != nil {
		return "", fmt.Errorf("login to %s: the registry accepted the credentials, but storing them failed: %w", host, err)
	}
	if err := cf.Save(); err != nil {
		return "", fmt.Errorf("login to %s: save %s: %w", host, cf.Filename, err)
	}
	return key, nil
}

// StoredCredentials are the user name and password stored for server (as
// Login stores them: config.json's auths or its credential helper), empty
// when there are none. `login` without -u tries them first, as docker
// login does.
func StoredCredentials(server string) (user, password string, err error) {
	key, host := ServerKey(server)
	cf, err := loadDockerConfig()
	if err != nil {
		return "", "", fmt.Errorf("login to %s: %w", host, err)
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return "", "", fmt.Errorf("login to %s: read the stored credentials: %w", host, err)
	}
	return ac.Username, ac.Password, nil
}

// checkLogin proves the credentials: for a token registry the token
// exchange with them must succeed; then GET /v2/ with them (or the token)
// must answer 200, which a Basic registry only does for good credentials.
func (o *options) checkLogin(ctx context.Context, host string) error {
	c, err := o.dial(ctx, host, "", false, "")
	if err != nil {
		return loginError(err)
	}
	resp, err := c.do(ctx, func() (*http.Request, error) {
		return http.NewRequest(http.MethodGet, c.base+"/v2/", nil)
	}, http.StatusOK)
	if err != nil {
		return loginError(err)
	}
	resp.Body.Close()
	return nil
}

// loginError words a refusal as docker login does; the registry's own
// explanation adds nothing a user can act on.
func loginError(err error) error {
	if errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("unauthorized: incorrect username or password: %w", errdefs.ErrFailedPrecondition)
	}
	return err
}

// Logout removes the credentials stored for server, from config.json or
// its credential helper. It reports whether there were any.
func Logout(server string) (bool, error) {
	key, host := ServerKey(server)
	cf, err := loadDockerConfig()
	if err != nil {
		return false, fmt.Errorf("logout from %s: %w", host, err)
	}
	// Older Docker versions stored a registry under "https://host",
	// "http://host" or with a path; the keychain still matches those by
	// host name, so they go too, or a logged-out user keeps pulling
	// with them.
	keys := []string{key}
	if key != DockerHubServer {
		for k := range cf.AuthConfigs {
			if k != key && credentials.ConvertToHostname(k) == host {
				keys = append(keys, k)
			}
		}
	}
	had := false
	for _, k := range keys {
		store := cf.GetCredentialsStore(k)
		ac, err := store.Get(k)
		if err != nil {
			return false, fmt.Errorf("logout from %s: %w", host, err)
		}
		_, inFile := cf.AuthConfigs[k]
		if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && !inFile {
			continue
		}
		if err := store.Erase(k); err != nil {
			return false, fmt.Errorf("logout from %s: %w", host, err)
		}
		had = true
	}
	if !had {
		return false, nil
	}
	if err := cf.Save(); err != nil {
		return false, fmt.Errorf("logout from %s: save %s: %w", host, cf.Filename, err)
	}
	return true, nil
}

// fixedKeychain answers every registry with the same credentials.
type fixedKeychain struct{ auth authn.Authenticator }

func (k fixedKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }
