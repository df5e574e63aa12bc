package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
	"github.com/berth-dev/berth/internal/opts"
	"github.com/berth-dev/berth/internal/runtime"
)

// runRoot is --run-root: sockets and runtime state, on a tmpfs.
var runRoot string

// effectiveRunRoot is --run-root, or the default that goes with --root.
func effectiveRunRoot() string {
	if runRoot != "" {
		return runRoot
	}
	return container.DefaultRunRoot(engineRoot)
}

func containerEngine() (*container.Engine, error) {
	if err := os.MkdirAll(engineRoot, 0o711); err != nil {
		return nil, fmt.Errorf("create --root %s: %w", engineRoot, err)
	}
	e, err := container.New(engineRoot, effectiveRunRoot())
	if err != nil {
		return nil, err
	}
	if e.Networks, err = newNetworkManager(engineRoot); err != nil {
		return nil, err
	}
	return e, nil
}

// withEngine adapts a verb that needs the container engine to cobra's RunE.
func withEngine(f func(cmd *cobra.Command, e *container.Engine, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		e, err := containerEngine()
		if err != nil {
			return err
		}
		return f(cmd, e, args)
	}
}

func addContainerCommands(root *cobra.Command) {
	containerCmd := &cobra.Command{Use: "container", Short: "Manage containers"}
	containerCmd.AddCommand(newRunContainerCommand(), newCreateContainerCommand(), newStartContainerCommand(),
		newStopCommand(), newRestartCommand(), newKillContainerCommand(), newRmCommand("rm"), newPsContainersCommand("ls"),
		newInspectContainerCommand(), newWaitCommand(), newPauseContainerCommand(true), newPauseContainerCommand(false),
		newRenameCommand(), newLogsCommand(), newContainerPruneCommand())
	root.AddCommand(containerCmd, newRunContainerCommand(), newCreateContainerCommand(), newStartContainerCommand(),
		newStopCommand(), newRestartCommand(), newKillContainerCommand(), newRmCommand("rm"), newPsContainersCommand("ps"),
		newInspectCommand(), newWaitCommand(), newPauseContainerCommand(true), newPauseContainerCommand(false),
		newRenameCommand(), newLogsCommand(), newMonitorHookCommand())
	addMoreContainerCommands(root, containerCmd)
}

// runFlags are the flags of run and create.
type runFlags struct {
	detach, interactive, tty, rm, init, readOnly, privileged bool
	name, workdir, user, entrypoint, hostname, restart       string
	memory, memorySwap, cpus, cpusetCpus, stopSignal         string
	network, pull, logDriver                                 string
	cpuShares, pidsLimit                                     int64
	stopTimeout                                              int
	env, envFile, labels, volumes, mounts, tmpfs             []string
	capAdd, capDrop, securityOpt, ulimits, logOpts, publish  []string
	publishAll                                               bool
	ip                                                       string
	expose, aliases, addHosts, dns, dnsSearch, dnsOptions    []string
	links                                                    []string
}

func addRunFlags(cmd *cobra.Command, f *runFlags, run bool) {
	fs := cmd.Flags()
	fs.SetInterspersed(false)             // flags after the image belong to the command
	fs.Bool("help", false, "print usage") // -h is --hostname, as in Docker
	if run {
		fs.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container ID")
	}
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "keep STDIN open even if not attached")
	fs.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo-TTY")
	fs.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fs.StringVar(&f.name, "name", "", "assign a name to the container")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set environment variables")
	fs.StringArrayVar(&f.envFile, "env-file", nil, "read in a file of environment variables")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringVarP(&f.user, "user", "u", "", "username or UID (format: <name|uid>[:<group|gid>])")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "overwrite the default ENTRYPOINT of the image")
	fs.StringVarP(&f.hostname, "hostname", "h", "", "container host name")
	fs.StringArrayVarP(&f.labels, "label", "l", nil, "set meta data on a container")
	fs.BoolVar(&f.init, "init", false, "run an init inside the container that forwards signals and reaps processes")
	fs.StringVar(&f.restart, "restart", "no", "restart policy: no, on-failure[:max-retries], always, unless-stopped")
	fs.StringVarP(&f.memory, "memory", "m", "", "memory limit")
	fs.StringVar(&f.memorySwap, "memory-swap", "", "swap limit equal to memory plus swap: -1 for unlimited swap")
	fs.StringVar(&f.cpus, "cpus", "", "number of CPUs")
	fs.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fs.StringVar(&f.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	fs.Int64Var(&f.pidsLimit, "pids-limit", 0, "tune container pids limit (-1 for unlimited)")
	fs.StringArrayVar(&f.ulimits, "ulimit", nil, "ulimit options")
	fs.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem as read only")
	fs.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs directory")
	fs.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount a volume")
	fs.StringArrayVar(&f.mounts, "mount", nil, "attach a filesystem mount to the container")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "add Linux capabilities")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop Linux capabilities")
	fs.BoolVar(&f.privileged, "privileged", false, "give extended privileges to this container")
	fs.StringArrayVar(&f.securityOpt, "security-opt", nil, "security options (no-new-privileges)")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal to stop the container")
	fs.IntVar(&f.stopTimeout, "stop-timeout", 0, "timeout (in seconds) to stop a container")
	fs.StringVar(&f.network, "network", "", "connect a container to a network: bridge (default), host, none, container:NAME|ID, or a network's name")
	fs.StringVar(&f.network, "net", "", "connect a container to a network")
	fs.MarkHidden("net")
	fs.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish all exposed ports to random host ports")
	fs.StringArrayVar(&f.expose, "expose", nil, "expose a port or a range of ports")
	fs.StringVar(&f.ip, "ip", "", "IPv4 address (e.g., 172.30.100.104) on a user network with a subnet of its own")
	fs.StringArrayVar(&f.aliases, "network-alias", nil, "add network-scoped alias for the container")
	fs.StringArrayVar(&f.aliases, "net-alias", nil, "add network-scoped alias for the container")
	fs.MarkHidden("net-alias")
	fs.StringArrayVar(&f.addHosts, "add-host", nil, "add a custom host-to-IP mapping (host:ip, or host:host-gateway)")
	fs.StringArrayVar(&f.links, "link", nil, "add link to another container (name or name:alias)")
	fs.StringArrayVar(&f.dns, "dns", nil, "set custom DNS servers")
	fs.StringArrayVar(&f.dnsSearch, "dns-search", nil, "set custom DNS search domains")
	fs.StringArrayVar(&f.dnsOptions, "dns-option", nil, "set DNS options")
	fs.StringArrayVar(&f.dnsOptions, "dns-opt", nil, "set DNS options")
	fs.MarkHidden("dns-opt")
	fs.StringVar(&f.pull, "pull", "missing", `pull image before running ("always", "missing", "never")`)
	fs.StringVar(&f.logDriver, "log-driver", "", "logging driver: json-file (default) or none")
	fs.StringArrayVar(&f.logOpts, "log-opt", nil, "log driver options: max-size, max-file")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil, "publish a container's port(s) to the host: [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]")
}

func (f *runFlags) createOpts(cmd *cobra.Command, args []string) (container.CreateOpts, error) {
	o := container.CreateOpts{
		Name: f.name, Image: args[0], Cmd: args[1:], WorkingDir: f.workdir, User: f.user, Hostname: f.hostname,
		Tty: f.tty, OpenStdin: f.interactive, StopSignal: f.stopSignal,
	}
	if cmd.Flags().Changed("entrypoint") {
		o.Entrypoint = []string{f.entrypoint}
	}
	if cmd.Flags().Changed("stop-timeout") {
		t := f.stopTimeout
		o.StopTimeout = &t
	}
	switch f.pull {
	case "missing", "never", "always":
	default:
		return o, usageErr("invalid pull option: '%s': must be one of \"always\", \"missing\" or \"never\"", f.pull)
	}
	env, err := envVars(f.envFile, f.env)
	if err != nil {
		return o, err
	}
	o.Env = env
	if o.Labels, err = opts.ParseLabels(f.labels); err != nil {
		return o, usageErr("%v", err)
	}
	hc := &o.HostConfig
	hc.AutoRemove = f.rm
	hc.ReadonlyRootfs = f.readOnly
	hc.Privileged = f.privileged
	hc.CapAdd, hc.CapDrop, hc.SecurityOpt = f.capAdd, f.capDrop, f.securityOpt
	if err := f.networkOpts(cmd, &o); err != nil {
		return o, err
	}
	if f.init {
		t := true
		hc.Init = &t
	}
	rp, err := opts.ParseRestart(f.restart)
	if err != nil {
		return o, usageErr("%v", err)
	}
	hc.RestartPolicy = container.RestartPolicy{Name: rp.Name, MaximumRetryCount: rp.MaxRetries}
	if f.memory != "" {
		if hc.Memory, err = opts.ParseMemory(f.memory); err != nil {
			return o, usageErr("invalid argument %q for \"-m, --memory\" flag: %v", f.memory, err)
		}
	}
	if f.memorySwap != "" {
		if f.memorySwap == "-1" {
			hc.MemorySwap = -1
		} else if hc.MemorySwap, err = opts.ParseMemory(f.memorySwap); err != nil {
			return o, usageErr("invalid argument %q for \"--memory-swap\" flag: %v", f.memorySwap, err)
		}
		if hc.Memory == 0 {
			return o, usageErr("you should always set the memory limit when using the memory-swap limit, see usage")
		}
		if hc.MemorySwap > 0 && hc.MemorySwap < hc.Memory {
			return o, usageErr("minimum memory-swap limit should be larger than memory limit, see usage")
		}
	}
	if hc.Memory > 0 && hc.Memory < 6<<20 {
		return o, usageErr("minimum memory limit allowed is 6MB")
	}
	if f.cpus != "" {
		if hc.NanoCpus, err = opts.ParseCPUs(f.cpus); err != nil {
			return o, usageErr("invalid argument %q for \"--cpus\" flag: %v", f.cpus, err)
		}
	}
	hc.CpuShares, hc.CpusetCpus = f.cpuShares, f.cpusetCpus
	if cmd.Flags().Changed("pids-limit") {
		p := f.pidsLimit
		hc.PidsLimit = &p
	}
	for _, u := range f.ulimits {
		ul, err := opts.ParseUlimit(u)
		if err != nil {
			return o, usageErr("%v", err)
		}
		hc.Ulimits = append(hc.Ulimits, container.Ulimit{Name: ul.Name, Soft: ul.Soft, Hard: ul.Hard})
	}
	hc.LogConfig.Type = f.logDriver
	if len(f.logOpts) > 0 {
		hc.LogConfig.Config = map[string]string{}
		for _, kv := range f.logOpts {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return o, usageErr("invalid --log-opt %q: use key=value", kv)
			}
			hc.LogConfig.Config[k] = v
		}
	}
	add := func(m opts.Mount) {
		cm := container.Mount{Type: m.Type, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly,
			Propagation: m.Propagation, NoCopy: m.NoCopy, Options: m.Options}
		if m.Type == "tmpfs" {
			cm.Options = m.TmpfsOptions()
		}
		hc.Mounts = append(hc.Mounts, cm)
	}
	for _, v := range f.volumes {
		m, err := opts.ParseVolume(v)
		if err != nil {
			return o, usageErr("%v", err)
		}
		hc.Binds = append(hc.Binds, v)
		add(m)
	}
	for _, v := range f.mounts {
		m, err := opts.ParseMount(v)
		if err != nil {
			return o, usageErr("invalid argument %q for \"--mount\" flag: %v", v, err)
		}
		add(m)
	}
	for _, v := range f.tmpfs {
		m, err := opts.ParseTmpfs(v)
		if err != nil {
			return o, usageErr("invalid argument %q for \"--tmpfs\" flag: %v", v, err)
		}
		add(m)
	}
	return o, nil
}

// createExitCode is docker run's: 125 when the engine fails, 126/127
// when the command cannot be run.
func createExitCode(err error) error {
	var se *container.StartError
	if errors.As(err, &se) {
		return codeError{code: se.Code, err: err}
	}
	return codeError{code: 125, err: err}
}

// codeError is an error printed to the user with a chosen exit code.
type codeError struct {
	code int
	err  error
}

func (e codeError) Error() string { return e.err.Error() }
func (e codeError) Unwrap() error { return e.err }

func newRunContainerCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			o, err := f.createOpts(cmd, args)
			if err != nil {
				return createExitCode(err)
			}
			if f.detach && f.rm && o.HostConfig.RestartPolicy.Name != "no" {
				return createExitCode(usageErr("conflicting options: cannot specify both --restart and --rm"))
			}
			o.StdinOnce = f.interactive && !f.detach
			if err := ensureImage(e.Images, o.Image, f.pull); err != nil {
				return createExitCode(err)
			}
			c, err := e.Create(o)
			if err != nil {
				return createExitCode(err)
			}
			if f.tty {
				setConsoleSize(e, c.ID)
			}
			_, conn, err := e.Start(c.ID)
			if err != nil {
				return createExitCode(err)
			}
			if f.detach {
				conn.Close()
				fmt.Fprintln(cmd.OutOrStdout(), c.ID)
				return nil
			}
			code, err := attachStreams(e, c, conn, f.interactive, f.tty)
			if err != nil {
				return createExitCode(err)
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		}),
	}
	addRunFlags(cmd, &f, true)
	return cmd
}

func newCreateContainerCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			// Exit codes as docker create's: 125 for options the client
			// rejects, 1 for what the engine refuses (exitCodeFor).
			o, err := f.createOpts(cmd, args)
			if err != nil {
				return codeError{code: 125, err: err}
			}
			if err := ensureImage(e.Images, o.Image, f.pull); err != nil {
				return err
			}
			c, err := e.Create(o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), c.ID)
			return nil
		}),
	}
	addRunFlags(cmd, &f, false)
	return cmd
}

// attachStreams copies the container's output to ours (and our stdin to it
// with -i) until it exits, and returns its exit code. Signals we receive
// go to the container, as docker run's --sig-proxy does; with -t the
// terminal is raw, so Ctrl-C reaches the container as a byte instead.
func attachStreams(e *container.Engine, c *container.Container, conn *container.Conn, stdin, tty bool) (int, error) {
	defer conn.Close()
	if tty && term.IsTerminal(int(os.Stdin.Fd())) {
		if state, err := term.MakeRaw(int(os.Stdin.Fd())); err == nil {
			defer term.Restore(int(os.Stdin.Fd()), state)
		}
		defer followWindowSize(func() {
			if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil {
				conn.Resize(uint16(h), uint16(w))
			}
		})()
	}
	sigs := make(chan os.Signal, 8)
	if !tty {
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		go func() {
			for s := range sigs {
				e.Kill(c.ID, s.(syscall.Signal))
			}
		}()
	}
	if stdin {
		go func() {
			io.Copy(conn, os.Stdin)
			conn.CloseStdin()
		}()
	}
	for {
		t, p, err := conn.ReadFrame()
		if err != nil {
			// The monitor dropped us (we read too slowly) or died: no more
			// output, but the exit code still comes from the record.
			logWarn("lost the container's output stream (%v); waiting for it to exit", err)
			code, werr := e.Wait(c.ID)
			if errors.Is(werr, errdefs.ErrNotFound) {
				return 0, fmt.Errorf("container %s exited and was removed while detached: its exit code is unknown", container.ShortID(c.ID))
			}
			return code, werr
		}
		switch t {
		case container.FrameStdout:
			os.Stdout.Write(p)
		case container.FrameStderr:
			os.Stderr.Write(p)
		case container.FrameExited:
			code, _ := strconv.Atoi(string(p))
			conn.Drain()
			return code, nil
		}
	}
}

func newStartContainerCommand() *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			if (attach || interactive) && len(args) > 1 {
				return usageErr("you cannot start and attach multiple containers at once")
			}
			var failed error
			for _, ref := range args {
				if attach || interactive {
					setConsoleSize(e, ref)
				}
				c, conn, err := e.Start(ref)
				if err != nil {
					failed = err
					logError(err)
					continue
				}
				if attach || interactive {
					if conn == nil {
						return fmt.Errorf("container %s is already running; use attach: %w", ref, errdefs.ErrConflict)
					}
					code, err := attachStreams(e, c, conn, interactive, c.Config.Tty)
					if err != nil {
						return err
					}
					if code != 0 {
						return exitError{code: code}
					}
					return nil
				}
				if conn != nil {
					conn.Close()
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			if failed != nil {
				return exitError{code: 1}
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach container's STDIN")
	return cmd
}

// forEach runs f on every argument, prints each that worked, and reports
// failures one line each, as Docker's multi-container verbs do.
func forEach(cmd *cobra.Command, args []string, f func(ref string) error) error {
	var failed bool
	for _, ref := range args {
		if err := f(ref); err != nil {
			logError(err)
			failed = true
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), ref)
	}
	if failed {
		return exitError{code: 1}
	}
	return nil
}

func newStopCommand() *cobra.Command {
	var timeout int
	var signalName string
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			var t *int
			if cmd.Flags().Changed("time") {
				t = &timeout
			}
			return forEach(cmd, args, func(ref string) error { return e.Stop(ref, t) })
		}),
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	cmd.Flags().StringVarP(&signalName, "signal", "s", "", "signal to send to the container (default: its stop signal)")
	return cmd
}

func newRestartCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			var t *int
			if cmd.Flags().Changed("time") {
				t = &timeout
			}
			return forEach(cmd, args, func(ref string) error {
				if err := e.Stop(ref, t); err != nil {
					return err
				}
				_, conn, err := e.Start(ref)
				if conn != nil {
					conn.Close()
				}
				return err
			})
		}),
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	return cmd
}

func newKillContainerCommand() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			s, err := runtime.ParseSignal(sig)
			if err != nil {
				return usageErr("invalid signal: %s", sig)
			}
			return forEach(cmd, args, func(ref string) error { return e.Kill(ref, s) })
		}),
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send to the container")
	return cmd
}

func newRmCommand(use string) *cobra.Command {
	var o container.RemoveOpts
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			return forEach(cmd, args, func(ref string) error { return e.Remove(ref, o) })
		}),
	}
	cmd.Flags().BoolVarP(&o.Force, "force", "f", false, "force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&o.Volumes, "volumes", "v", false, "remove anonymous volumes associated with the container")
	return cmd
}

func newWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			var failed bool
			for _, ref := range args {
				code, err := e.Wait(ref)
				if err != nil {
					logError(err)
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), code)
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		}),
	}
}

func newPauseContainerCommand(pause bool) *cobra.Command {
	use, short := "pause", "Pause all processes within one or more containers"
	if !pause {
		use, short = "unpause", "Unpause all processes within one or more containers"
	}
	return &cobra.Command{
		Use:   use + " CONTAINER [CONTAINER...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			return forEach(cmd, args, func(ref string) error {
				if pause {
					return e.Pause(ref)
				}
				return e.Unpause(ref)
			})
		}),
	}
}

func newRenameCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2, "a container and its new name"),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			return e.Rename(args[0], args[1])
		}),
	}
}

// newMonitorHookCommand is the Go half of the monitor (see package
// container/monitor): hidden, run only by a container's monitor.
func newMonitorHookCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "monitor-hook start|exit ID [ARG]",
		Hidden: true,
		Args:   cobra.RangeArgs(2, 3),
		RunE: withEngine(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			// The monitor's descriptors (status pipe, the container's
			// stdio) must not reach what the hook starts, such as the
			// DNS server: it would hold the container's output open.
			if err := fsutil.CloseOnExecFrom(3); err != nil {
				return fmt.Errorf("monitor-hook: %w", err)
			}
			var code int
			switch args[0] {
			case "start":
				sock := ""
				if len(args) == 3 {
					sock = args[2]
				}
				code = e.HookStart(args[1], sock)
			case "exit":
				if len(args) != 3 {
					return usageErr("monitor-hook exit needs ID and CODE")
				}
				n, err := strconv.Atoi(args[2])
				if err != nil {
					return usageErr("monitor-hook exit: bad code %q", args[2])
				}
				code = e.HookExit(args[1], n)
			default:
				return usageErr("monitor-hook: unknown hook %q", args[0])
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		}),
	}
}

func init() {
	// `volume rm` and `volume prune` ask the container records.
	volumeInUse = func(root, name string) []string {
		e, err := containerEngine()
		if err != nil {
			return []string{"(unknown: " + err.Error() + ")"}
		}
		return e.VolumeUsers(name, "")
	}
}

// setConsoleSize passes our terminal's size to a container about to start.
func setConsoleSize(e *container.Engine, ref string) {
	if w, h, err := term.GetSize(int(os.Stdin.Fd())); err == nil && w > 0 && h > 0 {
		e.SetConsoleSize(ref, uint16(h), uint16(w))
	}
}

// imageInUse answers the image verbs' question "does a container use this
// image?" from the container records (rmi refuses, prune -a keeps, df
// counts). Read now, before the image verb takes the metadata lock that
// the question is asked under.
func imageInUse() func(id digest.Digest) bool {
	used := map[string]bool{}
	if e, err := containerEngine(); err == nil {
		if cs, err := e.List(); err == nil {
			for _, c := range cs {
				used[c.Image] = true
			}
		}
	}
	return func(id digest.Digest) bool { return used[id.String()] }
}

// followWindowSize calls resize now and on every SIGWINCH until the
// returned stop is called.
func followWindowSize(resize func()) (stop func()) {
	resize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			resize()
		}
	}()
	return func() {
		signal.Stop(winch)
		close(winch)
	}
}
