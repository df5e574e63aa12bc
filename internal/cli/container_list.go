package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/logs"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// psRow is one line of ps, with Docker's --format field names.
type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Size, Names, Labels, Mounts, Networks string
}

// humanDuration is Docker's units.HumanDuration, for "Up 5 seconds".
func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	switch m := int(d.Minutes()); {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	switch h := int(d.Hours() + 0.5); {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	default:
		return fmt.Sprintf("%d years", int(d.Hours())/24/365)
	}
}

// statusText is ps's STATUS column.
func statusText(c *container.Container) string {
	s := c.State
	switch s.Status {
	case container.StatusRunning:
		return "Up " + humanDuration(time.Since(s.StartedAt))
	case container.StatusPaused:
		return "Up " + humanDuration(time.Since(s.StartedAt)) + " (Paused)"
	case container.StatusRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", s.ExitCode, humanDuration(time.Since(s.FinishedAt)))
	case container.StatusRemoving:
		return "Removal In Progress"
	case container.StatusDead:
		return "Dead"
	case container.StatusExited:
		return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, humanDuration(time.Since(s.FinishedAt)))
	}
	return "Created"
}

func commandText(c *container.Container, noTrunc bool) string {
	cmd := strings.Join(append([]string{c.Path}, c.Args...), " ")
	if !noTrunc && len(cmd) > 20 {
		cmd = cmd[:19] + "…"
	}
	return strconv.Quote(cmd)
}

type psFilter struct {
	status, names, labels, ancestors, ids, exited []string
}

func parsePsFilters(fs []string) (psFilter, error) {
	var f psFilter
	for _, kv := range fs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, usageErr("bad format of filter (expected name=value): %s", kv)
		}
		switch k {
		case "status":
			switch v {
			case "created", "restarting", "running", "removing", "paused", "exited", "dead":
			default:
				return f, usageErr("invalid filter 'status=%s': use created, restarting, running, removing, paused, exited or dead", v)
			}
			f.status = append(f.status, v)
		case "name":
			if _, err := regexp.Compile(v); err != nil {
				return f, usageErr("invalid filter 'name=%s': %v", v, err)
			}
			f.names = append(f.names, v)
		case "label":
			f.labels = append(f.labels, v)
		case "ancestor":
			f.ancestors = append(f.ancestors, v)
		case "id":
			f.ids = append(f.ids, v)
		case "exited":
			f.exited = append(f.exited, v)
		default:
			return f, usageErr("invalid filter '%s': berth's ps filters by status, name, label, ancestor, id and exited", k)
		}
	}
	return f, nil
}

func anyOf(vals []string, match func(string) bool) bool {
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		if match(v) {
			return true
		}
	}
	return false
}

func (f psFilter) keep(c *container.Container, imgs *image.Service) bool {
	return anyOf(f.status, func(v string) bool { return string(c.State.Status) == v }) &&
		anyOf(f.names, func(v string) bool { ok, _ := regexp.MatchString(v, c.Name); return ok }) &&
		anyOf(f.ids, func(v string) bool { return strings.HasPrefix(c.ID, v) }) &&
		anyOf(f.exited, func(v string) bool {
			return c.State.Status == container.StatusExited && strconv.Itoa(c.State.ExitCode) == v
		}) &&
		allOf(f.labels, func(v string) bool {
			k, val, hasVal := strings.Cut(v, "=")
			got, ok := c.Config.Labels[k]
			return ok && (!hasVal || got == val)
		}) &&
		anyOf(f.ancestors, func(v string) bool {
			if c.Config.Image == v || strings.HasPrefix(strings.TrimPrefix(c.Image, "sha256:"), strings.TrimPrefix(v, "sha256:")) {
				return true
			}
			img, err := imgs.Get(v)
			return err == nil && img.ID.String() == c.Image
		})
}

func allOf(vals []string, match func(string) bool) bool {
	for _, v := range vals {
		if !match(v) {
			return false
		}
	}
	return true
}

func newPsContainersCommand(use string) *cobra.Command {
	var all, quiet, noTrunc, size, latest bool
	var last int
	var filters []string
	var format string
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			f, err := parsePsFilters(filters)
			if err != nil {
				return err
			}
			cs, err := e.List()
			if err != nil {
				return err
			}
			if latest {
				last = 1
			}
			if last > 0 || len(f.status) > 0 {
				all = true
			}
			var rows []psRow
			for _, c := range cs {
				c = e.RefreshRecord(c)
				if !all && c.State.Status != container.StatusRunning && c.State.Status != container.StatusPaused &&
					c.State.Status != container.StatusRestarting {
					continue
				}
				if !f.keep(c, e.Images) {
					continue
				}
				if last > 0 && len(rows) >= last {
					break
				}
				rows = append(rows, makePsRow(e, c, noTrunc, size))
			}
			if quiet {
				for _, r := range rows {
					fmt.Fprintln(cmd.OutOrStdout(), r.ID)
				}
				return nil
			}
			if format != "" && format != "table" {
				return formatRows(cmd, format, rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			head := "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES"
			if size {
				head += "\tSIZE"
			}
			fmt.Fprintln(tw, head)
			for _, r := range rows {
				line := strings.Join([]string{r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names}, "\t")
				if size {
					line += "\t" + r.Size
				}
				fmt.Fprintln(tw, line)
			}
			return tw.Flush()
		}),
	}
	fs := cmd.Flags()
	fs.BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "only display container IDs")
	fs.BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	fs.BoolVarP(&size, "size", "s", false, "display total file sizes")
	fs.BoolVarP(&latest, "latest", "l", false, "show the latest created container (includes all states)")
	fs.IntVarP(&last, "last", "n", -1, "show n last created containers (includes all states)")
	fs.StringArrayVarP(&filters, "filter", "f", nil, "filter output: status=, name=, label=, ancestor=, id=, exited=")
	fs.StringVar(&format, "format", "", "format output using a Go template, or 'json'")
	return cmd
}

func makePsRow(e *container.Engine, c *container.Container, noTrunc, size bool) psRow {
	r := psRow{
		ID: shortID(c.ID, noTrunc), Image: c.Config.Image, Command: commandText(c, noTrunc),
		CreatedAt:  c.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
		RunningFor: humanDuration(time.Since(c.Created)) + " ago",
		State:      string(c.State.Status), Status: statusText(c), Names: c.Name,
		Networks: networkNames(c),
	}
	if c.State.Running {
		r.Ports = displayablePorts(containerPorts(c))
	}
	var labels, mounts []string
	for k, v := range c.Config.Labels {
		labels = append(labels, k+"="+v)
	}
	for _, m := range c.Mounts {
		n := m.Name
		if n == "" {
			n = m.Source
		}
		mounts = append(mounts, n)
	}
	r.Labels, r.Mounts = strings.Join(labels, ","), strings.Join(mounts, ",")
	if size {
		rw, _ := e.SizeRw(c.ID)
		r.Size = humanSize(rw) + " (virtual " + humanSize(rw+e.ImageSize(c)) + ")"
	}
	return r
}

// newInspectCommand is docker inspect: containers first, then images.
func newInspectCommand() *cobra.Command { return inspectCommand("") }

// newInspectContainerCommand is docker container inspect.
func newInspectContainerCommand() *cobra.Command { return inspectCommand("container") }

// inspectCommand looks objects up as containers and, unless only is
// "container", as images.
func inspectCommand(only string) *cobra.Command {
	var format, typ string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on containers or images",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			if only != "" {
				typ = only
			}
			var out []any
			var failed bool
			for _, ref := range args {
				if typ == "" || typ == "container" {
					if c, err := e.Refresh(ref); err == nil {
						out = append(out, e.Inspect(c, size))
						continue
					} else if !errors.Is(err, errdefs.ErrNotFound) || typ == "container" {
						logError(err)
						failed = true
						continue
					}
				}
				if typ == "" || typ == "image" {
					if img, err := e.Images.Inspect(ref); err == nil {
						out = append(out, img)
						continue
					}
				}
				logError(fmt.Errorf("no such object: %s", ref))
				failed = true
			}
			if err := printInspect(cmd, format, out); err != nil {
				return err
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		}),
	}
	if only != "" {
		cmd.Short = "Display detailed information on one or more containers"
	} else {
		cmd.Flags().StringVar(&typ, "type", "", "only inspect objects of this type: container or image")
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format the output using a Go template")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "display total file sizes for containers")
	return cmd
}

func printInspect(cmd *cobra.Command, format string, out []any) error {
	if format == "" {
		if out == nil {
			out = []any{}
		}
		return printJSON(cmd.OutOrStdout(), out)
	}
	for _, v := range out {
		if err := formatOut(cmd, format, asJSONValue(v)); err != nil {
			return err
		}
	}
	return nil
}

func newLogsCommand() *cobra.Command {
	var follow, timestamps, details bool
	var tail, since, until string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1, "a container"),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			c, err := e.Refresh(args[0])
			if err != nil {
				return err
			}
			if c.LogPath == "" {
				return fmt.Errorf("configured logging driver does not support reading (container %s logs with --log-driver %s): %w",
					c.Name, c.HostConfig.LogConfig.Type, errdefs.ErrFailedPrecondition)
			}
			o := logs.ReadOpts{Tail: -1}
			if tail != "all" && tail != "" {
				n, err := strconv.Atoi(tail)
				if err != nil {
					return usageErr("invalid --tail %q: give a number of lines or all", tail)
				}
				o.Tail = n
			}
			now := time.Now()
			if since != "" {
				if o.Since, err = logs.ParseTime(since, now); err != nil {
					return usageErr("invalid --since: %v", err)
				}
			}
			if until != "" {
				if o.Until, err = logs.ParseTime(until, now); err != nil {
					return usageErr("invalid --until: %v", err)
				}
			}
			ctx, cancel := interruptible()
			defer cancel()
			if follow && c.State.Running {
				o.Follow = true
				stop := make(chan struct{})
				o.Stop = stop
				go func() {
					e.Wait(c.ID)
					close(stop)
				}()
			}
			f := &logs.Formatter{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Timestamps: timestamps}
			err = logs.Read(ctx, filepath.Dir(c.LogPath), c.ID, o, f.Write)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, errdefs.ErrNotFound) {
				return nil // never started: no log yet
			}
			return err
		}),
	}
	fs := cmd.Flags()
	fs.BoolVarP(&follow, "follow", "f", false, "follow log output")
	fs.BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	fs.BoolVar(&details, "details", false, "show extra details provided to logs (none with json-file)")
	fs.StringVarP(&tail, "tail", "n", "all", "number of lines to show from the end of the logs")
	fs.StringVar(&since, "since", "", "show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	fs.StringVar(&until, "until", "", "show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	return cmd
}

func newContainerPruneCommand() *cobra.Command {
	var force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all stopped containers",
		Args:  cobra.NoArgs,
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			if !force && !confirm(cmd, "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ") {
				return nil
			}
			// Docker's prune keys (until, label, label!); ps's others too.
			var pruneArgs, psArgs []string
			for _, kv := range filters {
				if k, _, _ := strings.Cut(kv, "="); k == "until" || k == "label!" {
					pruneArgs = append(pruneArgs, kv)
				} else {
					psArgs = append(psArgs, kv)
				}
			}
			f, err := parsePsFilters(psArgs)
			if err != nil {
				return err
			}
			pf, err := parsePruneFilter(pruneArgs, "until", "label!")
			if err != nil {
				return err
			}
			deleted, reclaimed, err := pruneContainers(e, func(c *container.Container) bool {
				return f.keep(c, e.Images) && pf.match(c.Created, c.Config.Labels)
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			printList(w, "Deleted Containers:", deleted)
			fmt.Fprintf(w, "Total reclaimed space: %s\n", humanSize(reclaimed))
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values (until=24h, label=key[=value], label!=key[=value])")
	return cmd
}

// confirm asks on stderr and reads y/N from stdin.
// pruneContainers removes the stopped containers that match says to and
// returns their IDs and the space their writable layers held. One that
// fails to go is reported and skipped.
func pruneContainers(e *container.Engine, match func(*container.Container) bool) ([]string, int64, error) {
	cs, err := e.List()
	if err != nil {
		return nil, 0, err
	}
	var deleted []string
	var reclaimed int64
	for _, c := range cs {
		c = e.RefreshRecord(c)
		if c.State.Status != container.StatusExited && c.State.Status != container.StatusCreated &&
			c.State.Status != container.StatusDead || !match(c) {
			continue
		}
		rw, _ := e.SizeRw(c.ID)
		if err := e.Remove(c.ID, container.RemoveOpts{}); err != nil {
			logError(err)
			continue
		}
		deleted = append(deleted, c.ID)
		reclaimed += rw
	}
	return deleted, reclaimed, nil
}

// printList prints a prune's section, Docker's way: a title, one line
// per item, a blank line; nothing when there are no items.
func printList(w io.Writer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintln(w, title)
	for _, it := range items {
		fmt.Fprintln(w, it)
	}
	fmt.Fprintln(w)
}

func confirm(cmd *cobra.Command, prompt string) bool {
	fmt.Fprint(cmd.OutOrStdout(), prompt)
	var answer string
	fmt.Fscanln(cmd.InOrStdin(), &answer)
	return strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes")
}
