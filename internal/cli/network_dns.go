package cli

import (
	"context"
	"os"
	"os/signal"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/network/dns"
)

// addNetworkDNSCommand adds `berth network-dns`, the per-root DNS server
// for user-defined networks (package network/dns). Hidden: dns.Ensure
// starts it, detached, and it exits by itself a while after the last
// container on a user network goes, at once when no user network is
// left (network rm and prune tell it: notifyDNS).
func addNetworkDNSCommand(root *cobra.Command) {
	var (
		readyFD int
		linger  time.Duration
	)
	cmd := &cobra.Command{
		Use:    "network-dns",
		Short:  "Serve container names on user-defined networks (started by berth itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := dns.RunOptions{Root: engineRoot, RunRoot: effectiveRunRoot(), Linger: linger}
			if readyFD > 0 {
				o.Ready = os.NewFile(uintptr(readyFD), "ready")
			}
			ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
			defer stop()
			return dns.Run(ctx, o)
		},
	}
	cmd.Flags().IntVar(&readyFD, "ready-fd", 0, "descriptor to report readiness on (set by the starting berth)")
	cmd.Flags().DurationVar(&linger, "linger", dns.DefaultLinger, "how long to stay with no container left while user networks exist")
	root.AddCommand(cmd)
}

// notifyDNS tells the DNS server that networks went (network rm, prune):
// with no user network left it exits now instead of lingering. Without a
// server it does nothing.
func notifyDNS() error { return dns.Notify(effectiveRunRoot()) }
