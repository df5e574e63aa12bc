package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/registry/server"
)

// addRegistryGCCommands adds `berth registry gc` (and the `registry` group,
// if no other file has made it yet).
func addRegistryGCCommands(root *cobra.Command) {
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
	group.AddCommand(newRegistryGCCommand())
}

func newRegistryGCCommand() *cobra.Command {
	var (
		root         string
		configFile   string
		dryRun       bool
		untagged     bool
		quiet        bool
		grace        time.Duration
		uploadExpiry time.Duration
	)
	cmd := &cobra.Command{
		Use:     "gc [OPTIONS]",
		Aliases: []string{"garbage-collect"},
		Short:   "Delete the blobs and manifests of a registry that nothing uses",
		Long: `Delete what no tag of a registry's storage needs any more: blobs no
manifest names, repositories' links to them, untagged manifests (with
--delete-untagged), repositories left empty and idle upload sessions.

The registry may keep serving, from 'berth registry serve' on the same
storage: pushes running meanwhile lose nothing. Content younger than
--grace is kept, as it may belong to a push in progress; the grace period
must be longer than the longest push.

Prints one line per blob, manifest and repository deleted (--quiet: only
the summary); with --dry-run, what would be deleted, and deletes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			if configFile != "" {
				cfg, err := server.LoadConfig(configFile)
				if err != nil {
					return fmt.Errorf("berth registry gc: %w", err)
				}
				if !flags.Changed("root") {
					root = cfg.Root
				}
				if !flags.Changed("upload-expiry") {
					uploadExpiry = cfg.Limits.UploadExpiry
				}
			}
			if root == "" {
				return usageErr("berth registry gc: --root DIR (the registry's storage directory) or --config FILE is required")
			}
			if grace < 0 {
				return usageErr("berth registry gc: --grace %s is negative: give a duration such as 1h, or 0 when nothing is being pushed", grace)
			}
			if uploadExpiry < 0 {
				return usageErr("berth registry gc: --upload-expiry %s is negative: give a duration such as 24h, or 0 to leave upload sessions alone", uploadExpiry)
			}
			if err := checkRegistryRoot(root); err != nil {
				return err
			}
			store, err := server.Open(root)
			if err != nil {
				return fmt.Errorf("berth registry gc: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			opts := []server.GCOption{
				server.WithDryRun(dryRun),
				server.WithUntaggedDeletion(untagged),
				server.WithGracePeriod(grace),
				server.WithUploadPurge(uploadExpiry),
			}
			if !quiet {
				opts = append(opts, server.WithGCReport(func(it server.GCItem) { printGCItem(out, it, dryRun) }))
			}
			rep, err := store.CollectGarbage(ctx, opts...)
			printGCSummary(out, rep, grace)
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("berth registry gc: interrupted; what was deleted is counted above: run it again to finish")
			}
			if err != nil {
				return fmt.Errorf("berth registry gc: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	// Shadows the global --root (the engine's): the registry's storage is its own.
	f.StringVar(&root, "root", "", "storage directory of the registry")
	f.StringVar(&configFile, "config", "", "the registry's configuration file (YAML), for its root and upload expiry")
	f.BoolVarP(&dryRun, "dry-run", "d", false, "print what would be deleted, delete nothing")
	f.BoolVarP(&untagged, "delete-untagged", "m", false, "delete manifests that no tag names (directly, through an index, or as a referrer of one)")
	f.BoolVarP(&quiet, "quiet", "q", false, "print the summary only")
	f.DurationVar(&grace, "grace", server.DefaultGracePeriod, "keep unreferenced content younger than this (it may belong to a push in progress)")
	f.DurationVar(&uploadExpiry, "upload-expiry", 24*time.Hour, "delete upload sessions idle for this long (0: leave them)")
	return cmd
}

// checkRegistryRoot refuses a directory that is not a registry's storage,
// rather than create an empty one there and report nothing to delete.
func checkRegistryRoot(root string) error {
	for _, sub := range []string{"blobs", "repositories"} {
		if fi, err := os.Stat(filepath.Join(root, sub)); err == nil && fi.IsDir() {
			return nil
		}
	}
	return usageErr("berth registry gc: %s is not a registry's storage directory (it has no blobs/ or repositories/): check --root", root)
}

// printGCItem prints what distribution's garbage-collect prints, for
// blobs, manifests and repositories; links and upload sessions are only
// counted.
func printGCItem(w io.Writer, it server.GCItem, dryRun bool) {
	verb := "deleted"
	if dryRun {
		verb = "eligible for deletion"
	}
	switch it.Kind {
	case server.GCBlob:
		fmt.Fprintf(w, "blob %s: %s (%s)\n", verb, it.Digest, humanSize(it.Size))
	case server.GCManifest:
		fmt.Fprintf(w, "manifest %s: %s@%s\n", verb, it.Repository, it.Digest)
	case server.GCRepository:
		fmt.Fprintf(w, "repository %s: %s\n", verb, it.Repository)
	}
}

func printGCSummary(w io.Writer, r server.GCReport, grace time.Duration) {
	verb := "deleted"
	if r.DryRun {
		verb = "eligible for deletion"
	}
	fmt.Fprintf(w, "%s marked, %s and %s %s\n", gcCount(r.Blobs, "blob", "blobs"),
		gcCount(r.DeletedBlobs, "blob", "blobs"), gcCount(r.DeletedManifests, "manifest", "manifests"), verb)
	var also []string
	if r.DeletedLinks > 0 {
		also = append(also, gcCount(r.DeletedLinks, "layer link", "layer links"))
	}
	if r.DeletedRepositories > 0 {
		also = append(also, gcCount(r.DeletedRepositories, "repository", "repositories"))
	}
	if r.DeletedUploads > 0 {
		also = append(also, gcCount(r.DeletedUploads, "upload session", "upload sessions")+" ("+humanSize(r.UploadBytes)+")")
	}
	if len(also) > 0 {
		fmt.Fprintf(w, "also %s: %s\n", verb, strings.Join(also, ", "))
	}
	if r.YoungBlobs > 0 {
		fmt.Fprintf(w, "kept %s (%s) that nothing names yet: younger than the grace period (%s), they may belong to a push in progress\n",
			gcCount(r.YoungBlobs, "blob", "blobs"), humanSize(r.YoungBytes), grace)
	}
	if r.InUse > 0 {
		fmt.Fprintf(w, "kept %s used again while the collection ran\n", gcCount(r.InUse, "file", "files"))
	}
	if r.DryRun {
		fmt.Fprintf(w, "Reclaimable space: %s (dry run: nothing was deleted)\n", humanSize(r.Freed()))
		return
	}
	fmt.Fprintf(w, "Total reclaimed space: %s\n", humanSize(r.Freed()))
}

func gcCount(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
