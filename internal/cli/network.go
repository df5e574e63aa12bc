package cli

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/network"
)

// newNetworkManager opens the networks of an engine root, with the
// kernel driver (bridges and nftables rules); tests replace it to keep
// the host's routes out of their subnets and the kernel out of their way.
var newNetworkManager = func(root string) (*network.Manager, error) {
	return network.New(root, network.WithDefaultBridge(defaultBridgeName(root)), network.WithDriver(network.NewKernel(root)))
}

// defaultBridgeName is the Linux bridge of root's default network:
// berth0 for the default root, and for any other root (every test has
// its own) a name of its own, so that two engine roots on one host never
// take over each other's bridge.
func defaultBridgeName(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil || abs == defaultEngineRoot {
		return network.DefaultBridgeName
	}
	sum := sha256.Sum256([]byte(abs))
	return "berth" + hex.EncodeToString(sum[:4]) // 13 bytes: within IFNAMSIZ
}

const defaultEngineRoot = "/var/lib/berth"

// withNetworks adapts a verb that needs the network manager to cobra's
// RunE. The predefined networks are made first, so a fresh engine lists
// and finds bridge, host and none, as Docker does.
func withNetworks(f func(cmd *cobra.Command, m *network.Manager, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := os.MkdirAll(engineRoot, 0o711); err != nil {
			return fmt.Errorf("create --root %s: %w", engineRoot, err)
		}
		m, err := newNetworkManager(engineRoot)
		if err != nil {
			return err
		}
		ctx, stop := interruptible()
		defer stop()
		if _, err := m.EnsureDefault(ctx); err != nil {
			return err
		}
		return f(cmd, m, args)
	}
}

func addNetworkCommands(root *cobra.Command) {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks"}
	cmd.AddCommand(newNetworkCreateCommand(), newNetworkLsCommand(), newNetworkInspectCommand(),
		newNetworkRmCommand(), newNetworkPruneCommand(), newNetworkConnectCommand(), newNetworkDisconnectCommand())
	root.AddCommand(cmd)
}

func newNetworkCreateCommand() *cobra.Command {
	var (
		o                         network.CreateOptions
		subnets, gateways, ranges []string
		labels, opts              []string
		ipamDriver, scope         string
		ipv6                      bool
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1, "a network name"),
		RunE: withNetworks(func(cmd *cobra.Command, m *network.Manager, args []string) error {
			switch {
			case ipv6:
				return fmt.Errorf("IPv6 networks are not supported yet: %w", errdefs.ErrNotImplemented)
			case ipamDriver != "" && ipamDriver != "default":
				return fmt.Errorf("IPAM driver %q not supported: berth has only the default IPAM driver: %w", ipamDriver, errdefs.ErrNotImplemented)
			case scope != "" && scope != network.ScopeLocal:
				return usageErr("scope %q not supported: berth networks are local", scope)
			case len(subnets) > 1:
				return fmt.Errorf("berth networks have one IPv4 subnet, got %d (--subnet %s): %w", len(subnets), strings.Join(subnets, ", --subnet "), errdefs.ErrNotImplemented)
			case len(gateways) > 1:
				return usageErr("cannot configure multiple gateways (%s) for the same subnet", strings.Join(gateways, ", "))
			case len(ranges) > 1:
				return usageErr("cannot configure multiple ip-ranges (%s) for the same subnet", strings.Join(ranges, ", "))
			}
			o.Name = args[0]
			o.Subnet, o.Gateway, o.IPRange = first(subnets), first(gateways), first(ranges)
			o.Labels, o.Options = kvMap(labels), kvMap(opts)
			ctx, stop := interruptible()
			defer stop()
			n, err := m.Create(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), n.ID)
			return nil
		}),
	}
	fs := cmd.Flags()
	fs.StringVarP(&o.Driver, "driver", "d", network.DriverBridge, "driver to manage the network (only bridge)")
	fs.StringArrayVar(&subnets, "subnet", nil, "subnet in CIDR format (default: the first free one of 172.17-31.0.0/16, 192.168.0-240.0/20)")
	fs.StringArrayVar(&gateways, "gateway", nil, "IPv4 gateway for the subnet (default: its first address)")
	fs.StringArrayVar(&ranges, "ip-range", nil, "allocate container addresses from a sub-range (CIDR)")
	fs.BoolVar(&o.Internal, "internal", false, "restrict external access to the network (no NAT, no route out)")
	fs.BoolVar(&o.Attachable, "attachable", false, "enable manual container attachment (every local network allows it)")
	fs.StringArrayVar(&labels, "label", nil, "set metadata on a network (key=value)")
	fs.StringArrayVarP(&opts, "opt", "o", nil, "set driver specific options (com.docker.network.bridge.name=NAME, ...)")
	fs.StringVar(&ipamDriver, "ipam-driver", "default", "IP address management driver (only default)")
	fs.StringVar(&scope, "scope", "", "control the network's scope (only local)")
	fs.BoolVar(&ipv6, "ipv6", false, "enable IPv6 networking (not supported yet)")
	return cmd
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// networkRow is one line of `network ls`, with Docker's --format field
// names; declared in alphabetical order, as Docker's `--format json`
// prints them.
type networkRow struct {
	CreatedAt string
	Driver    string
	ID        string
	IPv6      string
	Internal  string
	Labels    string
	Name      string
	Scope     string

	labels map[string]string
	header bool
}

// Label is {{.Label "key"}}, as in Docker's formats.
func (r networkRow) Label(key string) string {
	if r.header {
		return "LABEL"
	}
	return r.labels[key]
}

var networkHeader = networkRow{CreatedAt: "CREATED AT", Driver: "DRIVER", ID: "NETWORK ID", IPv6: "IPV6", Internal: "INTERNAL",
	Labels: "LABELS", Name: "NAME", Scope: "SCOPE", header: true}

const defaultNetworkFormat = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"

func newNetworkLsCommand() *cobra.Command {
	var (
		quiet, noTrunc bool
		filters        []string
		format         string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: withNetworks(func(cmd *cobra.Command, m *network.Manager, args []string) error {
			f, err := network.ParseFilter(filters, "dangling", "driver", "id", "label", "name", "scope", "type")
			if err != nil {
				return err
			}
			nets, err := m.List()
			if err != nil {
				return err
			}
			used, err := m.AllEndpoints()
			if err != nil {
				return err
			}
			var rows []networkRow
			for _, n := range nets {
				if !f.Match(n, len(used[n.ID])) {
					continue
				}
				id := n.ID
				if !noTrunc {
					id = n.ShortID()
				}
				rows = append(rows, networkRow{
					CreatedAt: n.Created.Local().String(), Driver: n.Driver, ID: id, IPv6: "false",
					Internal: strconv.FormatBool(n.Internal), Labels: joinLabels(n.Labels), Name: n.Name, Scope: n.Scope,
					labels: n.Labels,
				})
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, r := range rows {
					fmt.Fprintln(out, r.ID)
				}
				return nil
			}
			return printRows(out, format, defaultNetworkFormat, networkHeader, rows)
		}),
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display network IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate the output")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter output: name=, id=, driver=, label=key[=value], scope=local, type=custom|builtin, dangling=true|false")
	cmd.Flags().StringVar(&format, "format", "", "format with a Go template: 'table', 'table TEMPLATE', 'json' or TEMPLATE")
	return cmd
}

// printRows prints list rows the way Docker's list verbs do: "" or
// "table" is the default table; "table TEMPLATE" a header (the template
// run on header) and the rows in columns at least 10 wide and 3 apart;
// "json" one JSON object per line; any other template, each row on its
// line, unaligned. \t and \n in the template are a tab and a newline.
func printRows[T any](w io.Writer, format, def string, header T, rows []T) error {
	switch format {
	case "", "table":
		format = def
	case "json":
		for _, r := range rows {
			data, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(data))
		}
		return nil
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	body, table := strings.CutPrefix(format, "table ")
	tmpl, err := template.New("format").Funcs(template.FuncMap{
		"json":  func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
		"join":  strings.Join,
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"split": strings.Split,
	}).Parse(strings.TrimSpace(body))
	if err != nil {
		return usageErr("--format: %v", err)
	}
	out := w
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		out = tw
		rows = append([]T{header}, rows...)
	}
	for _, r := range rows {
		if err := tmpl.Execute(out, r); err != nil {
			return usageErr("--format: %v", err)
		}
		fmt.Fprintln(out)
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func newNetworkInspectCommand() *cobra.Command {
	var (
		format  string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  cobra.MinimumNArgs(1),
		RunE: withNetworks(func(cmd *cobra.Command, m *network.Manager, args []string) error {
			return inspectEach(cmd, format, args, func(ref string) (any, error) { return m.Inspect(ref) })
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format with a Go template")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "verbose output for diagnostics (no more to show for local networks)")
	return cmd
}

func newNetworkRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    cobra.MinimumNArgs(1),
		RunE: withNetworks(func(cmd *cobra.Command, m *network.Manager, args []string) error {
			ctx, stop := interruptible()
			defer stop()
			failed := false
			for _, ref := range args {
				if err := m.Remove(ctx, ref); err != nil {
					if force && errdefs.IsNotFound(err) {
						continue // Docker prints nothing for these
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "Error response from berth: %s\n", userMessage(err))
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			if err := notifyDNS(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "berth: %v\n", err)
			}
			if failed {
				return exitError{1} // as Docker
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not error if the network does not exist")
	return cmd
}

func newNetworkPruneCommand() *cobra.Command {
	var (
		force   bool
		filters []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  cobra.NoArgs,
		RunE: withNetworks(func(cmd *cobra.Command, m *network.Manager, args []string) error {
			f, err := network.ParseFilter(filters, "until", "label", "label!")
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !force {
				fmt.Fprint(out, "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ")
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return nil
				}
			}
			ctx, stop := interruptible()
			defer stop()
			names, err := m.Prune(ctx, f)
			if nerr := notifyDNS(); err == nil {
				err = nerr
			}
			if len(names) > 0 {
				fmt.Fprintln(out, "Deleted Networks:")
				for _, n := range names {
					fmt.Fprintln(out, n)
				}
				fmt.Fprintln(out)
			}
			return err
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values (until=24h, label=key[=value], label!=key[=value])")
	return cmd
}

func newNetworkConnectCommand() *cobra.Command {
	var (
		o       container.NetworkOpts
		ip6     string
		links   []string
		linkIPs []string
		opts    []string
	)
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  exactArgs(2, "a network and a container"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case ip6 != "":
				return fmt.Errorf("IPv6 networks are not supported yet: %w", errdefs.ErrNotImplemented)
			case len(links) > 0:
				return fmt.Errorf("--link is not supported: containers on a user network find each other by name: %w", errdefs.ErrNotImplemented)
			case len(linkIPs) > 0 || len(opts) > 0:
				return fmt.Errorf("--link-local-ip and --driver-opt are not supported: %w", errdefs.ErrNotImplemented)
			}
			e, err := containerEngine()
			if err != nil {
				return err
			}
			return failed(e.ConnectNetwork(args[1], args[0], o))
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&o.Aliases, "alias", nil, "add network-scoped alias for the container")
	fs.StringVar(&o.IPv4Address, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	fs.StringVar(&ip6, "ip6", "", "IPv6 address (not supported yet)")
	fs.StringArrayVar(&links, "link", nil, "add link to another container (not supported)")
	fs.StringArrayVar(&linkIPs, "link-local-ip", nil, "add a link-local address for the container (not supported)")
	fs.StringArrayVar(&opts, "driver-opt", nil, "driver options for the network (not supported)")
	return cmd
}

func newNetworkDisconnectCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  exactArgs(2, "a network and a container"),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := containerEngine()
			if err != nil {
				return err
			}
			return failed(e.DisconnectNetwork(args[1], args[0], force))
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force the container to disconnect from a network")
	return cmd
}
