package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/runtime"
)

// runtimeFlags are runc's global flags, accepted on `berth runtime`.
type runtimeFlags struct {
	root, log, logFormat, criu string
	debug, systemdCgroup       bool
	rootless                   string
}

func newRuntimeCommand() *cobra.Command {
	var g runtimeFlags
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "The OCI runtime, with runc's verbs and flags",
		Long: "berth runtime runs OCI bundles (config.json + rootfs) as runc does, so tools that\n" +
			"drive runc (conformance suites, containerd) can drive berth.",
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			runtimeMode = true
			if g.log != "" {
				f, err := os.OpenFile(g.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
				if err != nil {
					return fmt.Errorf("open --log %s: %w", g.log, err)
				}
				logFile = f
			}
			switch g.logFormat {
			case "text", "json":
				logFormat = g.logFormat
			default:
				return usageErr("--log-format %q: use text or json", g.logFormat)
			}
			if g.systemdCgroup {
				return usageErr("--systemd-cgroup: berth manages cgroups itself (cgroupfs); drop the flag")
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&g.root, "root", envOr("BERTH_RUNTIME_ROOT", runtime.DefaultRoot), "directory for container state")
	cmd.PersistentFlags().StringVar(&g.log, "log", "", "append errors to this file")
	cmd.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	cmd.PersistentFlags().BoolVar(&g.debug, "debug", false, "accepted for runc compatibility")
	cmd.PersistentFlags().BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "not supported: berth uses cgroupfs")
	cmd.PersistentFlags().StringVar(&g.criu, "criu", "", "accepted for runc compatibility (checkpointing is not supported)")
	cmd.PersistentFlags().StringVar(&g.rootless, "rootless", "auto", "accepted for runc compatibility")

	rt := func() (*runtime.Runtime, error) {
		r, err := runtime.New(g.root)
		if err != nil {
			return nil, err
		}
		r.Warn = logWarn
		return r, nil
	}
	cmd.AddCommand(
		newSpecCommand(),
		newCreateCommand(rt),
		newStartCommand(rt),
		newRunCommand(rt),
		newStateCommand(rt),
		newKillCommand(rt),
		newDeleteCommand(rt),
		newExecCommand(rt),
		newPsCommand(rt),
		newListCommand(rt),
		newPauseCommand(rt, true),
		newPauseCommand(rt, false),
		newFeaturesCommand(),
		newEventsCommand(rt),
	)
	return cmd
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type runtimeFn func() (*runtime.Runtime, error)

// with adapts a verb that needs the runtime to cobra's RunE.
func (rt runtimeFn) with(f func(cmd *cobra.Command, r *runtime.Runtime, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		r, err := rt()
		if err != nil {
			return err
		}
		return f(cmd, r, args)
	}
}

func addCreateFlags(cmd *cobra.Command, o *runtime.CreateOpts) {
	cmd.Flags().StringVarP(&o.Bundle, "bundle", "b", ".", "path to the bundle directory")
	cmd.Flags().StringVar(&o.ConsoleSocket, "console-socket", "", "unix socket that receives the terminal's master end")
	cmd.Flags().StringVar(&o.PidFile, "pid-file", "", "write the container's pid to this file")
	cmd.Flags().BoolVar(&o.NoPivot, "no-pivot", false, "use MS_MOVE and chroot instead of pivot_root")
	cmd.Flags().Bool("no-new-keyring", false, "accepted for runc compatibility")
	cmd.Flags().IntVar(&o.PreserveFds, "preserve-fds", 0, "pass this many extra file descriptors (from 3) to the process")
}

func newCreateCommand(rt runtimeFn) *cobra.Command {
	var o runtime.CreateOpts
	cmd := &cobra.Command{
		Use:   "create [flags] <container-id>",
		Short: "Create a container; its process waits for `start`",
		Args:  exactArgs(1, "a container id"),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			o.ID = args[0]
			return r.Create(o)
		}),
	}
	addCreateFlags(cmd, &o)
	return cmd
}

func newStartCommand(rt runtimeFn) *cobra.Command {
	return &cobra.Command{
		Use:   "start <container-id>",
		Short: "Start the process of a created container",
		Args:  exactArgs(1, "a container id"),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			return r.Start(args[0])
		}),
	}
}

func newRunCommand(rt runtimeFn) *cobra.Command {
	var o runtime.RunOpts
	cmd := &cobra.Command{
		Use:   "run [flags] <container-id>",
		Short: "Create and start a container, and wait for it unless --detach",
		Args:  exactArgs(1, "a container id"),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			o.ID = args[0]
			code, err := r.Run(o)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		}),
	}
	addCreateFlags(cmd, &o.CreateOpts)
	cmd.Flags().BoolVarP(&o.Detach, "detach", "d", false, "return once the process runs")
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "keep the container's state after it exits")
	cmd.Flags().Bool("no-subreaper", false, "accepted for runc compatibility")
	return cmd
}

func newStateCommand(rt runtimeFn) *cobra.Command {
	return &cobra.Command{
		Use:   "state <container-id>",
		Short: "Print a container's state as JSON",
		Args:  exactArgs(1, "a container id"),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			st, err := r.State(args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), st)
		}),
	}
}

func newKillCommand(rt runtimeFn) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill [--all] <container-id> [signal]",
		Short: "Send a signal (default SIGTERM) to a container's process",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErr("kill needs a container id and optionally a signal")
			}
			return nil
		},
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			sigName := "SIGTERM"
			if len(args) == 2 {
				sigName = args[1]
			}
			sig, err := runtime.ParseSignal(sigName)
			if err != nil {
				return err
			}
			return r.Kill(args[0], sig, all)
		}),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "signal every process in the container")
	return cmd
}

func newDeleteCommand(rt runtimeFn) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete [--force] <container-id>...",
		Short: "Delete stopped containers (--force: running ones too)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("delete needs at least one container id")
			}
			return nil
		},
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			var errs []error
			for _, id := range args {
				if err := r.Delete(id, force); err != nil {
					if force && strings.Contains(err.Error(), "does not exist") {
						continue // runc: delete --force of a missing container succeeds
					}
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")
	return cmd
}

func newExecCommand(rt runtimeFn) *cobra.Command {
	var (
		o         runtime.ExecOpts
		procPath  string
		cwd       string
		env, caps []string
		tty       bool
		userSpec  string
		addGids   []string
		noNewPriv bool
	)
	cmd := &cobra.Command{
		Use:   "exec [flags] <container-id> [command [args...]]",
		Short: "Run another process inside a running container",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageErr("exec needs a container id")
			}
			if procPath == "" && len(args) < 2 {
				return usageErr("exec needs a command, or --process with a process.json")
			}
			return nil
		},
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			o.ID = args[0]
			var p specs.Process
			if procPath != "" {
				data, err := os.ReadFile(procPath)
				if err != nil {
					return fmt.Errorf("--process: %w", err)
				}
				if err := json.Unmarshal(data, &p); err != nil {
					return usageErr("--process %s: malformed JSON: %v", procPath, err)
				}
			} else {
				st, err := r.ContainerSpec(o.ID)
				if err != nil {
					return err
				}
				// runc: an exec inherits the container's process settings
				// and overrides what the flags name.
				p = *st.Process
				p.Args = args[1:]
				p.Terminal = tty
				if cwd != "" {
					p.Cwd = cwd
				}
				p.Env = append(append([]string{}, p.Env...), env...)
				if userSpec != "" {
					u, err := parseUser(userSpec)
					if err != nil {
						return err
					}
					p.User.UID, p.User.GID = u.UID, u.GID
				}
				for _, g := range addGids {
					n, err := strconv.ParseUint(g, 10, 32)
					if err != nil {
						return usageErr("--additional-gids %q: not a number", g)
					}
					p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
				}
				if noNewPriv {
					p.NoNewPrivileges = true
				}
				if len(caps) > 0 && p.Capabilities != nil {
					c := *p.Capabilities
					c.Bounding = append(c.Bounding, caps...)
					c.Effective = append(c.Effective, caps...)
					c.Permitted = append(c.Permitted, caps...)
					p.Capabilities = &c
				}
			}
			o.Process = &p
			code, err := r.Exec(o)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		}),
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&procPath, "process", "p", "", "path to a process.json")
	cmd.Flags().StringVar(&o.ConsoleSocket, "console-socket", "", "unix socket that receives the terminal's master end")
	cmd.Flags().StringVar(&cwd, "cwd", "", "working directory in the container")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	cmd.Flags().StringVarP(&userSpec, "user", "u", "", "UID[:GID] to run as")
	cmd.Flags().StringArrayVarP(&addGids, "additional-gids", "g", nil, "additional group ids")
	cmd.Flags().StringArrayVarP(&caps, "cap", "c", nil, "add a capability")
	cmd.Flags().BoolVar(&noNewPriv, "no-new-privs", false, "set no_new_privs")
	cmd.Flags().BoolVarP(&o.Detach, "detach", "d", false, "do not wait for the process")
	cmd.Flags().StringVar(&o.PidFile, "pid-file", "", "write the process's pid to this file")
	cmd.Flags().IntVar(&o.PreserveFds, "preserve-fds", 0, "pass this many extra file descriptors (from 3)")
	cmd.Flags().String("process-label", "", "accepted for runc compatibility (SELinux is not supported)")
	cmd.Flags().String("apparmor", "", "accepted for runc compatibility")
	return cmd
}

func parseUser(s string) (specs.User, error) {
	var u specs.User
	uidStr, gidStr, hasGid := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(uidStr, 10, 32)
	if err != nil {
		return u, usageErr("--user %q: use UID[:GID] with numbers", s)
	}
	u.UID = uint32(uid)
	if hasGid {
		gid, err := strconv.ParseUint(gidStr, 10, 32)
		if err != nil {
			return u, usageErr("--user %q: use UID[:GID] with numbers", s)
		}
		u.GID = uint32(gid)
	}
	return u, nil
}

func newPsCommand(rt runtimeFn) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps [--format table|json] <container-id>",
		Short: "List the processes running in a container",
		Args:  cobra.MinimumNArgs(1),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			pids, err := r.Pids(args[0])
			if err != nil {
				return err
			}
			if pids == nil {
				pids = []int{}
			}
			switch format {
			case "json":
				return json.NewEncoder(cmd.OutOrStdout()).Encode(pids)
			case "table":
				return printProcTable(cmd.OutOrStdout(), pids)
			}
			return usageErr("--format %q: use table or json", format)
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return cmd
}

func newListCommand(rt runtimeFn) *cobra.Command {
	var (
		format string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			states, err := r.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, s := range states {
					fmt.Fprintln(out, s.ID)
				}
				return nil
			}
			switch format {
			case "json":
				if states == nil {
					states = []runtime.State{}
				}
				return json.NewEncoder(out).Encode(states)
			case "table":
				w := tabwriter.NewWriter(out, 12, 1, 3, ' ', 0)
				fmt.Fprintln(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
				for _, s := range states {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
				}
				return w.Flush()
			}
			return usageErr("--format %q: use table or json", format)
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only ids")
	return cmd
}

func newPauseCommand(rt runtimeFn, pause bool) *cobra.Command {
	use, short := "resume <container-id>", "Resume a paused container"
	if pause {
		use, short = "pause <container-id>", "Freeze every process of a container"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, "a container id"),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			if pause {
				return r.Pause(args[0])
			}
			return r.Resume(args[0])
		}),
	}
}

func newSpecCommand() *cobra.Command {
	var bundle string
	var rootless bool
	cmd := &cobra.Command{
		Use:   "spec",
		Short: "Write a default config.json into the bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("%s exists: remove it first", path)
			}
			spec := runtime.DefaultSpec()
			if rootless {
				runtime.ToRootless(spec)
			}
			data, err := json.MarshalIndent(spec, "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(path, append(data, '\n'), 0o666)
		},
	}
	cmd.Flags().StringVarP(&bundle, "bundle", "b", ".", "bundle directory")
	cmd.Flags().BoolVar(&rootless, "rootless", false, "a config for an unprivileged user (user namespace)")
	return cmd
}

func newFeaturesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "features",
		Short: "Print the features this runtime implements, as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return printJSON(cmd.OutOrStdout(), runtime.Features())
		},
	}
}

func newEventsCommand(rt runtimeFn) *cobra.Command {
	var stats bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "events [--stats] <container-id>",
		Short: "Print a container's resource usage as JSON (once with --stats, else every --interval)",
		Args:  exactArgs(1, "a container id"),
		RunE: rt.with(func(cmd *cobra.Command, r *runtime.Runtime, args []string) error {
			for {
				s, err := r.Stats(args[0])
				if err != nil {
					return err
				}
				ev := map[string]any{"type": "stats", "id": args[0], "data": s}
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(ev); err != nil {
					return err
				}
				if stats {
					return nil
				}
				time.Sleep(interval)
			}
		}),
	}
	cmd.Flags().BoolVar(&stats, "stats", false, "print the stats once and exit")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Second, "time between stats")
	return cmd
}
