package cli

import (
	"context"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/network/dns"
)

// addNetworkDNSCommand adds `berth network-dns`, the per-root DNS server
// for user-defined networks (package network/dns). Hidden: dns.Ensure
// starts it, detached, and it exits by itself when the last container on
// a user network goes.
func addNetworkDNSCommand(root *cobra.Command) {
	var readyFD int
	cmd := &cobra.Command{
		Use:    "network-dns",
		Short:  "Serve container names on user-defined networks (started by berth itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rr := runRoot
			if rr == "" {
				rr = container.DefaultRunRoot(engineRoot)
			}
			o := dns.RunOptions{Root: engineRoot, RunRoot: rr}
			if readyFD > 0 {
				o.Ready = os.NewFile(uintptr(readyFD), "ready")
			}
			ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
			defer stop()
			return dns.Run(ctx, o)
		},
	}
	cmd.Flags().IntVar(&readyFD, "ready-fd", 0, "descriptor to report readiness on (set by the starting berth)")
	root.AddCommand(cmd)
}
