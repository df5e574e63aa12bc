package server

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	p := writeConfig(t, `
addr: 0.0.0.0:5443
root: data
tls:
  certificate: /etc/berth/cert.pem
  key: key.pem
  clientCA: ca.pem
http:
  plain: false
limits:
  maxManifestSize: 8MiB
  maxBlobSize: 10GB
  uploadExpiry: 2h
  ioTimeout: 30s
delete:
  enabled: false
log:
  level: debug
  accessLog: false
  format: json
metrics:
  enabled: true
  addr: 127.0.0.1:9090
health:
  enabled: false
`)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	want := Config{
		Addr: "0.0.0.0:5443",
		Root: filepath.Join(dir, "data"),
		TLS:  TLSConfig{Certificate: "/etc/berth/cert.pem", Key: filepath.Join(dir, "key.pem"), ClientCA: filepath.Join(dir, "ca.pem")},
		Limits: LimitsConfig{
			MaxManifestSize: 8 << 20,
			MaxBlobSize:     10_000_000_000,
			UploadExpiry:    2 * time.Hour,
			IOTimeout:       30 * time.Second,
		},
		Log:     LogConfig{Level: "debug", AccessLog: false, Format: "json"},
		Metrics: MetricsConfig{Enabled: true, Addr: "127.0.0.1:9090"},
	}
	// DeepEqual, not ==: the auth and proxy sections hold slices.
	if !reflect.DeepEqual(*cfg, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", *cfg, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "root: /srv/registry\n"} {
		cfg, err := LoadConfig(writeConfig(t, text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		def := DefaultConfig()
		def.Root = cfg.Root
		if !reflect.DeepEqual(cfg, def) {
			t.Errorf("%q: got %+v, want the defaults %+v", text, *cfg, *def)
		}
	}
}

func TestLoadConfigRefusesMistakes(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string // all in the one-line message
	}{
		{"adress: :5000\n", []string{`line 1: unknown key "adress" at the top level`, "known: addr, root, tls"}},
		{"tls:\n  cert: x.pem\n", []string{`line 2: unknown key "cert" in tls (known`, "known: certificate, key, clientCA"}},
		{"limits:\n  maxBlobsize: 1\n", []string{`unknown key "maxBlobsize" in limits (known`, "maxBlobSize"}},
		{"http:\n  plain: yes please\n", []string{"line 2:", "true or false"}},
		{"limits:\n  uploadExpiry: 60\n", []string{"line 2:", "a duration (like 30s, 24h)"}},
		{"limits:\n  maxBlobSize: 10 furlongs\n", []string{"line 2:", `size "10 furlongs"`}},
		{"addr: [\n", []string{"line"}},
	} {
		p := writeConfig(t, tc.text)
		_, err := LoadConfig(p)
		if err == nil {
			t.Errorf("%q: accepted", tc.text)
			continue
		}
		msg := err.Error()
		if !errdefs.IsInvalidArgument(err) || strings.Contains(msg, "\n") || !strings.Contains(msg, p) {
			t.Errorf("%q: %q: want one line naming the file, invalid argument", tc.text, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: %q lacks %q", tc.text, msg, w)
			}
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func(edit func(c *Config)) *Config {
		c := DefaultConfig()
		c.Root = "/srv/registry"
		edit(c)
		return c
	}
	tlsOn := func(c *Config) { c.TLS = TLSConfig{Certificate: "c.pem", Key: "k.pem"} }
	for _, tc := range []struct {
		name string
		cfg  *Config
		want string // "" for valid
	}{
		{"defaults", base(func(*Config) {}), ""},
		{"loopback v4", base(func(c *Config) { c.Addr = "127.0.0.2:5000" }), ""},
		{"loopback v6", base(func(c *Config) { c.Addr = "[::1]:5000" }), ""},
		{"localhost", base(func(c *Config) { c.Addr = "localhost:5000" }), ""},
		{"all interfaces plain", base(func(c *Config) { c.Addr = "0.0.0.0:5000" }), "refusing plain HTTP on 0.0.0.0:5000"},
		{"empty host plain", base(func(c *Config) { c.Addr = ":5000" }), "--insecure-http"},
		{"public v6 plain", base(func(c *Config) { c.Addr = "[2001:db8::1]:5000" }), "tls.certificate and tls.key"},
		{"metrics addr plain", base(func(c *Config) { c.Metrics.Addr = "0.0.0.0:9090" }), "refusing plain HTTP on 0.0.0.0:9090"},
		{"plain allowed", base(func(c *Config) { c.Addr = "0.0.0.0:5000"; c.HTTP.Plain = true }), ""},
		{"tls", base(func(c *Config) { c.Addr = "0.0.0.0:5000"; tlsOn(c) }), ""},
		{"cert without key", base(func(c *Config) { c.TLS.Certificate = "c.pem" }), "tls.key is not"},
		{"key without cert", base(func(c *Config) { c.TLS.Key = "k.pem" }), "tls.certificate is not"},
		{"client CA without TLS", base(func(c *Config) { c.TLS.ClientCA = "ca.pem" }), "tls.clientCA needs"},
		{"no root", base(func(c *Config) { c.Root = "" }), "--root"},
		{"bad addr", base(func(c *Config) { c.Addr = "5000" }), "not host:port"},
		{"bad format", base(func(c *Config) { c.Log.Format = "xml" }), "text or json"},
		{"bad level", base(func(c *Config) { c.Log.Level = "loud" }), "debug, info, warn or error"},
		{"zero manifest size", base(func(c *Config) { c.Limits.MaxManifestSize = 0 }), "maxManifestSize"},
		{"negative", base(func(c *Config) { c.Limits.IOTimeout = -1 }), "negative"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && err == nil:
			t.Errorf("%s: accepted", tc.name)
		case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err)):
			t.Errorf("%s: %v, want %q (invalid argument)", tc.name, err, tc.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "512": 512, "4MiB": 4 << 20, "4 MiB": 4 << 20, "1kb": 1000, "10GB": 10e9, "2GiB": 2 << 30, "1TiB": 1 << 40, "7B": 7,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "4 mebibytes", "99999999999TiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	for n, want := range map[ByteSize]string{0: "0", 1000: "1000", 4 << 20: "4MiB", 3 << 30: "3GiB", 3072: "3KiB", 1536: "1536"} {
		if got := n.String(); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}
