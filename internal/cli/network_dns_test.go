package cli

import (
	"testing"

	"github.com/spf13/cobra"
)

// network-dns is started by dns.Ensure with exactly these arguments;
// users never see it.
func TestNetworkDNSCommand(t *testing.T) {
	root := &cobra.Command{Use: "berth"}
	addNetworkDNSCommand(root)
	cmd, _, err := root.Find([]string{"network-dns", "--root", "/r", "--run-root", "/rr", "--ready-fd", "3"})
	if err != nil || cmd.Name() != "network-dns" {
		t.Fatalf("find network-dns: %v %v", cmd, err)
	}
	if !cmd.Hidden {
		t.Error("network-dns is listed in help")
	}
	if cmd.Flags().Lookup("ready-fd") == nil {
		t.Error("no --ready-fd flag")
	}
}
