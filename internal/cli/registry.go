package cli

import (
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/registry"
)

// registryHosts reads the registry settings (insecure registries, Docker
// Hub mirrors, certificate directories) from berth's config file:
// $BERTH_CONFIG, or /etc/berth/config.json.
func registryHosts() (*registry.Hosts, error) {
	return registry.LoadHosts(envOr("BERTH_CONFIG", registry.DefaultConfigPath))
}

func addRegistryCommands(root *cobra.Command) {
	_ = root
}
