package cli

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/internal/registry/server"
)

// addRegistryServeCommands adds `berth registry serve` (and the `registry`
// group, if no other file has made it yet; `registry gc` will join it).
func addRegistryServeCommands(root *cobra.Command) {
	var group *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "registry" {
			group = c
		}
	}
	if group == nil {
		group = &cobra.Command{Use: "registry", Short: "Run a private registry (the OCI distribution API)"}
		root.AddCommand(group)
	}
	group.AddCommand(newRegistryServeCommand())
}

func newRegistryServeCommand() *cobra.Command {
	var (
		configFile string
		// flags holds the flags' values; only those given on the command
		// line are laid over the file.
		flags = server.DefaultConfig()
		// noDelete is --disable-delete, the opposite of delete.enabled.
		noDelete bool
	)
	cmd := &cobra.Command{
		Use:   "serve [OPTIONS]",
		Short: "Serve a registry from a storage directory",
		Long: `Serve the OCI distribution API (v1.1: push, pull, tags, catalog,
referrers, deletes) from a storage directory of its own, until SIGINT or
SIGTERM, with /metrics (Prometheus) and /health beside it.

Settings come from --config FILE (YAML; see docs/registry-server.md),
and flags given on the command line override the file. Plain HTTP is
served on loopback only unless --insecure-http; anywhere else, give a
certificate with --tls-cert and --tls-key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := server.DefaultConfig()
			if configFile != "" {
				var err error
				if cfg, err = server.LoadConfig(configFile); err != nil {
					return err
				}
			}
			flags.Delete.Enabled = !noDelete
			overrideConfig(cfg, flags, cmd.Flags())
			if cfg.Root == "" {
				return usageErr("berth registry serve: no storage directory: pass --root DIR, or set root: in the --config file")
			}
			log := cfg.Logger(cmd.ErrOrStderr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := server.Run(ctx, cfg, log, func(addr, metrics net.Addr) {
				scheme := "http"
				if cfg.TLS.Enabled() {
					scheme = "https"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "registry listening on %s (%s), storage %s\n", addr, scheme, cfg.Root)
				if metrics != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "metrics listening on %s\n", metrics)
				}
			})
			// Run's errors say what was wrong ("registry config: ...",
			// "refusing plain HTTP ...") and what to do; no prefix needed.
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML configuration file; flags given override it")
	f.StringVar(&flags.Addr, "addr", flags.Addr, "address to listen on (host:port)")
	// Shadows the global --root (the engine's): the registry's storage is its own.
	f.StringVar(&flags.Root, "root", "", "storage directory of the registry (required, here or in --config)")
	f.StringVar(&flags.TLS.Certificate, "tls-cert", "", "serve TLS with this certificate (PEM; with --tls-key)")
	f.StringVar(&flags.TLS.Key, "tls-key", "", "private key of --tls-cert (PEM)")
	f.StringVar(&flags.TLS.ClientCA, "tls-client-ca", "", "require client certificates signed by this CA (PEM): mutual TLS")
	f.BoolVar(&flags.HTTP.Plain, "insecure-http", false, "allow plain HTTP on an address that is not loopback")
	f.Var(&flags.Limits.MaxManifestSize, "max-manifest-size", "largest manifest accepted (bytes, or 4MiB, 10GB...)")
	f.Var(&flags.Limits.MaxBlobSize, "max-blob-size", "largest blob accepted (0: no limit)")
	f.DurationVar(&flags.Limits.UploadExpiry, "upload-expiry", flags.Limits.UploadExpiry, "forget upload sessions idle for this long")
	f.DurationVar(&flags.Limits.IOTimeout, "io-timeout", flags.Limits.IOTimeout, "drop a request that makes no progress for this long")
	f.BoolVar(&noDelete, "disable-delete", false, "answer DELETE requests with 405")
	f.BoolVar(&flags.Log.AccessLog, "access-log", flags.Log.AccessLog, "log one line per request (--access-log=false to stop)")
	f.StringVar(&flags.Log.Format, "log-format", flags.Log.Format, "log format: text or json")
	f.StringVar(&flags.Log.Level, "log-level", flags.Log.Level, "log level: debug, info, warn or error")
	f.BoolVar(&flags.Metrics.Enabled, "metrics", flags.Metrics.Enabled, "serve Prometheus metrics at /metrics (--metrics=false to stop)")
	f.StringVar(&flags.Metrics.Addr, "metrics-addr", "", "serve /metrics on this address (and /health, which --addr keeps too) instead of on --addr")
	return cmd
}

// overrideConfig lays the flags given on the command line over cfg.
// Flags not given leave the file's values (or the defaults) alone, so a
// flag's default never undoes a setting of the file.
func overrideConfig(cfg, flags *server.Config, fs *pflag.FlagSet) {
	set := map[string]func(){
		"addr":              func() { cfg.Addr = flags.Addr },
		"root":              func() { cfg.Root = flags.Root },
		"tls-cert":          func() { cfg.TLS.Certificate = flags.TLS.Certificate },
		"tls-key":           func() { cfg.TLS.Key = flags.TLS.Key },
		"tls-client-ca":     func() { cfg.TLS.ClientCA = flags.TLS.ClientCA },
		"insecure-http":     func() { cfg.HTTP.Plain = flags.HTTP.Plain },
		"max-manifest-size": func() { cfg.Limits.MaxManifestSize = flags.Limits.MaxManifestSize },
		"max-blob-size":     func() { cfg.Limits.MaxBlobSize = flags.Limits.MaxBlobSize },
		"upload-expiry":     func() { cfg.Limits.UploadExpiry = flags.Limits.UploadExpiry },
		"io-timeout":        func() { cfg.Limits.IOTimeout = flags.Limits.IOTimeout },
		"disable-delete":    func() { cfg.Delete.Enabled = flags.Delete.Enabled },
		"access-log":        func() { cfg.Log.AccessLog = flags.Log.AccessLog },
		"log-format":        func() { cfg.Log.Format = flags.Log.Format },
		"log-level":         func() { cfg.Log.Level = flags.Log.Level },
		"metrics":           func() { cfg.Metrics.Enabled = flags.Metrics.Enabled },
		"metrics-addr":      func() { cfg.Metrics.Addr = flags.Metrics.Addr },
	}
	fs.Visit(func(f *pflag.Flag) {
		if apply, ok := set[f.Name]; ok {
			apply()
		}
	})
}
