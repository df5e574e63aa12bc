package cli

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/volume"
)

// volumeInUse returns the IDs of the containers under root that use the
// volume name. None until containers exist; the container store replaces it.
var volumeInUse = func(root, name string) []string { return nil }

func volumeStore() (*volume.Store, error) {
	if err := os.MkdirAll(engineRoot, 0o711); err != nil {
		return nil, fmt.Errorf("create --root %s: %w", engineRoot, err)
	}
	return volume.New(engineRoot)
}

// withVolumes adapts a verb that needs the volume store to cobra's RunE.
func withVolumes(f func(cmd *cobra.Command, s *volume.Store, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := volumeStore()
		if err != nil {
			return err
		}
		return f(cmd, s, args)
	}
}

// inUse binds volumeInUse to the current --root.
func inUse() volume.InUse {
	root := engineRoot
	return func(name string) []string { return volumeInUse(root, name) }
}

func addVolumeCommands(root *cobra.Command) {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	cmd.AddCommand(newVolumeCreateCommand(), newVolumeLsCommand(), newVolumeInspectCommand(),
		newVolumeRmCommand(), newVolumePruneCommand())
	root.AddCommand(cmd)
}

// kvMap reads KEY=VALUE flags; a bare KEY has the empty value, as in Docker.
func kvMap(list []string) map[string]string {
	if len(list) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func newVolumeCreateCommand() *cobra.Command {
	var (
		driver, name string
		labels, opts []string
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  cobra.MaximumNArgs(1),
		RunE: withVolumes(func(cmd *cobra.Command, s *volume.Store, args []string) error {
			if len(args) == 1 {
				if name != "" && name != args[0] {
					return usageErr("conflicting options: either specify --name or provide positional arg, not both")
				}
				name = args[0]
			}
			if err := volume.CheckDriver(driver); err != nil {
				return err
			}
			v, err := s.Create(name, kvMap(labels), kvMap(opts))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v.Name)
			return nil
		}),
	}
	cmd.Flags().StringVarP(&driver, "driver", "d", volume.DriverLocal, "specify volume driver name (only local)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "set metadata for a volume (key=value)")
	cmd.Flags().StringArrayVarP(&opts, "opt", "o", nil, "set driver specific options (none supported yet)")
	cmd.Flags().StringVar(&name, "name", "", "specify volume name")
	cmd.Flags().MarkHidden("name")
	return cmd
}

// volumeRow is one line of `volume ls`, with Docker's --format field names.
type volumeRow struct {
	Driver, Name, Scope, Mountpoint, Labels, Links, Size string

	labels map[string]string
}

// Label is {{.Label "key"}}, as in Docker's formats.
func (r volumeRow) Label(key string) string { return r.labels[key] }

func joinLabels(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func newVolumeLsCommand() *cobra.Command {
	var (
		quiet   bool
		filters []string
		format  string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: withVolumes(func(cmd *cobra.Command, s *volume.Store, args []string) error {
			f, err := volume.ParseFilter(filters, "dangling", "name", "driver", "label")
			if err != nil {
				return err
			}
			vols, err := s.List()
			if err != nil {
				return err
			}
			used := inUse()
			var rows []volumeRow
			for _, v := range vols {
				if f.Match(v, used) {
					rows = append(rows, volumeRow{Driver: v.Driver, Name: v.Name, Scope: v.Scope, Mountpoint: v.Mountpoint,
						Labels: joinLabels(v.Labels), Links: "N/A", Size: "N/A", labels: v.Labels})
				}
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, r := range rows {
					fmt.Fprintln(out, r.Name)
				}
				return nil
			}
			switch {
			case format == "" || format == "table":
				format = "table {{.Driver}}\t{{.Name}}"
			case !strings.HasPrefix(format, "table "):
				return formatRows(cmd, format, rows)
			}
			return volumeTable(cmd, strings.TrimPrefix(format, "table "), rows)
		}),
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only display volume names")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "filter output: dangling=true|false, name=NAME, driver=local, label=key[=value]")
	cmd.Flags().StringVar(&format, "format", "", "format with a Go template, or 'json'")
	return cmd
}

// volumeTable prints rows through tmpl as Docker's "table ..." formats
// do: a header line (the template run on the column names), then the rows,
// in columns at least 10 wide and 3 apart.
func volumeTable(cmd *cobra.Command, tmpl string, rows []volumeRow) error {
	t, err := template.New("format").Parse(tmpl)
	if err != nil {
		return usageErr("--format: %v", err)
	}
	header := volumeRow{Driver: "DRIVER", Name: "VOLUME NAME", Scope: "SCOPE", Mountpoint: "MOUNTPOINT",
		Labels: "LABELS", Links: "LINKS", Size: "SIZE"}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 10, 1, 3, ' ', 0)
	for _, r := range append([]volumeRow{header}, rows...) {
		if err := t.Execute(w, r); err != nil {
			return usageErr("--format: %v", err)
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

func newVolumeInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  cobra.MinimumNArgs(1),
		RunE: withVolumes(func(cmd *cobra.Command, s *volume.Store, args []string) error {
			return inspectEach(cmd, format, args, func(name string) (any, error) { return s.Get(name) })
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format with a Go template")
	return cmd
}

func newVolumeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    cobra.MinimumNArgs(1),
		RunE: withVolumes(func(cmd *cobra.Command, s *volume.Store, args []string) error {
			failed := false
			for _, name := range args {
				if err := s.Remove(name, force, inUse()); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Error response from berth: %s\n", userMessage(err))
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			if failed {
				return exitError{1} // as Docker, and as rmi
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "no error for volumes that do not exist (volumes in use are never removed)")
	return cmd
}

func newVolumePruneCommand() *cobra.Command {
	var (
		all, force bool
		filters    []string
	)
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused local volumes",
		Args:  cobra.NoArgs,
		RunE: withVolumes(func(cmd *cobra.Command, s *volume.Store, args []string) error {
			// Docker's CLI sends -a as the filter all=true; accept both.
			var rest []string
			for _, kv := range filters {
				switch kv {
				case "all=true", "all=1":
					all = true
				case "all=false", "all=0":
				default:
					rest = append(rest, kv)
				}
			}
			f, err := volume.ParseFilter(rest, "label", "label!")
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !force {
				what := "anonymous local volumes"
				if all {
					what = "all local volumes"
				}
				fmt.Fprintf(out, "WARNING! This will remove %s not used by at least one container.\nAre you sure you want to continue? [y/N] ", what)
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return nil
				}
			}
			rep, err := s.Prune(inUse(), all, f)
			if err != nil {
				return err
			}
			if len(rep.Names) > 0 {
				fmt.Fprintln(out, "Deleted Volumes:")
				for _, n := range rep.Names {
					fmt.Fprintln(out, n)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "Total reclaimed space: %s\n", humanSize(rep.SpaceReclaimed))
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused volumes, not just anonymous ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values (label=key[=value], label!=key[=value], all=true)")
	return cmd
}
