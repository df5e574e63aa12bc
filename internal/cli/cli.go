package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/errdefs"
)

// exitError carries a process exit code out of a command without printing
// anything more (the container's own code for run/exec).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Execute runs the berth command line and returns the exit code. Invoked
// under the name "runc" or "berth-runc" (a symlink), berth behaves as
// `berth runtime`, so tools that exec a runc binary can drive it.
func Execute(args []string) int {
	root := newRootCommand()
	name := filepath.Base(os.Args[0])
	if name == "runc" || name == "berth-runc" {
		args = append([]string{"runtime"}, args...)
	}
	runtimeMode = len(args) > 0 && args[0] == "runtime"
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	logError(err)
	var ce codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitCodeFor(cmd, err)
}

// exitCodeFor is the exit code of a failed verb (cmd, when known), as
// the docker CLI gives it (checked against docker 20.10 on this
// project's machine): 125 for run, whose own failures must not pass for
// the container's exit code, for flag errors everywhere, and for create's
// invalid options (its RunE says so with a codeError); 1 for everything else (no such container, image,
// network, volume; a refused operation). Runtime verbs exit 1, as runc.
// Container exit codes travel as exitError and never reach here.
func exitCodeFor(cmd *cobra.Command, err error) int {
	if runtimeMode {
		return 1
	}
	var fe flagError
	switch {
	case errors.As(err, &fe):
		return 125
	case cmd == nil:
		return 1
	case cmd.Name() == "run":
		return 125
	}
	return 1
}

// flagError is a flag that did not parse (unknown, or a bad value): the
// docker CLI's usage error, exit 125 whatever the verb.
type flagError struct{ err error }

func (e flagError) Error() string { return e.err.Error() }
func (e flagError) Unwrap() error { return e.err }

var runtimeMode bool

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "A daemonless, Docker-compatible container engine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError{err} })
	root.PersistentFlags().StringVar(&engineRoot, "root", envOr("BERTH_ROOT", "/var/lib/berth"), "root directory of berth's persistent state")
	root.PersistentFlags().StringVar(&runRoot, "run-root", os.Getenv("BERTH_RUN_ROOT"), "directory of berth's run-time state: sockets, runtime state (default /run/berth, or <root>/run for another --root)")
	root.AddCommand(newVersionCommand(), newInfoCommand(), newRuntimeCommand())
	addImageCommands(root)
	addContainerCommands(root)
	addVolumeCommands(root)
	addRegistryCommands(root)
	addRegistryServeCommands(root)
	addRegistryGCCommands(root)
	addNetworkCommands(root)
	addNetworkDNSCommand(root)
	return root
}

// Logging for runtime verbs: runc writes errors to --log in text or JSON,
// and containerd reads the last line from there.
var (
	logFile   io.Writer
	logFormat = "text"
)

func logError(err error) {
	msg := userMessage(err)
	fmt.Fprintln(os.Stderr, "berth: "+msg)
	if logFile == nil {
		return
	}
	if logFormat == "json" {
		line, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().Format(time.RFC3339Nano)})
		fmt.Fprintln(logFile, string(line))
		return
	}
	fmt.Fprintf(logFile, "time=%q level=error msg=%q\n", time.Now().Format(time.RFC3339Nano), msg)
}

func logWarn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "berth: warning: "+msg)
	if logFile == nil {
		return
	}
	if logFormat == "json" {
		line, _ := json.Marshal(map[string]string{"level": "warning", "msg": msg, "time": time.Now().Format(time.RFC3339Nano)})
		fmt.Fprintln(logFile, string(line))
		return
	}
	fmt.Fprintf(logFile, "time=%q level=warning msg=%q\n", time.Now().Format(time.RFC3339Nano), msg)
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
}

// exactArgs is cobra.ExactArgs with a message that says what to pass.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%q needs %s (see %s --help)", cmd.CommandPath(), what, cmd.CommandPath())
		}
		return nil
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// pathMatch is path.Match, the pattern language of Docker's reference filter.
func pathMatch(pattern, name string) (bool, error) { return path.Match(pattern, name) }

// asJSONValue turns v into the generic value its JSON decodes to, so
// templates address fields by their JSON names, as Docker's inspect does.
func asJSONValue(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return v
	}
	return out
}

// userMessage is err's text without the trailing error class that the
// engine wraps for callers ("...: invalid argument"): the class decides
// the exit code, the rest of the line tells the user what to do.
func userMessage(err error) string {
	msg := err.Error()
	for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrAlreadyExists,
		errdefs.ErrConflict, errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrNotImplemented} {
		if errors.Is(err, class) {
			msg = strings.TrimSuffix(msg, ": "+class.Error())
		}
	}
	return msg
}
