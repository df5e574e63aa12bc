package registry

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/errdefs"
)

// DefaultConfigPath is berth's configuration file. Its registry keys are
// named as in Docker's daemon.json, so a user can copy them over.
const DefaultConfigPath = "/etc/berth/config.json"

// DefaultCertsDirs are searched, in order, for <host[:port]>/ca.crt (and
// other *.crt CAs) and client.cert/client.key pairs, as Docker's
// /etc/docker/certs.d is; Docker's own directory is honoured so existing
// set-ups keep working.
var DefaultCertsDirs = []string{"/etc/berth/certs.d", "/etc/docker/certs.d"}

// Hosts is how berth reaches registries: which talk plain HTTP, which
// mirrors stand in for Docker Hub, which CAs to trust.
type Hosts struct {
	// Insecure lists registries ("host", "host:port" or a CIDR) reached
	// over plain HTTP, or HTTPS without verifying the certificate.
	// Loopback registries are always insecure, as in Docker.
	Insecure []string `json:"insecure-registries,omitempty"`
	// Mirrors are tried in order, before Docker Hub itself, for pulls of
	// docker.io images ("https://mirror.example.com", "http://127.0.0.1:5001").
	Mirrors []string `json:"registry-mirrors,omitempty"`
	// CertsDirs overrides DefaultCertsDirs.
	CertsDirs []string `json:"certs-dirs,omitempty"`
}

// LoadHosts reads the registry settings from a berth config file. A
// missing file means the defaults; a malformed one is an error naming it.
func LoadHosts(path string) (*Hosts, error) {
	h := &Hosts{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if err := json.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("config %s is not valid JSON (%v): fix or remove it: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return h, nil
}

func (h *Hosts) validate() error {
	for _, m := range h.Mirrors {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("registry-mirrors: %q is not a URL like https://mirror.example.com: %w", m, errdefs.ErrInvalidArgument)
		}
	}
	for _, s := range h.Insecure {
		if strings.Contains(s, "://") {
			return fmt.Errorf("insecure-registries: %q must be host[:port] or a CIDR, without a scheme: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// IsInsecure reports whether host[:port] may be reached over plain HTTP.
func (h *Hosts) IsInsecure(hostport string) bool {
	if isLoopback(hostport) {
		return true
	}
	if h == nil {
		return false
	}
	host := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		host = hh
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	for _, s := range h.Insecure {
		if s == hostport || s == host {
			return true
		}
		if _, n, err := net.ParseCIDR(s); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// mirrors returns the registries ("host[:port]") standing in for
// Docker Hub, with whether each is reached over plain HTTP.
func (h *Hosts) mirrors() []mirror {
	if h == nil {
		return nil
	}
	var ms []mirror
	for _, m := range h.Mirrors {
		u, err := url.Parse(m)
		if err != nil {
			continue // validate refused it already
		}
		ms = append(ms, mirror{host: u.Host, plain: u.Scheme == "http"})
	}
	return ms
}

type mirror struct {
	host  string
	plain bool
}

// transport is the HTTP transport for one registry host: the CAs and
// client certificate of its certs.d directory, and no certificate check
// when the registry is insecure.
func (h *Hosts) transport(hostport string, insecure bool) (*http.Transport, error) {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		cfg.InsecureSkipVerify = true //nolint:gosec // the user asked for it
	}
	dirs := DefaultCertsDirs
	if h != nil && len(h.CertsDirs) > 0 {
		dirs = h.CertsDirs
	}
	for _, root := range dirs {
		dir := filepath.Join(root, certsDirName(hostport))
		if err := loadCertsDir(dir, cfg); err != nil {
			return nil, err
		}
	}
	t.TLSClientConfig = cfg
	return t, nil
}

// certsDirName is the directory certs.d uses for a registry: host:port,
// with Docker Hub's canonical name.
func certsDirName(hostport string) string {
	if hostport == "index.docker.io" {
		return "docker.io"
	}
	return hostport
}

// loadCertsDir adds dir's *.crt to cfg's root CAs and its *.cert/*.key
// pairs as client certificates, as Docker reads certs.d.
func loadCertsDir(dir string, cfg *tls.Config) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read certificates in %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, ".crt"):
			pem, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read CA %s: %w", p, err)
			}
			if cfg.RootCAs == nil {
				if cfg.RootCAs, err = x509.SystemCertPool(); err != nil || cfg.RootCAs == nil {
					cfg.RootCAs = x509.NewCertPool()
				}
			}
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("CA file %s holds no PEM certificate: fix or remove it: %w", p, errdefs.ErrInvalidArgument)
			}
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			pair, err := tls.LoadX509KeyPair(p, key)
			if err != nil {
				return fmt.Errorf("client certificate %s (with key %s): %v: %w", p, key, err, errdefs.ErrInvalidArgument)
			}
			cfg.Certificates = append(cfg.Certificates, pair)
		case strings.HasSuffix(name, ".key"):
			if _, err := os.Stat(strings.TrimSuffix(p, ".key") + ".cert"); err != nil {
				return fmt.Errorf("client key %s has no matching .cert file: %w", p, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}
