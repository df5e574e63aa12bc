package reaper_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/testutil"
)

// berthBin is a static berth, as `make build` makes it: it is bind-mounted
// into busybox root filesystems, which have no dynamic loader. initBin is a
// symlink to it named berth-init.
var berthBin, initBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "berth-reaper-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		berthBin = filepath.Join(dir, "berth")
		build := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-extldflags -static",
			"-o", berthBin, "github.com/berth-dev/berth/cmd/berth")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build berth:", err)
			return 1
		}
		initBin = filepath.Join(dir, "berth-init")
		if err := os.Symlink("berth", initBin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the berth binary: skipped with -short")
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestOtherNamesUntouched: the constructor stays out of the way of berth.
func TestOtherNamesUntouched(t *testing.T) {
	needBinary(t)
	out, err := exec.Command(berthBin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Version:") {
		t.Fatalf("berth version: %v %q", err, out)
	}
}

// TestOnHost runs berth-init outside a container, where it is not PID 1 and
// works as a subreaper.
func TestOnHost(t *testing.T) {
	needBinary(t)
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, 2, "usage: berth-init [--] CMD [ARGS...]\n"},
		{"only dashes", []string{"--"}, 2, "usage: berth-init"},
		{"unknown option", []string{"-s", "true"}, 2, "unknown option -s"},
		{"exit code", []string{"--", "sh", "-c", "exit 7"}, 7, ""},
		{"without dashes", []string{"sh", "-c", "exit 5"}, 5, ""},
		{"not found", []string{"--", "no-such-command"}, 127, "berth-init: exec no-such-command: No such file or directory\n"},
		{"not executable", []string{"--", notExec}, 126, "berth-init: exec " + notExec + ": Permission denied\n"},
		{"killed", []string{"--", "sh", "-c", "kill -KILL $$"}, 128 + 9, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(initBin, tc.args...)
			cmd.Stderr = &stderr
			code := exitCode(t, cmd.Run())
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) || (tc.stderr == "" && stderr.Len() > 0) {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}

// bundle is one container's bundle and the state root berth runs it under.
type bundle struct {
	t               *testing.T
	dir, path, root string
}

func newBundle(t *testing.T) *bundle {
	t.Helper()
	testutil.RequiresRoot(t)
	needBinary(t)
	dir := t.TempDir()
	b := &bundle{t: t, dir: dir, path: filepath.Join(dir, "bundle"), root: filepath.Join(dir, "state")}
	if err := os.MkdirAll(b.path, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.BusyboxRootfs(t, b.path)
	t.Cleanup(func() {
		out, _ := exec.Command(berthBin, "runtime", "--root", b.root, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command(berthBin, "runtime", "--root", b.root, "delete", "--force", id).Run()
		}
	})
	return b
}

// spec writes config.json: args run under berth-init, bind-mounted as the
// engine mounts it, unless withInit is false.
func (b *bundle) spec(withInit bool, args ...string) {
	b.t.Helper()
	s := runtime.DefaultSpec()
	s.Process.Terminal = false
	s.Root.Readonly = false
	s.Process.Args = args
	if withInit {
		s.Process.Args = append([]string{"/sbin/berth-init", "--"}, args...)
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/sbin/berth-init", Type: "bind", Source: berthBin,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.path, "config.json"), data, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// command is `berth runtime --root <root> args...` in the bundle, its
// output in a file: a detached container would hold a pipe open.
func (b *bundle) command(out *os.File, args ...string) *exec.Cmd {
	cmd := exec.Command(berthBin, append([]string{"runtime", "--root", b.root}, args...)...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = b.path, out, out
	return cmd
}

func (b *bundle) output() *os.File {
	b.t.Helper()
	f, err := os.CreateTemp(b.dir, "out")
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { f.Close() })
	return f
}

// run runs the container in the foreground; it returns the exit code and
// everything berth and the container wrote.
func (b *bundle) run(id string) (int, string) {
	b.t.Helper()
	out := b.output()
	code := exitCode(b.t, b.command(out, "run", id).Run())
	data, _ := os.ReadFile(out.Name())
	return code, string(data)
}

func (b *bundle) must(args ...string) string {
	b.t.Helper()
	out := b.output()
	if err := b.command(out, args...).Run(); err != nil {
		data, _ := os.ReadFile(out.Name())
		b.t.Fatalf("berth runtime %v: %v: %s", args, err, data)
	}
	data, _ := os.ReadFile(out.Name())
	return string(data)
}

// initPid is the host pid of the container's first process.
func (b *bundle) initPid(id string) int {
	b.t.Helper()
	var st struct{ Pid int }
	if err := json.Unmarshal([]byte(b.must("state", id)), &st); err != nil || st.Pid <= 0 {
		b.t.Fatalf("state %s: %v pid %d", id, err, st.Pid)
	}
	return st.Pid
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestInContainer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"exit code", []string{"sh", "-c", "exit 7"}, 7, ""},
		{"not found", []string{"no-such-command"}, 127, "berth-init: exec no-such-command: No such file or directory\n"},
		{"not executable", []string{"/bin/notexec"}, 126, "berth-init: exec /bin/notexec: Permission denied\n"},
		{"killed", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9, ""},
		{"is pid 1", []string{"sh", "-c", "echo $PPID; readlink /proc/1/exe"}, 0, "1\n/sbin/berth-init\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t)
			if err := os.WriteFile(filepath.Join(b.path, "rootfs/bin/notexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			b.spec(true, tc.args...)
			code, out := b.run("c")
			if code != tc.code || !strings.Contains(out, tc.output) || (tc.output == "" && out != "") {
				t.Errorf("exit %d, output %q; want %d, %q", code, out, tc.code, tc.output)
			}
		})
	}
}

// TestForwardsSignals: `berth runtime kill` signals PID 1, berth-init, which
// passes the signal to the command.
func TestForwardsSignals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		code   int
		output string
	}{
		{"trapped", `trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.1; done`, 3, "ready\ngot TERM\n"},
		{"default action", `echo ready; exec sleep 1000`, 128 + int(syscall.SIGTERM), "ready\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t)
			b.spec(true, "sh", "-c", tc.script)
			out := b.output()
			cmd := b.command(out, "run", "sig")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			waitFor(t, "the container to start", func() bool {
				data, _ := os.ReadFile(out.Name())
				return strings.Contains(string(data), "ready")
			})
			b.must("kill", "sig", "TERM")
			select {
			case err := <-done:
				data, _ := os.ReadFile(out.Name())
				if code := exitCode(t, err); code != tc.code || string(data) != tc.output {
					t.Errorf("exit %d, output %q; want %d, %q", code, data, tc.code, tc.output)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatal("SIGTERM did not end the container")
			}
		})
	}
}

// orphans is a command that makes 1,000 orphans that exit at once: each
// `(sleep 0 &)` subshell leaves its sleep to the container's init. The
// spawner is itself orphaned, and the command's own process, sleep, never
// waits for anything, so every zombie in the container is PID 1's to reap.
var orphans = []string{"sh", "-c", `( (i=0; while [ $i -lt 1000 ]; do (sleep 0 &); i=$((i+1)); done; touch /tmp/spawned) & ); exec sleep 1000`}

// descendants counts pid's descendants, and the zombies among them, from
// the host's /proc.
func descendants(t *testing.T, pid int) (all, zombies int) {
	t.Helper()
	type proc struct {
		ppid   int
		zombie bool
	}
	procs := map[int]proc{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(rest) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(rest[1])
		procs[p] = proc{ppid: ppid, zombie: rest[0] == "Z"}
	}
	for _, pr := range procs {
		for a := pr.ppid; a > 1; a = procs[a].ppid {
			if a == pid {
				all++
				if pr.zombie {
					zombies++
				}
				break
			}
		}
	}
	return all, zombies
}

func TestReapsOrphans(t *testing.T) {
	for _, tc := range []struct {
		name     string
		withInit bool
	}{
		// The control: sleep as PID 1 reaps nothing, so the command really
		// leaves a thousand zombies behind.
		{"without init", false},
		{"with init", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBundle(t)
			b.spec(tc.withInit, orphans...)
			b.must("run", "-d", "z")
			pid := b.initPid("z")
			waitFor(t, "the orphans to be spawned", func() bool {
				_, err := os.Stat(filepath.Join(b.path, "rootfs/tmp/spawned"))
				return err == nil
			})
			if tc.withInit {
				// Every orphan goes, and nothing but the command stays.
				waitFor(t, "berth-init to reap the orphans", func() bool {
					all, _ := descendants(t, pid)
					return all == 1
				})
			} else {
				waitFor(t, "the zombies to pile up", func() bool {
					_, z := descendants(t, pid)
					return z >= 1000
				})
			}
			b.must("kill", "z", "KILL")
		})
	}
}
