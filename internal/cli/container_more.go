package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/opts"
)

// addMoreContainerCommands registers exec, attach, top, stats, cp and port
// both as `berth VERB` and `berth container VERB`.
func addMoreContainerCommands(root, containerCmd *cobra.Command) {
	verbs := []func() *cobra.Command{newExecContainerCommand, newAttachCommand, newTopCommand,
		newStatsCommand, newCpCommand, newPortCommand}
	for _, v := range verbs {
		containerCmd.AddCommand(v())
		root.AddCommand(v())
	}
	root.AddCommand(newExecConsoleHolderCommand())
}

// These verbs fail with exit code 1, as Docker's do when the daemon
// refuses ("Error response from daemon: ..."); 125 is run's and create's.
func failed(err error) error {
	if err == nil {
		return nil
	}
	var ee exitError
	var ce codeError
	if errors.As(err, &ee) || errors.As(err, &ce) {
		return err
	}
	return codeError{code: 1, err: err}
}

// withEngine1 is withEngine whose failures exit with code 1.
func withEngine1(f func(cmd *cobra.Command, e *container.Engine, args []string) error) func(*cobra.Command, []string) error {
	run := withEngine(f)
	return func(cmd *cobra.Command, args []string) error { return failed(run(cmd, args)) }
}

// minArgs is cobra.MinimumNArgs with a message that says what to pass.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return failed(usageErr("%q requires %s (see %s --help)", cmd.CommandPath(), what, cmd.CommandPath()))
		}
		return nil
	}
}

// ---- exec ----

func newExecContainerCommand() *cobra.Command {
	var (
		detach, interactive, tty, privileged bool
		userSpec, workdir                    string
		env, envFile                         []string
	)
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  minArgs(2, "a container and a command"),
		RunE: withEngine1(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			vars, err := envVars(envFile, env)
			if err != nil {
				return err
			}
			if tty && interactive && !detach && !term.IsTerminal(int(os.Stdin.Fd())) {
				return errors.New("the input device is not a TTY")
			}
			o := container.ExecOpts{Cmd: args[1:], Env: vars, User: userSpec, WorkingDir: workdir,
				Privileged: privileged, Tty: tty, Detach: detach}
			if interactive {
				o.Stdin = os.Stdin
			}
			o.Stdout, o.Stderr = os.Stdout, os.Stderr
			var session *ttySession
			if tty {
				o.Rows, o.Cols = terminalSize()
				if !detach {
					session = &ttySession{stdin: interactive, done: make(chan struct{})}
					o.Console = session.attach
				}
			}
			code, err := e.Exec(args[0], o)
			if session != nil {
				session.finish()
			}
			if err != nil {
				var se *container.StartError
				if errors.As(err, &se) {
					return codeError{code: se.Code, err: err}
				}
				return err
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		}),
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false) // flags after the command are the command's
	fs.BoolVarP(&detach, "detach", "d", false, "detached mode: run command in the background")
	fs.BoolVarP(&interactive, "interactive", "i", false, "keep STDIN open even if not attached")
	fs.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY")
	fs.BoolVar(&privileged, "privileged", false, "give extended privileges to the command")
	fs.StringVarP(&userSpec, "user", "u", "", "username or UID (format: \"<name|uid>[:<group|gid>]\")")
	fs.StringVarP(&workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringArrayVarP(&env, "env", "e", nil, "set environment variables")
	fs.StringArrayVar(&envFile, "env-file", nil, "read in a file of environment variables")
	return cmd
}

// envVars reads --env-file files, then -e values, as run does.
func envVars(files, values []string) ([]string, error) {
	var env []string
	for _, file := range files {
		fh, err := os.Open(file)
		if err != nil {
			return nil, usageErr("--env-file: %v", err)
		}
		vars, err := opts.ParseEnvFile(fh, os.LookupEnv)
		fh.Close()
		if err != nil {
			return nil, usageErr("--env-file %s: %v", file, err)
		}
		env = append(env, vars...)
	}
	vars, err := opts.ParseEnv(values, os.LookupEnv)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return append(env, vars...), nil
}

// terminalSize is the user's terminal size (stdout's, else stdin's).
func terminalSize() (rows, cols uint16) {
	for _, fd := range []int{int(os.Stdout.Fd()), int(os.Stdin.Fd())} {
		if w, h, err := term.GetSize(fd); err == nil && w > 0 && h > 0 {
			return uint16(h), uint16(w)
		}
	}
	return 0, 0
}

// ttySession connects the user's terminal to an exec's pty: raw mode,
// keystrokes in (with -i), output out, window size changes forwarded.
type ttySession struct {
	stdin      bool
	master     *os.File
	restore    func()
	stopResize func()
	done       chan struct{} // closed when the output has been copied
}

func (s *ttySession) attach(master *os.File) {
	s.master = master
	in := int(os.Stdin.Fd())
	if s.stdin && term.IsTerminal(in) {
		if state, err := term.MakeRaw(in); err == nil {
			s.restore = func() { term.Restore(in, state) }
		}
	}
	s.stopResize = followWindowSize(func() {
		if rows, cols := terminalSize(); rows > 0 {
			unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
		}
	})
	if s.stdin {
		go io.Copy(master, os.Stdin)
	}
	go func() {
		io.Copy(os.Stdout, master)
		close(s.done)
	}()
}

// finish waits for the last output once the process has exited (a
// background child that keeps the terminal open gets a second), then
// gives the user's terminal back.
func (s *ttySession) finish() {
	if s.master == nil {
		return
	}
	s.master.SetReadDeadline(time.Now().Add(time.Second))
	<-s.done
	s.stopResize()
	if s.restore != nil {
		s.restore()
	}
	s.master.Close()
}

// newExecConsoleHolderCommand is the hidden process that keeps a
// detached exec's terminal open (see container.HoldConsole).
func newExecConsoleHolderCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "exec-console-holder",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run:    func(*cobra.Command, []string) { container.HoldConsole() },
	}
}

// ---- attach ----

func newAttachCommand() *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  minArgs(1, "a container"),
		RunE: withEngine1(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			if len(args) != 1 {
				return usageErr("%q takes one container", cmd.CommandPath())
			}
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			c, err := e.Refresh(args[0])
			if err != nil {
				return err
			}
			switch {
			case c.State.Paused:
				return fmt.Errorf("you cannot attach to a paused container, unpause it first: %w", errdefs.ErrConflict)
			case !c.State.Running || c.State.Restarting:
				return fmt.Errorf("you cannot attach to a stopped container, start it first: %w", errdefs.ErrConflict)
			}
			stdin := c.Config.OpenStdin && !noStdin
			if stdin && c.Config.Tty && !term.IsTerminal(int(os.Stdin.Fd())) {
				return errors.New("the input device is not a TTY")
			}
			conn, err := e.Dial(c.ID, true)
			if err != nil {
				return fmt.Errorf("attach to container %s: %w", container.ShortID(c.ID), err)
			}
			code, err := attachSession(e, c, conn, stdin, sigProxy, keys)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach STDIN")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "proxy all received signals to the process")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "override the key sequence for detaching a container (default ctrl-p,ctrl-q; with a TTY)")
	return cmd
}

// attachSession relays a running container's streams until it exits (its
// exit code) or the user detaches with the detach keys (0).
func attachSession(e *container.Engine, c *container.Container, conn *container.Conn, stdin, sigProxy bool, keys []byte) (int, error) {
	defer conn.Close()
	tty := c.Config.Tty
	if tty {
		in := int(os.Stdin.Fd())
		if stdin && term.IsTerminal(in) {
			if state, err := term.MakeRaw(in); err == nil {
				defer term.Restore(in, state)
			}
		}
		defer followWindowSize(func() {
			if rows, cols := terminalSize(); rows > 0 {
				conn.Resize(rows, cols)
			}
		})()
	}
	if sigProxy && !tty {
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
		defer signal.Stop(sigs)
		go func() {
			for s := range sigs {
				e.Kill(c.ID, s.(syscall.Signal))
			}
		}()
	}
	detached := make(chan struct{})
	if stdin {
		go func() {
			var r io.Reader = os.Stdin
			if tty && len(keys) > 0 {
				r = &escapeReader{r: os.Stdin, keys: keys}
			}
			_, err := io.Copy(conn, r)
			if errors.Is(err, errDetach) {
				close(detached)
				conn.Close()
				return
			}
			if !tty {
				conn.CloseStdin()
			}
		}()
	}
	for {
		t, p, err := conn.ReadFrame()
		if err != nil {
			select {
			case <-detached:
				return 0, nil
			default:
			}
			return e.Wait(c.ID) // the monitor is gone: the record knows
		}
		switch t {
		case container.FrameStdout:
			os.Stdout.Write(p)
		case container.FrameStderr:
			os.Stderr.Write(p)
		case container.FrameExited:
			code, _ := strconv.Atoi(string(p))
			return code, nil
		}
	}
}

var errDetach = errors.New("read escape sequence")

// escapeReader passes input through until the detach key sequence, then
// fails with errDetach; a partial sequence that does not complete is
// passed on as typed (Docker's term.EscapeProxy).
type escapeReader struct {
	r       io.Reader
	keys    []byte
	matched int
	pending []byte
	buf     []byte
}

func (e *escapeReader) Read(p []byte) (int, error) {
	if len(e.pending) > 0 {
		n := copy(p, e.pending)
		e.pending = e.pending[n:]
		return n, nil
	}
	if cap(e.buf) < len(p) {
		e.buf = make([]byte, len(p))
	}
	n, err := e.r.Read(e.buf[:len(p)])
	var out []byte
	for _, b := range e.buf[:n] {
		if b == e.keys[e.matched] {
			e.matched++
			if e.matched == len(e.keys) {
				return copy(p, out), errDetach // out is never longer than p here
			}
			continue
		}
		if e.matched > 0 {
			out = append(out, e.keys[:e.matched]...) // not the sequence after all
			e.matched = 0
			if b == e.keys[0] {
				e.matched = 1
				continue
			}
		}
		out = append(out, b)
	}
	if err != nil && e.matched > 0 {
		out = append(out, e.keys[:e.matched]...) // input ended mid-sequence
		e.matched = 0
	}
	k := copy(p, out)
	e.pending = out[k:]
	if len(e.pending) > 0 {
		return k, nil // the rest first; the reader repeats its error
	}
	return k, err
}

// parseDetachKeys reads Docker's --detach-keys: comma-separated keys,
// each a single character or ctrl-<char>.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = "ctrl-p,ctrl-q"
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		if c, ok := strings.CutPrefix(k, "ctrl-"); ok && len(c) == 1 {
			switch ch := c[0]; {
			case ch >= 'a' && ch <= 'z':
				out = append(out, ch-'a'+1)
			case ch == '@' || ch == '[' || ch == '\\' || ch == ']' || ch == '^' || ch == '_':
				out = append(out, ch-'@')
			default:
				return nil, usageErr("invalid detach key %q: use a letter or one of @[\\]^_ after ctrl-", k)
			}
			continue
		}
		if len(k) != 1 {
			return nil, usageErr("invalid detach keys %q: give keys such as ctrl-p,ctrl-q or a,b", s)
		}
		out = append(out, k[0])
	}
	return out, nil
}

// ---- top ----

func newTopCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  minArgs(1, "a container"),
		RunE: withEngine1(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			cols, err := parsePsOptions(args[1:])
			if err != nil {
				return err
			}
			procs, err := e.Top(args[0])
			if err != nil {
				return err
			}
			return printTop(cmd.OutOrStdout(), cols, procs, time.Now())
		}),
	}
	cmd.Flags().SetInterspersed(false) // ps's options are not ours
	return cmd
}

// psColumn is one column of top's table, as ps names and prints it.
type psColumn struct {
	header string
	value  func(p *container.Process, now time.Time) string
}

// printTop prints processes as docker top does (ps's output in a table
// with at least 20 columns per field).
func printTop(w io.Writer, cols []psColumn, procs []container.Process, now time.Time) error {
	tw := tabwriter.NewWriter(w, 20, 1, 3, ' ', 0)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for i := range procs {
		row := make([]string, len(cols))
		for j, c := range cols {
			row[j] = c.value(&procs[i], now)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// parsePsOptions turns ps's options into columns: -ef (docker top's
// default), -f, -e, aux / u, -o/o FIELD,... berth reads /proc itself,
// so other options are refused with a list of the ones it knows.
func parsePsOptions(args []string) ([]psColumn, error) {
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	var full, bsdUser bool
	var fields []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		dash := strings.HasPrefix(a, "-") // UNIX options; BSD ones have none
		letters := strings.TrimPrefix(a, "-")
		if strings.HasPrefix(a, "--") {
			return nil, usageErr("ps option %q is not supported by berth top (it reads /proc itself): use -ef, -f, -e, aux or -o FIELD,...", a)
		}
		for j := 0; j < len(letters); j++ {
			switch ch := letters[j]; {
			case ch == 'o':
				spec := letters[j+1:]
				if spec == "" {
					if i+1 >= len(args) {
						return nil, usageErr("ps option -o needs a list of fields")
					}
					i++
					spec = args[i]
				}
				fields = append(fields, splitFields(spec)...)
				j = len(letters)
			case ch == 'e' || ch == 'A' || ch == 'a' || ch == 'x' || ch == 'w':
			case ch == 'f' && dash, ch == 'F' && dash:
				full = true
			case ch == 'u' && !dash:
				bsdUser = true
			default:
				return nil, usageErr("ps option %q is not supported by berth top (it reads /proc itself): use -ef, -f, -e, aux or -o FIELD,...", a)
			}
		}
	}
	switch {
	case len(fields) > 0:
		var cols []psColumn
		for _, f := range fields {
			name, header, hasHeader := strings.Cut(f, "=")
			c, ok := psFields[strings.ToLower(name)]
			if !ok {
				return nil, usageErr("unknown ps field %q: berth top knows %s", name, strings.Join(psFieldNames(), ", "))
			}
			if hasHeader {
				c.header = header
			}
			cols = append(cols, c)
		}
		return cols, nil
	case bsdUser:
		return pick("user=USER", "pid", "%cpu", "%mem", "vsz", "rss", "tty=TTY", "stat", "start=START", "time", "args=COMMAND"), nil
	case full:
		return pick("user=UID", "pid", "ppid", "c", "stime", "tty=TTY", "time", "args=CMD"), nil
	}
	return pick("pid", "tty=TTY", "time", "comm=CMD"), nil
}

func splitFields(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

func pick(names ...string) []psColumn {
	var cols []psColumn
	for _, n := range names {
		name, header, ok := strings.Cut(n, "=")
		c := psFields[name]
		if ok {
			c.header = header
		}
		cols = append(cols, c)
	}
	return cols
}

func psFieldNames() []string {
	return []string{"pid", "ppid", "uid", "user", "gid", "group", "comm", "args", "cmd", "stat", "s", "time", "etime",
		"rss", "vsz", "tty", "%cpu", "c", "%mem", "ni", "pri", "nlwp", "stime", "start"}
}

var psFields = func() map[string]psColumn {
	num := func(v func(p *container.Process) int) func(*container.Process, time.Time) string {
		return func(p *container.Process, _ time.Time) string { return strconv.Itoa(v(p)) }
	}
	cpu := func(p *container.Process, now time.Time) float64 {
		up := now.Sub(p.Started).Seconds()
		if up <= 0 {
			return 0
		}
		return p.CPUTime().Seconds() / up * 100
	}
	args := func(p *container.Process, _ time.Time) string {
		if len(p.Args) == 0 {
			return "[" + p.Comm + "]"
		}
		return strings.Join(p.Args, " ")
	}
	m := map[string]psColumn{
		"pid":   {"PID", num(func(p *container.Process) int { return p.PID })},
		"ppid":  {"PPID", num(func(p *container.Process) int { return p.PPID })},
		"uid":   {"UID", num(func(p *container.Process) int { return p.UID })},
		"user":  {"USER", func(p *container.Process, _ time.Time) string { return userName(p.UID) }},
		"gid":   {"GID", num(func(p *container.Process) int { return p.GID })},
		"group": {"GROUP", func(p *container.Process, _ time.Time) string { return groupName(p.GID) }},
		"comm":  {"COMMAND", func(p *container.Process, _ time.Time) string { return p.Comm }},
		"args":  {"COMMAND", args},
		"cmd":   {"CMD", args},
		"stat":  {"STAT", func(p *container.Process, _ time.Time) string { return p.State }},
		"s":     {"S", func(p *container.Process, _ time.Time) string { return p.State }},
		"time":  {"TIME", func(p *container.Process, _ time.Time) string { return cpuTime(p.CPUTime()) }},
		"etime": {"ELAPSED", func(p *container.Process, now time.Time) string { return elapsed(now.Sub(p.Started)) }},
		"rss":   {"RSS", func(p *container.Process, _ time.Time) string { return strconv.FormatUint(p.RSS/1024, 10) }},
		"vsz":   {"VSZ", func(p *container.Process, _ time.Time) string { return strconv.FormatUint(p.VSZ/1024, 10) }},
		"tty":   {"TT", func(p *container.Process, _ time.Time) string { return ttyName(p.TTY) }},
		"%cpu":  {"%CPU", func(p *container.Process, now time.Time) string { return fmt.Sprintf("%.1f", cpu(p, now)) }},
		"c":     {"C", func(p *container.Process, now time.Time) string { return strconv.Itoa(min(int(cpu(p, now)), 99)) }},
		"%mem":  {"%MEM", func(p *container.Process, _ time.Time) string { return fmt.Sprintf("%.1f", memPercent(p.RSS)) }},
		"ni":    {"NI", num(func(p *container.Process) int { return p.Nice })},
		"pri":   {"PRI", num(func(p *container.Process) int { return p.Priority })},
		"nlwp":  {"NLWP", num(func(p *container.Process) int { return p.Threads })},
		"stime": {"STIME", func(p *container.Process, now time.Time) string { return startTime(p.Started, now) }},
		"start": {"STARTED", func(p *container.Process, now time.Time) string { return bsdStart(p.Started, now) }},
	}
	for alias, name := range map[string]string{"euid": "uid", "euser": "user", "uname": "user", "egid": "gid",
		"egroup": "group", "ucmd": "comm", "ucomm": "comm", "command": "args", "state": "s", "cputime": "time",
		"rsz": "rss", "vsize": "vsz", "tt": "tty", "tname": "tty", "pcpu": "%cpu", "pmem": "%mem", "nice": "ni",
		"thcount": "nlwp", "start_time": "stime"} {
		m[alias] = m[name]
	}
	return m
}()

var (
	userNames  = map[int]string{}
	groupNames = map[int]string{}
)

// userName is the host's name for uid, as ps prints it, else the number.
func userName(uid int) string {
	if n, ok := userNames[uid]; ok {
		return n
	}
	n := strconv.Itoa(uid)
	if u, err := user.LookupId(n); err == nil {
		n = u.Username
	}
	userNames[uid] = n
	return n
}

func groupName(gid int) string {
	if n, ok := groupNames[gid]; ok {
		return n
	}
	n := strconv.Itoa(gid)
	if g, err := user.LookupGroupId(n); err == nil {
		n = g.Name
	}
	groupNames[gid] = n
	return n
}

// ttyName is ps's TTY column for a tty_nr: pts/N, ttyN, or "?".
func ttyName(nr uint64) string {
	major, minor := unix.Major(nr), unix.Minor(nr)
	switch {
	case nr == 0:
		return "?"
	case major >= 136 && major <= 143:
		return "pts/" + strconv.FormatUint(uint64(minor)+uint64(major-136)*256, 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(uint64(minor), 10)
	case major == 4:
		return "ttyS" + strconv.FormatUint(uint64(minor-64), 10)
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}

// cpuTime is ps's TIME: [DD-]HH:MM:SS.
func cpuTime(d time.Duration) string {
	s := int64(d.Seconds())
	days, s := s/86400, s%86400
	out := fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
	if days > 0 {
		out = fmt.Sprintf("%d-%s", days, out)
	}
	return out
}

// elapsed is ps's ELAPSED: [[DD-]HH:]MM:SS.
func elapsed(d time.Duration) string {
	s := max(int64(d.Seconds()), 0)
	days, s := s/86400, s%86400
	switch {
	case days > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", days, s/3600, s/60%60, s%60)
	case s >= 3600:
		return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

// startTime is ps -f's STIME: HH:MM today, MmmDD this year, else YYYY.
func startTime(t, now time.Time) string {
	t = t.Local()
	switch {
	case now.Sub(t) < 24*time.Hour:
		return t.Format("15:04")
	case t.Year() == now.Year():
		return t.Format("Jan02")
	}
	return t.Format("2006")
}

// bsdStart is ps u's START: HH:MM:SS within a day, else "Mmm DD".
func bsdStart(t, now time.Time) string {
	t = t.Local()
	if now.Sub(t) < 24*time.Hour {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 02")
}

var memTotal uint64

func memPercent(rss uint64) float64 {
	if memTotal == 0 {
		var si unix.Sysinfo_t
		if unix.Sysinfo(&si) == nil {
			memTotal = uint64(si.Totalram) * uint64(si.Unit)
		}
	}
	if memTotal == 0 {
		return 0
	}
	return float64(rss) / float64(memTotal) * 100
}

// ---- stats ----

// statsRow is one line of docker stats, with its --format field names.
type statsRow struct {
	Container, ID, Name, CPUPerc, MemUsage, MemPerc, NetIO, BlockIO, PIDs string
}

var statsHeader = statsRow{Container: "CONTAINER", ID: "CONTAINER ID", Name: "NAME", CPUPerc: "CPU %",
	MemUsage: "MEM USAGE / LIMIT", MemPerc: "MEM %", NetIO: "NET I/O", BlockIO: "BLOCK I/O", PIDs: "PIDS"}

const defaultStatsFormat = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

func newStatsCommand() *cobra.Command {
	var all, noStream, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: withEngine1(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			render, err := statsRenderer(format)
			if err != nil {
				return err
			}
			// The containers: those named, else every running one (every
			// one with -a), looked up again at each refresh.
			targets := func() ([]string, error) {
				if len(args) > 0 {
					return args, nil
				}
				cs, err := e.List()
				if err != nil {
					return nil, err
				}
				var ids []string
				for i := len(cs) - 1; i >= 0; i-- { // oldest first, as docker
					c := e.RefreshRecord(cs[i])
					if all || c.State.Running {
						ids = append(ids, c.ID)
					}
				}
				return ids, nil
			}
			prev := map[string]*container.Stats{}
			sample := func() ([]*container.Stats, error) {
				refs, err := targets()
				if err != nil {
					return nil, err
				}
				var out []*container.Stats
				for _, ref := range refs {
					s, err := e.Stats(ref)
					if err != nil {
						if len(args) > 0 {
							return nil, err
						}
						continue // removed meanwhile
					}
					out = append(out, s)
				}
				return out, nil
			}
			rows := func(cur []*container.Stats, refs map[string]string) []statsRow {
				var out []statsRow
				for _, s := range cur {
					r := makeStatsRow(prev[s.ID], s, noTrunc)
					r.Container = refs[s.ID]
					if r.Container == "" {
						r.Container = r.ID
					}
					out = append(out, r)
					prev[s.ID] = s
				}
				return out
			}
			refNames := map[string]string{}
			first, err := sample()
			if err != nil {
				return err
			}
			for i, s := range first {
				prev[s.ID] = s
				if len(args) > 0 {
					refNames[s.ID] = args[i]
				}
			}
			ctx, stop := interruptible()
			defer stop()
			wait := 500 * time.Millisecond
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(wait):
				}
				cur, err := sample()
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if !noStream {
					fmt.Fprint(out, "\033[2J\033[H")
				}
				if err := render(out, rows(cur, refNames)); err != nil {
					return err
				}
				if noStream {
					return nil
				}
				wait = time.Second
			}
		}),
	}
	fs := cmd.Flags()
	fs.BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	fs.BoolVar(&noStream, "no-stream", false, "disable streaming stats and only pull the first result")
	fs.BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	fs.StringVar(&format, "format", "", "format output using a Go template, 'table', 'table TEMPLATE' or 'json'")
	return cmd
}

// makeStatsRow formats a sample as docker stats does: CPU from the
// previous sample, memory in binary units, I/O in decimal ones.
func makeStatsRow(prev, cur *container.Stats, noTrunc bool) statsRow {
	return statsRow{
		ID:       shortID(cur.ID, noTrunc),
		Name:     cur.Name,
		CPUPerc:  fmt.Sprintf("%.2f%%", container.CPUPercent(prev, cur)),
		MemUsage: bytesSize(cur.MemUsage) + " / " + bytesSize(cur.MemLimit),
		MemPerc:  fmt.Sprintf("%.2f%%", cur.MemPercent()),
		NetIO:    humanSize3(cur.NetRx) + " / " + humanSize3(cur.NetTx),
		BlockIO:  humanSize3(cur.BlockRead) + " / " + humanSize3(cur.BlockWrite),
		PIDs:     strconv.FormatUint(cur.Pids, 10),
	}
}

// statsRenderer prints rows per --format: Docker's table by default,
// "table TEMPLATE" with a header, "json" one object per line, or a bare
// template per row.
func statsRenderer(format string) (func(io.Writer, []statsRow) error, error) {
	switch format {
	case "", "table":
		format = defaultStatsFormat
	case "json":
		return func(w io.Writer, rows []statsRow) error {
			for _, r := range rows {
				data, err := json.Marshal(r)
				if err != nil {
					return err
				}
				fmt.Fprintln(w, string(data))
			}
			return nil
		}, nil
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	body, table := strings.CutPrefix(format, "table ")
	tmpl, err := template.New("stats").Funcs(template.FuncMap{
		"json": func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err },
	}).Parse(body)
	if err != nil {
		return nil, usageErr("--format: %v", err)
	}
	return func(w io.Writer, rows []statsRow) error {
		tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		if table {
			if err := tmpl.Execute(tw, statsHeader); err != nil {
				return usageErr("--format: %v", err)
			}
			fmt.Fprintln(tw)
		}
		for _, r := range rows {
			if err := tmpl.Execute(tw, r); err != nil {
				return usageErr("--format: %v", err)
			}
			fmt.Fprintln(tw)
		}
		return tw.Flush()
	}, nil
}

// bytesSize is Docker's units.BytesSize: binary units, 4 significant digits.
func bytesSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g%s", f, units[i])
}

// humanSize3 is Docker's units.HumanSizeWithPrecision(n, 3).
func humanSize3(n uint64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f, i := float64(n), 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

// ---- cp ----

func newCpCommand() *cobra.Command {
	var o container.CopyOpts
	var quiet bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Long: "Copy files/folders between a container and the local filesystem\n\n" +
			"Use '-' as the source to read a tar archive from stdin and extract it to a directory\n" +
			"destination in a container. Use '-' as the destination to stream a tar archive of a\n" +
			"container source to stdout.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return failed(usageErr("%q requires exactly 2 arguments (see %s --help)", cmd.CommandPath(), cmd.CommandPath()))
			}
			return nil
		},
		RunE: withEngine1(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			srcC, src := splitCpArg(args[0])
			dstC, dst := splitCpArg(args[1])
			switch {
			case srcC != "" && dstC != "":
				return usageErr("copying between containers is not supported")
			case srcC == "" && dstC == "":
				return usageErr("must specify at least one container source")
			case src == "":
				return usageErr("source can not be empty")
			case dst == "":
				return usageErr("destination can not be empty")
			}
			progress := !quiet && term.IsTerminal(int(os.Stderr.Fd()))
			if srcC != "" {
				if dst == "-" {
					return e.ArchiveFromContainer(srcC, src, o, os.Stdout)
				}
				n, err := e.CopyFromContainer(srcC, src, dst, o)
				if err == nil && progress {
					fmt.Fprintf(os.Stderr, "Successfully copied %s to %s\n", humanSize(n), dst)
				}
				return err
			}
			if src == "-" {
				return e.ExtractToContainer(dstC, dst, os.Stdin, o)
			}
			n, err := e.CopyToContainer(dstC, src, dst, o)
			if err == nil && progress {
				fmt.Fprintf(os.Stderr, "Successfully copied %s to %s:%s\n", humanSize(n), dstC, dst)
			}
			return err
		}),
	}
	fs := cmd.Flags()
	fs.BoolVarP(&o.Archive, "archive", "a", false, "archive mode (copy all uid/gid information)")
	fs.BoolVarP(&o.FollowLink, "follow-link", "L", false, "always follow symbol link in SRC_PATH")
	fs.BoolVarP(&quiet, "quiet", "q", false, "suppress progress output during copy (automatic without a terminal)")
	return cmd
}

// splitCpArg splits CONTAINER:PATH as docker cp does: an absolute path,
// or one starting with ".", is local even if it has a colon.
func splitCpArg(arg string) (container, path string) {
	if strings.HasPrefix(arg, "/") {
		return "", arg
	}
	c, p, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(c, ".") || c == "" {
		return "", arg
	}
	return c, p
}

// ---- port ----

func newPortCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return failed(usageErr("%q requires a container and at most one port (see %s --help)", cmd.CommandPath(), cmd.CommandPath()))
			}
			return nil
		},
		RunE: withEngine1(func(cmd *cobra.Command, e *container.Engine, args []string) error {
			c, err := e.Refresh(args[0])
			if err != nil {
				return err
			}
			var ports []publicPort
			if c.State.Running {
				for _, p := range containerPorts(c) {
					if p.PublicPort != 0 {
						ports = append(ports, p)
					}
				}
			}
			slices.SortFunc(ports, func(a, b publicPort) int {
				if a.PrivatePort != b.PrivatePort {
					return a.PrivatePort - b.PrivatePort
				}
				if a.Type != b.Type {
					return strings.Compare(a.Type, b.Type)
				}
				return strings.Compare(a.IP, b.IP)
			})
			out := cmd.OutOrStdout()
			if len(args) == 1 {
				for _, p := range ports {
					fmt.Fprintf(out, "%d/%s -> %s\n", p.PrivatePort, p.Type, net.JoinHostPort(p.IP, strconv.Itoa(p.PublicPort)))
				}
				return nil
			}
			port, proto, _ := strings.Cut(args[1], "/")
			if proto == "" {
				proto = "tcp"
			}
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return usageErr("invalid port %q: give a number from 1 to 65535, optionally with /tcp, /udp or /sctp", args[1])
			}
			switch proto {
			case "tcp", "udp", "sctp":
			default:
				return usageErr("invalid protocol %q: use tcp, udp or sctp", proto)
			}
			found := false
			for _, p := range ports {
				if p.PrivatePort == n && p.Type == proto {
					fmt.Fprintln(out, net.JoinHostPort(p.IP, strconv.Itoa(p.PublicPort)))
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no public port '%s/%s' published for %s", port, proto, args[0])
			}
			return nil
		}),
	}
}
