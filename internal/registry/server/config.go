package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Config is what `berth registry serve` runs: the YAML file given with
// --config, with the command's flags laid over it. Every key is optional;
// DefaultConfig holds the values of the keys a file leaves out. An example
// with every key is in docs/registry-server.md.
type Config struct {
	// Addr is host:port to listen on. Plain HTTP is refused on an address
	// that is not loopback unless TLS or HTTP.Plain is set.
	Addr string `yaml:"addr"`
	// Root is the storage directory. Relative paths in a file are taken
	// from the file's directory.
	Root string `yaml:"root"`

	TLS     TLSConfig     `yaml:"tls"`
	HTTP    HTTPConfig    `yaml:"http"`
	Limits  LimitsConfig  `yaml:"limits"`
	Delete  DeleteConfig  `yaml:"delete"`
	Log     LogConfig     `yaml:"log"`
	Metrics MetricsConfig `yaml:"metrics"`
	Health  HealthConfig  `yaml:"health"`

	// Auth is who may do what (auth.go); nil: anyone may do anything,
	// which Validate allows only on loopback or with http.plain set.
	Auth *AuthConfig `yaml:"auth"`
	// Proxy makes names matching an upstream's prefix a pull-through
	// cache of it (proxy.go).
	Proxy []ProxyConfig `yaml:"proxy"`
}

// TLSConfig is a certificate and key in PEM files; with ClientCA, clients
// must present a certificate signed by it (mutual TLS).
type TLSConfig struct {
	Certificate string `yaml:"certificate"`
	Key         string `yaml:"key"`
	ClientCA    string `yaml:"clientCA"`
}

// Enabled says whether a certificate is configured.
func (t TLSConfig) Enabled() bool { return t.Certificate != "" }

// HTTPConfig is about serving without TLS.
type HTTPConfig struct {
	// Plain allows plain HTTP on an address that is not loopback. Without
	// it such an address needs TLS: credentials and tokens would otherwise
	// cross the network in the clear.
	Plain bool `yaml:"plain"`
}

// LimitsConfig mirrors the Registry's size and time limits (WithMaxBlobSize...).
type LimitsConfig struct {
	MaxManifestSize ByteSize      `yaml:"maxManifestSize"`
	MaxBlobSize     ByteSize      `yaml:"maxBlobSize"` // 0: no limit
	UploadExpiry    time.Duration `yaml:"uploadExpiry"`
	IOTimeout       time.Duration `yaml:"ioTimeout"`
}

// DeleteConfig turns the DELETE endpoints on or off.
type DeleteConfig struct {
	Enabled bool `yaml:"enabled"`
}

// LogConfig is the server's log (faults, start and stop) and its access log.
type LogConfig struct {
	Level     string `yaml:"level"`     // debug, info, warn, error
	AccessLog bool   `yaml:"accessLog"` // one line per request, at level info
	Format    string `yaml:"format"`    // text or json
}

// MetricsConfig is the Prometheus endpoint, /metrics.
type MetricsConfig struct {
	Enabled bool `yaml:"enabled"`
	// Addr, when set, serves /metrics on a listener of its own (with
	// /health, which stays on the registry's too) instead of the
	// registry's, so that it can stay on a private network while the
	// registry is public.
	Addr string `yaml:"addr"`
}

// HealthConfig is the health endpoint, /health (and /healthz).
type HealthConfig struct {
	Enabled bool `yaml:"enabled"`
}

// DefaultConfig is the configuration of a registry started with no file
// and no flags but --root.
func DefaultConfig() *Config {
	return &Config{
		Addr: "127.0.0.1:5000",
		Limits: LimitsConfig{
			MaxManifestSize: DefaultMaxManifestSize,
			UploadExpiry:    24 * time.Hour,
			IOTimeout:       60 * time.Second,
		},
		Delete:  DeleteConfig{Enabled: true},
		Log:     LogConfig{Level: "info", AccessLog: true, Format: "text"},
		Metrics: MetricsConfig{Enabled: true},
		Health:  HealthConfig{Enabled: true},
	}
}

// LoadConfig reads a YAML configuration file over DefaultConfig. A key
// the file should not have (a typo, a section of another version) is an
// error naming it, never silently ignored: a misspelt "plain" or
// "clientCA" would otherwise change what is served without a word.
// Relative paths (root, tls.*) are made absolute from the file's directory.
// LoadConfig does not Validate: flags may still complete the file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry config: %w", err)
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("registry config %s: %s: %w", path, yamlErrorLine(err), errdefs.ErrInvalidArgument)
	}
	if abs, err := filepath.Abs(filepath.Dir(path)); err == nil {
		cfg.resolvePaths(abs)
	}
	return cfg, nil
}

// resolvePaths makes the file's relative paths relative to dir.
func (c *Config) resolvePaths(dir string) {
	paths := []*string{&c.Root, &c.TLS.Certificate, &c.TLS.Key, &c.TLS.ClientCA}
	paths = append(paths, c.Auth.FilePaths()...)
	for i := range c.Proxy {
		paths = append(paths, &c.Proxy[i].PasswordFile, &c.Proxy[i].CAFile)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// Validate checks the configuration as a whole, after flags are applied;
// each error is one line saying which setting to change.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("registry config: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if c.Root == "" {
		return bad("no storage directory: set root: in the file or pass --root DIR")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("addr %q is not host:port (for example 127.0.0.1:5000)", c.Addr)
	}
	if c.Metrics.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Addr); err != nil {
			return bad("metrics.addr %q is not host:port (for example 127.0.0.1:9090)", c.Metrics.Addr)
		}
	}
	switch t := c.TLS; {
	case t.Certificate != "" && t.Key == "":
		return bad("tls.certificate is set but tls.key is not (--tls-key): both are needed")
	case t.Key != "" && t.Certificate == "":
		return bad("tls.key is set but tls.certificate is not (--tls-cert): both are needed")
	case t.ClientCA != "" && t.Certificate == "":
		return bad("tls.clientCA needs tls.certificate and tls.key: client certificates are only asked for over TLS")
	}
	l := c.Limits
	if l.MaxManifestSize <= 0 {
		return bad("limits.maxManifestSize must be more than 0")
	}
	if l.MaxBlobSize < 0 || l.UploadExpiry < 0 || l.IOTimeout < 0 {
		return bad("limits must not be negative (0 means no limit for maxBlobSize, uploadExpiry and ioTimeout)")
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return bad("log.level %q: use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format %q: use text or json", c.Log.Format)
	}
	if !c.TLS.Enabled() && !c.HTTP.Plain {
		for _, a := range []string{c.Addr, c.Metrics.Addr} {
			if a != "" && !loopbackAddr(a) {
				return fmt.Errorf("%w: %w", plainHTTPError(a), errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

// plainHTTPError is the refusal to serve plain HTTP on addr.
func plainHTTPError(addr string) error {
	return fmt.Errorf("refusing plain HTTP on %s, which is not a loopback address: give a certificate (tls.certificate and tls.key, or --tls-cert and --tls-key), or allow plain HTTP with http.plain: true (--insecure-http)", addr)
}

// loopbackAddr says whether host:port names a loopback address by its
// text: 127.0.0.0/8, ::1 or localhost. An empty host or 0.0.0.0 is every
// interface; other host names are checked again on the bound listener
// (Serve), so no name is resolved here.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Options are the Registry options the configuration sets.
func (c *Config) Options() []Option {
	return []Option{
		WithMaxManifestSize(int64(c.Limits.MaxManifestSize)),
		WithMaxBlobSize(int64(c.Limits.MaxBlobSize)),
		WithUploadExpiry(c.Limits.UploadExpiry),
		WithIOTimeout(c.Limits.IOTimeout),
		WithDelete(c.Delete.Enabled),
	}
}

// Logger is a logger for the server's messages and access log, in the
// configured format and level.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.Log.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// ---- sizes ----

// ByteSize is a number of bytes, written in a file or flag as a number or
// with a unit: 512, 4MiB, 10GB (KB, MB, GB, TB are powers of 1000; KiB,
// MiB, GiB, TiB powers of 1024). It is a pflag.Value, so flags take the
// same forms.
type ByteSize int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "m": 1000 * 1000, "mb": 1000 * 1000,
	"g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000, "t": 1000 * 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseByteSize parses the forms ByteSize describes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("size %q: want bytes, or a number with KB, MB, GB, KiB, MiB or GiB", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > (1<<63-1)/unit {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(n * unit), nil
}

// UnmarshalYAML takes a number or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number or a string like 4MiB", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// String is the shortest exact form with a binary unit: 4MiB, 1000.
func (b ByteSize) String() string {
	n := int64(b)
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// Set is pflag.Value's.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Type is pflag.Value's.
func (b *ByteSize) Type() string { return "size" }

// ---- error text ----

var (
	// Compiled when a config error needs it, not at every berth start.
	unknownFieldRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	})
	typeNames = strings.NewReplacer(
		"into time.Duration", "into a duration (like 30s, 24h)",
		"into bool", "into true or false",
		"into string", "into a string",
	)
)

// yamlErrorLine is a decoding error on one line. yaml.v3 reports unknown
// keys by Go type ("field x not found in type server.LimitsConfig");
// users know the file, so the type becomes the section and the keys it
// takes are listed.
func yamlErrorLine(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", " "), "yaml: ")
	}
	sections := configSections()
	msgs := make([]string, len(te.Errors))
	for i, e := range te.Errors {
		if m := unknownFieldRe().FindStringSubmatch(e); m != nil {
			msgs[i] = fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
			if s, ok := sections[m[3]]; ok {
				where := "at the top level"
				if s.path != "" {
					where = "in " + s.path
				}
				msgs[i] += " " + where + " (known: " + strings.Join(s.keys, ", ") + ")"
			}
			continue
		}
		msgs[i] = typeNames.Replace(e)
	}
	return strings.Join(msgs, "; ")
}

type configSection struct {
	path string
	keys []string
}

// configSections maps each struct type in Config to its place in the
// file and the keys it takes, by the yaml tags, so that sections added
// later are described without a change here.
func configSections() map[string]configSection {
	out := map[string]configSection{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		if _, seen := out[t.String()]; seen {
			return
		}
		s := configSection{path: path}
		out[t.String()] = s
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			s.keys = append(s.keys, name)
			child := name
			if path != "" {
				child = path + "." + name
			}
			walk(f.Type, child)
		}
		out[t.String()] = s
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}
