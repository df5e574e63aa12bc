package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

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
		addr         string
		root         string
		maxManifest  int64
		maxBlob      int64
		uploadExpiry time.Duration
		ioTimeout    time.Duration
		noDelete     bool
	)
	cmd := &cobra.Command{
		Use:   "serve [OPTIONS]",
		Short: "Serve a registry from a storage directory",
		Long: `Serve the OCI distribution API (v1.1: push, pull, tags, catalog,
referrers, deletes) from a storage directory of its own, until SIGINT or
SIGTERM. There is no authentication yet: listen on loopback only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if root == "" {
				return usageErr("berth registry serve: --root DIR is required (the registry's storage directory)")
			}
			store, err := server.Open(root)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			reg := server.New(store,
				server.WithMaxManifestSize(maxManifest),
				server.WithMaxBlobSize(maxBlob),
				server.WithUploadExpiry(uploadExpiry),
				server.WithIOTimeout(ioTimeout),
				server.WithDelete(!noDelete),
				server.WithLogger(log),
			)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("berth registry serve: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "registry listening on %s, storage %s\n", ln.Addr(), store.Root())
			if err := reg.Serve(ctx, ln); err != nil {
				return fmt.Errorf("berth registry serve: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:5000", "address to listen on (host:port)")
	// Shadows the global --root (the engine's): the registry's storage is its own.
	f.StringVar(&root, "root", "", "storage directory of the registry (required)")
	f.Int64Var(&maxManifest, "max-manifest-size", server.DefaultMaxManifestSize, "largest manifest accepted, in bytes")
	f.Int64Var(&maxBlob, "max-blob-size", 0, "largest blob accepted, in bytes (0: no limit)")
	f.DurationVar(&uploadExpiry, "upload-expiry", 24*time.Hour, "forget upload sessions idle for this long")
	f.DurationVar(&ioTimeout, "io-timeout", 60*time.Second, "drop a request that makes no progress for this long")
	f.BoolVar(&noDelete, "disable-delete", false, "answer DELETE requests with 405")
	return cmd
}
