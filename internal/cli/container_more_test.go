package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/testutil"
)

// The tests of exec, attach, top, stats, cp and port drive the built
// binary as a user would, each over its own roots.

var berthBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testutil.MainWithBerth(m, &berthBin))
}

// newBerth gives a test an engine with a busybox image "bb" whose root
// has a symlink /evil -> /etc/passwd and a /data tree, and checks at the
// end that nothing of its containers is left on the host.
func newBerth(t *testing.T) *testutil.Berth {
	t.Helper()
	return testutil.NewEngine(t, berthBin, func(rootfs string) {
		for _, a := range []string{"tty", "stty", "ln", "seq"} {
			os.Symlink("busybox", filepath.Join(rootfs, "bin", a))
		}
		os.Symlink("/etc/passwd", filepath.Join(rootfs, "evil"))
		os.Symlink("../../../../../../../etc", filepath.Join(rootfs, "etcup"))
		os.MkdirAll(filepath.Join(rootfs, "data/sub"), 0o755)
		os.WriteFile(filepath.Join(rootfs, "data/a"), []byte("alpha\n"), 0o640)
		os.WriteFile(filepath.Join(rootfs, "data/sub/b"), []byte("beta\n"), 0o600)
		os.Chown(filepath.Join(rootfs, "data/a"), 1000, 2000)
	})
}

// runDetached starts a container and returns its ID.
func runDetached(t *testing.T, b *testutil.Berth, args ...string) string {
	t.Helper()
	return b.Must(append([]string{"run", "-d"}, args...)...)
}

func TestExecInheritsAndOverrides(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "c", "-e", "FOO=bar", "-w", "/tmp", "bb", "sleep", "1000")
	out := b.Must("exec", "c", "sh", "-c", `echo "$FOO|$(pwd)|$(id -u):$(id -g)|$HOME|$HOSTNAME"`)
	if !strings.HasPrefix(out, "bar|/tmp|0:0|/root|") || strings.HasSuffix(out, "|") {
		t.Errorf("inherited env/cwd/user: %q", out)
	}
	out = b.Must("exec", "-u", "app", "c", "id")
	if out != "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)" {
		t.Errorf("exec -u app: %q", out)
	}
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("FROMFILE=1\n"), 0o644)
	out = b.Must("exec", "-u", "1000:2000", "-w", "/", "-e", "FOO=baz", "--env-file", envFile, "c",
		"sh", "-c", `echo "$FOO|$FROMFILE|$(pwd)|$(id -u):$(id -g)|$HOME"`)
	if out != "baz|1|/|1000:2000|/home/app" {
		t.Errorf("overrides: %q", out)
	}
	if out := b.Must("exec", "-u", "4242", "c", "id", "-u"); out != "4242" {
		t.Errorf("a uid without a passwd entry: %q", out)
	}
	// Capabilities are the container's; --privileged gives them all.
	caps := func(args ...string) uint64 {
		out := b.Must(append([]string{"exec"}, append(args, "c", "grep", "CapEff", "/proc/self/status")...)...)
		n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(out, "CapEff:")), 16, 64)
		return n
	}
	if def, priv := caps(), caps("--privileged"); def&(1<<unix.CAP_SYS_ADMIN) != 0 || priv&(1<<unix.CAP_SYS_ADMIN) == 0 {
		t.Errorf("capabilities: default %x, privileged %x", def, priv)
	}

	// A container with a user of its own: exec runs as that user.
	runDetached(t, b, "--name", "u", "-u", "app", "bb", "sleep", "1000")
	if out := b.Must("exec", "u", "sh", "-c", `echo "$(id -u)|$HOME"`); out != "1000|/home/app" {
		t.Errorf("container user: %q", out)
	}
}

// TestExecUserOverridesContainerUser: exec -u wins over the container's
// own -u (the container's io.berth.user annotation is not re-applied to
// exec'd processes), and without -u exec runs as the container's user.
func TestExecUserOverridesContainerUser(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "u", "-u", "app", "bb", "sleep", "1000")
	if out := b.Must("exec", "u", "id", "-u"); out != "1000" {
		t.Errorf("exec in a -u app container: %q, want 1000", out)
	}
	if out := b.Must("exec", "u", "id", "-G"); out != "1000 2000" {
		t.Errorf("exec groups in a -u app container: %q, want 1000 2000", out)
	}
	out := b.Must("exec", "-u", "root", "u", "id", "-u")
	if out != "0" {
		t.Errorf("exec -u root in a -u app container: %q", out)
	}
}

func TestExecExitCodes(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "c", "bb", "sleep", "1000")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"c", "sh", "-c", "exit 7"}, 7, ""},
		{[]string{"c", "nope"}, 127, "executable file not found"},
		{[]string{"c", "/etc/passwd"}, 126, "permission denied"},
		{[]string{"c", "/tmp"}, 126, ""},
		{[]string{"-w", "/nonexistent", "c", "true"}, 126, "/nonexistent"},
		{[]string{"-u", "nosuchuser", "c", "true"}, 126, "unable to find user nosuchuser"},
		{[]string{"nosuchcontainer", "true"}, 1, "no such container"},
		{[]string{"c"}, 1, "requires"},
	} {
		out, errs, code := b.Run(append([]string{"exec"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("exec %v: exit %d (want %d)\nstdout %q\nstderr %q", tc.args, code, tc.code, out, errs)
		}
	}
	b.Must("stop", "-t", "0", "c")
	_, errs, code := b.Run("exec", "c", "true")
	if code != 1 || !strings.Contains(errs, "is not running") {
		t.Errorf("exec into a stopped container: exit %d, %q", code, errs)
	}
	b.Must("rm", "c")
}

func TestExecStdio(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "c", "bb", "sleep", "1000")
	out, _, code := b.RunInput(strings.NewReader("hello\n"), "exec", "-i", "c", "cat")
	if code != 0 || out != "hello\n" {
		t.Errorf("exec -i: %q, exit %d", out, code)
	}
	// Without -i, the process's stdin is empty, as Docker's.
	out, _, code = b.RunInput(strings.NewReader("hello\n"), "exec", "c", "cat")
	if code != 0 || out != "" {
		t.Errorf("exec without -i read our stdin: %q, exit %d", out, code)
	}
	out, errs, _ := b.Run("exec", "c", "sh", "-c", "echo out; echo err >&2")
	if out != "out\n" || errs != "err\n" {
		t.Errorf("stdout %q stderr %q", out, errs)
	}
	// -d returns at once; the process runs on, its output discarded.
	start := time.Now()
	if out := b.Must("exec", "-d", "c", "sh", "-c", "sleep 1; echo done > /tmp/detached"); out != "" {
		t.Errorf("exec -d printed %q", out)
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Error("exec -d waited for the process")
	}
	waitFor(t, "the detached exec", func() bool {
		out, _, _ := b.Run("exec", "c", "cat", "/tmp/detached")
		return out == "done\n"
	})
	// -d -t: the process has a terminal, kept open after we return.
	b.Must("exec", "-dt", "c", "sh", "-c", "tty > /tmp/dt; sleep 1")
	waitFor(t, "the detached exec with a terminal", func() bool {
		out, _, _ := b.Run("exec", "c", "cat", "/tmp/dt")
		return strings.HasPrefix(out, "/dev/pts/")
	})
}

// openPty returns a new pseudo-terminal's master and slave.
func openPty(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// terminalRun runs berth with a new terminal of rows x cols as its
// stdio, and returns a reader of what it printed and a wait function.
func terminalRun(t *testing.T, b *testutil.Berth, rows, cols uint16, args ...string) (*os.File, func() string, func() error) {
	t.Helper()
	m, s := openPty(t)
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
	cmd := b.Cmd(args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var mu sync.Mutex
	var out strings.Builder
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				close(done)
				return
			}
		}
	}()
	read := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	wait := func() error {
		err := cmd.Wait()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return err
	}
	return m, read, wait
}

// TestExecTTY: exec -it gives the process a real terminal with the
// user's window size, keystrokes reach it, and a resize reaches it too.
func TestExecTTY(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "c", "bb", "sleep", "1000")
	m, read, wait := terminalRun(t, b, 30, 100, "exec", "-it", "c", "sh", "-c",
		`tty; stty size; echo $TERM; read line; echo got:$line; read line; stty size; exit 3`)
	waitFor(t, "the window size", func() bool { return strings.Contains(read(), "30 100") })
	m.Write([]byte("hello\r"))
	waitFor(t, "the echo of the input", func() bool { return strings.Contains(read(), "got:hello") })
	unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120})
	time.Sleep(200 * time.Millisecond) // SIGWINCH reaches berth, which resizes the exec's terminal
	m.Write([]byte("\r"))
	err := wait()
	got := read()
	if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() != 3 {
		t.Errorf("exec -it exit: %v\n%s", err, got)
	}
	if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "xterm") || !strings.Contains(got, "40 120") {
		t.Errorf("terminal session: %q", got)
	}
}

func TestTop(t *testing.T) {
	b := newBerth(t)
	id := runDetached(t, b, "--name", "c", "bb", "sh", "-c", "sleep 1000 & exec sleep 999")
	pid := b.Must("inspect", "--format", "{{.State.Pid}}", "c")
	waitFor(t, "both processes", func() bool { out, _, _ := b.Run("top", "c"); return strings.Contains(out, "sleep 1000") })
	out := b.Must("top", "c")
	lines := strings.Split(out, "\n")
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "UID PID PPID C STIME TTY TIME CMD" {
		t.Errorf("header: %q", lines[0])
	}
	var found bool
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) >= 8 && f[1] == pid && f[0] == "root" && strings.Join(f[7:], " ") == "sleep 999" && f[5] == "?" {
			found = true
		}
	}
	if !found || len(lines) != 3 {
		t.Errorf("top of %s (pid %s):\n%s", id, pid, out)
	}
	out = b.Must("container", "top", "c", "-o", "pid,comm")
	if !strings.Contains(out, "PID") || !strings.Contains(out, pid) || !strings.Contains(out, "sleep") {
		t.Errorf("top -o pid,comm:\n%s", out)
	}
	if out := b.Must("top", "c", "aux"); !strings.HasPrefix(out, "USER") || !strings.Contains(out, "%MEM") {
		t.Errorf("top aux:\n%s", out)
	}
	if _, errs, code := b.Run("top", "c", "--sort"); code != 1 || !strings.Contains(errs, "not supported") {
		t.Errorf("unknown ps option: exit %d %q", code, errs)
	}
	b.Must("kill", "c")
	b.Must("wait", "c")
	if _, errs, code := b.Run("top", "c"); code != 1 || !strings.Contains(errs, "is not running") {
		t.Errorf("top of a stopped container: exit %d %q", code, errs)
	}
}

func TestStats(t *testing.T) {
	b := newBerth(t)
	// No network: NET I/O stays 0B (a bridge's IPv6 chatter would not).
	runDetached(t, b, "--name", "limited", "--network", "none", "-m", "64m", "bb", "sh", "-c", "sleep 1000 & sleep 1000 & wait")
	runDetached(t, b, "--name", "busy", "bb", "sh", "-c", "while :; do :; done")
	b.Must("create", "--name", "stopped", "bb", "true")
	out := b.Must("stats", "--no-stream")
	lines := strings.Split(out, "\n")
	if h := strings.Join(strings.Fields(lines[0]), " "); h != "CONTAINER ID NAME CPU % MEM USAGE / LIMIT MEM % NET I/O BLOCK I/O PIDS" {
		t.Errorf("header: %q", lines[0])
	}
	if len(lines) != 3 || strings.Contains(out, "stopped") {
		t.Errorf("stats shows the running containers:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		switch f[1] {
		case "limited":
			if f[5] != "64MiB" || f[len(f)-1] != "3" || f[7] != "0B" {
				t.Errorf("limited: %q", l)
			}
		case "busy":
			cpu, _ := strconv.ParseFloat(strings.TrimSuffix(f[2], "%"), 64)
			if cpu < 20 {
				t.Errorf("a busy loop at %v%% CPU: %q", cpu, l)
			}
		}
	}
	out = b.Must("stats", "--no-stream", "--format", "json", "limited")
	var row map[string]string
	if err := json.Unmarshal([]byte(out), &row); err != nil || row["Name"] != "limited" || row["PIDs"] != "3" || !strings.HasSuffix(row["MemUsage"], "/ 64MiB") {
		t.Errorf("json: %v %q", err, out)
	}
	out = b.Must("stats", "--no-stream", "-a", "--format", "table {{.Name}}\t{{.PIDs}}")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "stopped") {
		t.Errorf("stats -a --format table:\n%s", out)
	}
	if _, errs, code := b.Run("stats", "--no-stream", "nosuch"); code != 1 || !strings.Contains(errs, "no such container") {
		t.Errorf("stats of a missing container: exit %d %q", code, errs)
	}
}

// tarEntries lists an archive's entries as "name type mode uid:gid [content|link]".
func tarEntries(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		body, _ := io.ReadAll(tr)
		s := fmt.Sprintf("%s %c %o %d:%d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid)
		if h.Typeflag == tar.TypeSymlink {
			s += " " + h.Linkname
		} else if len(body) > 0 {
			s += " " + strings.TrimSpace(string(body))
		}
		out = append(out, s)
	}
}

func TestCpRunning(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "c", "bb", "sleep", "1000")
	testCp(t, b, "c") // the checks are there, shared with TestCpStopped
	if got := b.Must("inspect", "-f", "{{.State.Status}}", "c"); got != "running" {
		t.Errorf("cp disturbed the running container: %s", got)
	}
}

// TestCpStopped: cp works on a created and on an exited container (their
// root filesystem is mounted for the copy only, in a private namespace),
// and what it writes is in the container when it runs.
func TestCpStopped(t *testing.T) {
	b := newBerth(t)
	b.Must("create", "--name", "c", "bb", "sleep", "1000")
	testCp(t, b, "c")
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("from host\n"), 0o644)
	b.Must("cp", filepath.Join(host, "f"), "c:/tmp/f")
	b.Must("start", "c")
	if out := b.Must("exec", "c", "cat", "/tmp/f"); out != "from host" {
		t.Errorf("a file copied into the created container: %q", out)
	}
	b.Must("stop", "-t", "0", "c")
	b.Must("cp", filepath.Join(host, "f"), "c:/tmp/g")
	out := filepath.Join(host, "out")
	b.Must("cp", "c:/tmp/g", out)
	if data, _ := os.ReadFile(out); string(data) != "from host\n" {
		t.Errorf("round trip through an exited container: %q", data)
	}
}

func testCp(t *testing.T, b *testutil.Berth, c string) {
	t.Helper()
	host := t.TempDir()
	// Out of the container: a directory into an existing one, its
	// contents (DIR/.), a file under a new name, owned by us unless -a.
	b.Must("cp", c+":/data", host)
	if data, err := os.ReadFile(filepath.Join(host, "data/sub/b")); err != nil || string(data) != "beta\n" {
		t.Errorf("cp dir: %q %v", data, err)
	}
	if fi, err := os.Stat(filepath.Join(host, "data/a")); err != nil || fi.Mode().Perm() != 0o640 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("cp keeps modes, and files are the caller's: %v %v", fi.Mode(), err)
	}
	os.Mkdir(filepath.Join(host, "contents"), 0o755)
	b.Must("cp", c+":/data/.", filepath.Join(host, "contents"))
	if _, err := os.Stat(filepath.Join(host, "contents/sub/b")); err != nil {
		t.Errorf("cp DIR/.: %v", err)
	}
	b.Must("cp", "-a", c+":/data/a", filepath.Join(host, "renamed"))
	if fi, err := os.Stat(filepath.Join(host, "renamed")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 || fi.Sys().(*syscall.Stat_t).Gid != 2000 {
		t.Errorf("cp -a keeps owners: %v", err)
	}
	if _, errs, code := b.Run("cp", c+":/nonexistent", host); code != 1 || !strings.Contains(errs, "could not find the file /nonexistent") {
		t.Errorf("missing source: exit %d %q", code, errs)
	}
	if _, errs, code := b.Run("cp", c+":/data", filepath.Join(host, "renamed")); code != 1 || !strings.Contains(errs, "cannot copy a directory to a file") {
		t.Errorf("directory onto a file: exit %d %q", code, errs)
	}

	// Symlinks resolve inside the container: /evil -> /etc/passwd is the
	// container's passwd (with user app), never the host's.
	b.Must("cp", c+":/evil", filepath.Join(host, "evil"))
	if l, err := os.Readlink(filepath.Join(host, "evil")); err != nil || l != "/etc/passwd" {
		t.Errorf("cp of a symlink copies the link: %q %v", l, err)
	}
	b.Must("cp", "-L", c+":/evil", filepath.Join(host, "evil-followed"))
	if data, _ := os.ReadFile(filepath.Join(host, "evil-followed")); !strings.Contains(string(data), "app:x:1000") {
		t.Errorf("cp -L of /evil is not the container's passwd: %q", data)
	}
	b.Must("cp", c+":/etcup/passwd", filepath.Join(host, "up"))
	if data, _ := os.ReadFile(filepath.Join(host, "up")); !strings.Contains(string(data), "app:x:1000") {
		t.Errorf("a climbing symlink left the container: %q", data)
	}

	// Into the container, through its symlinks: they land in it.
	os.WriteFile(filepath.Join(host, "marker"), []byte("marker\n"), 0o600)
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	b.Must("cp", filepath.Join(host, "marker"), c+":/etcup/")
	b.Must("cp", filepath.Join(host, "marker"), c+":/evil")
	if now, _ := os.ReadFile("/etc/passwd"); !bytes.Equal(now, hostPasswd) {
		t.Fatal("cp into a container changed the host's /etc/passwd")
	}
	if _, err := os.Stat("/etc/marker"); err == nil {
		t.Fatal("cp into a container wrote the host's /etc")
	}
	var check bytes.Buffer
	cmd := b.Cmd("cp", c+":/etc/.", "-")
	cmd.Stdout = &check
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	entries := strings.Join(tarEntries(t, &check), "\n")
	if !strings.Contains(entries, "marker 0 600 0:0 marker") || !strings.Contains(entries, "passwd 0 600 0:0 marker") {
		t.Errorf("the container's /etc after the copies:\n%s", entries)
	}

	// Directories into the container: into an existing one, and as a new one.
	os.MkdirAll(filepath.Join(host, "tree/x"), 0o755)
	os.WriteFile(filepath.Join(host, "tree/x/y"), []byte("why\n"), 0o644)
	os.Chown(filepath.Join(host, "tree/x/y"), 1234, 5678)
	b.Must("cp", filepath.Join(host, "tree"), c+":/tmp")
	b.Must("cp", filepath.Join(host, "tree")+"/.", c+":/newdir")
	var out bytes.Buffer
	cmd = b.Cmd("cp", c+":/tmp/tree", "-")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tarEntries(t, &out), "\n"); got != "tree/ 5 755 0:0\ntree/x/ 5 755 0:0\ntree/x/y 0 644 1234:5678 why" {
		t.Errorf("tree in the container (cp keeps owners):\n%s", got)
	}
	out.Reset()
	cmd = b.Cmd("cp", c+":/newdir/x/y", "-")
	cmd.Stdout = &out
	cmd.Run()
	if got := tarEntries(t, &out); len(got) != 1 || got[0] != "y 0 644 1234:5678 why" {
		t.Errorf("SRC/. onto a new directory: %v", got)
	}
	if _, errs, code := b.Run("cp", filepath.Join(host, "marker"), c+":/nodir/x"); code != 1 || !strings.Contains(errs, "could not find") {
		t.Errorf("into a missing directory: exit %d %q", code, errs)
	}

	// A tar stream on stdin, and one with an entry that climbs out.
	in := tarOf(t, &tar.Header{Name: "streamed/", Typeflag: tar.TypeDir, Mode: 0o700},
		&tar.Header{Name: "streamed/s", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 7, Gid: 8})
	if _, errs, code := b.RunInput(in, "cp", "-", c+":/tmp"); code != 0 {
		t.Fatalf("cp - : %s", errs)
	}
	out.Reset()
	cmd = b.Cmd("cp", c+":/tmp/streamed", "-")
	cmd.Stdout = &out
	cmd.Run()
	if got := strings.Join(tarEntries(t, &out), "\n"); got != "streamed/ 5 700 0:0\nstreamed/s 0 640 7:8 content" {
		t.Errorf("streamed:\n%s", got)
	}
	bad := tarOf(t, &tar.Header{Name: "../../escaped", Typeflag: tar.TypeReg, Mode: 0o644})
	if _, _, code := b.RunInput(bad, "cp", "-", c+":/tmp"); code != 1 {
		t.Errorf("an entry climbing out of the destination: exit %d", code)
	}
	if _, errs, code := b.RunInput(strings.NewReader(""), "cp", "-", c+":/evil"); code != 1 || !strings.Contains(errs, "must be a directory") {
		t.Errorf("cp - onto a file: exit %d %q", code, errs)
	}
	if _, errs, code := b.Run("cp", c+":/tmp", c+":/tmp"); code != 1 || !strings.Contains(errs, "between containers") {
		t.Errorf("container to container: exit %d %q", code, errs)
	}
}

// tarOf builds an archive; regular files hold "content".
func tarOf(t *testing.T, entries ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len("content"))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("content"))
		}
	}
	tw.Close()
	return &buf
}

func TestAttach(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "a", "bb", "sh", "-c", "sleep 1; for i in 1 2; do echo out$i; echo err$i >&2; done; exit 5")
	out, errs, code := b.Run("attach", "a")
	if code != 5 || out != "out1\nout2\n" || errs != "err1\nerr2\n" {
		t.Errorf("attach: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, errs, code := b.Run("attach", "a"); code != 1 || !strings.Contains(errs, "cannot attach to a stopped container") {
		t.Errorf("attach to a stopped container: exit %d %q", code, errs)
	}
	// Stdin goes to a container started with -i.
	runDetached(t, b, "-i", "--name", "i", "bb", "sh", "-c", "read x; echo got $x; exit 2")
	if out, _, code := b.RunInput(strings.NewReader("hello\n"), "attach", "i"); code != 2 || out != "got hello\n" {
		t.Errorf("attach with stdin: exit %d %q", code, out)
	}
	// Signals go to the container (--sig-proxy, the default).
	runDetached(t, b, "--name", "s", "bb", "sh", "-c", "trap 'echo term; exit 9' TERM; while :; do sleep 1; done")
	cmd := b.Cmd("attach", "s")
	var sout bytes.Buffer
	cmd.Stdout = &sout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() != 9 || sout.String() != "term\n" {
		t.Errorf("attach --sig-proxy: %v, %q", err, sout.String())
	}
}

// TestAttachTTYDetach: with a terminal, ctrl-p ctrl-q detaches and the
// container runs on.
func TestAttachTTYDetach(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "-it", "--name", "t", "bb", "sh")
	m, read, wait := terminalRun(t, b, 24, 80, "attach", "t")
	time.Sleep(300 * time.Millisecond)
	m.Write([]byte("echo hi-$((40+2))\r"))
	waitFor(t, "the shell's answer", func() bool { return strings.Contains(read(), "hi-42") })
	m.Write([]byte{0x10, 0x11})
	if err := wait(); err != nil {
		t.Errorf("detach: %v\n%q", err, read())
	}
	if st := b.Must("inspect", "--format", "{{.State.Status}}", "t"); st != "running" {
		t.Errorf("after detach the container is %s", st)
	}
}

func TestPort(t *testing.T) {
	b := newBerth(t)
	b.Must("create", "--name", "p", "bb", "true")
	if out, _, code := b.Run("port", "p"); code != 0 || out != "" {
		t.Errorf("port without published ports: exit %d %q", code, out)
	}
	if _, errs, code := b.Run("container", "port", "p", "80"); code != 1 || !strings.Contains(errs, "no public port '80/tcp' published for p") {
		t.Errorf("port 80: exit %d %q", code, errs)
	}
	if _, errs, code := b.Run("port", "p", "53/udp"); code != 1 || !strings.Contains(errs, "'53/udp'") {
		t.Errorf("port 53/udp: exit %d %q", code, errs)
	}
	if _, _, code := b.Run("port", "nosuch"); code != 1 {
		t.Errorf("port of a missing container: exit %d", code)
	}
	// Published ports, host ports chosen by berth.
	runDetached(t, b, "--name", "q", "-p", "80", "-p", "127.0.0.1::53/udp", "bb", "sleep", "100")
	lines := strings.Split(b.Must("port", "q"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "53/udp -> 127.0.0.1:") || !strings.HasPrefix(lines[1], "80/tcp -> 0.0.0.0:") {
		t.Errorf("port q: %q", lines)
	}
	if got := b.Must("port", "q", "53/udp"); "53/udp -> "+got != lines[0] {
		t.Errorf("port q 53/udp: %q", got)
	}
	if _, errs, code := b.Run("port", "q", "53"); code != 1 || !strings.Contains(errs, "no public port '53/tcp' published for q") {
		t.Errorf("port q 53: exit %d %q", code, errs)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- unit tests of the verbs' parsing and formatting ----

func TestParsePsOptions(t *testing.T) {
	headers := func(args ...string) string {
		cols, err := parsePsOptions(args)
		if err != nil {
			return "error"
		}
		var h []string
		for _, c := range cols {
			h = append(h, c.header)
		}
		return strings.Join(h, " ")
	}
	for args, want := range map[string]string{
		"":                 "UID PID PPID C STIME TTY TIME CMD",
		"-ef":              "UID PID PPID C STIME TTY TIME CMD",
		"-e -f":            "UID PID PPID C STIME TTY TIME CMD",
		"aux":              "USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND",
		"-e":               "PID TTY TIME CMD",
		"-o pid,comm":      "PID COMMAND",
		"-eo pid,user=WHO": "PID WHO",
		"-opid,ppid,etime": "PID PPID ELAPSED",
		"o pid,pcpu":       "PID %CPU",
		"-o pid,nosuch":    "error",
		"--sort":           "error",
		"-Z":               "error",
		"-o":               "error",
	} {
		if got := headers(strings.Fields(args)...); got != want {
			t.Errorf("ps %s: %q, want %q", args, got, want)
		}
	}
}

func TestPsColumns(t *testing.T) {
	now := time.Date(2024, 6, 1, 12, 0, 0, 0, time.Local)
	p := &container.Process{PID: 5, PPID: 1, UID: 0, TTY: unix.Mkdev(136, 3), UTime: 6000, STime: 100,
		Started: now.Add(-2 * time.Hour), Comm: "sleep", Args: []string{"sleep", "1000"}, RSS: 4096 * 1024, State: "S"}
	var buf bytes.Buffer
	printTop(&buf, pick("user=UID", "pid", "ppid", "c", "stime", "tty=TTY", "time", "args=CMD", "etime"), []container.Process{*p}, now)
	f := strings.Fields(strings.Split(buf.String(), "\n")[1])
	want := []string{"root", "5", "1", "0", "10:00", "pts/3", "00:01:01", "sleep", "1000", "02:00:00"}
	if strings.Join(f, " ") != strings.Join(want, " ") {
		t.Errorf("row %q, want %q", f, want)
	}
	for nr, name := range map[uint64]string{0: "?", unix.Mkdev(136, 0): "pts/0", unix.Mkdev(137, 1): "pts/257", unix.Mkdev(4, 1): "tty1", unix.Mkdev(4, 65): "ttyS1"} {
		if got := ttyName(nr); got != name {
			t.Errorf("ttyName(%d:%d) = %q, want %q", unix.Major(nr), unix.Minor(nr), got, name)
		}
	}
	if cpuTime(26*time.Hour+61*time.Second) != "1-02:01:01" || elapsed(75*time.Second) != "01:15" || elapsed(3*time.Hour) != "03:00:00" {
		t.Error("time formats")
	}
	if startTime(now.Add(-48*time.Hour), now) != now.Add(-48*time.Hour).Format("Jan02") {
		t.Error("STIME of an older process")
	}
}

func TestEscapeReader(t *testing.T) {
	keys, err := parseDetachKeys("")
	if err != nil || !bytes.Equal(keys, []byte{16, 17}) {
		t.Fatalf("default keys %v %v", keys, err)
	}
	for in, want := range map[string]string{
		"abc":              "abc",
		"ab\x10c":          "ab\x10c",
		"ab\x10\x10\x11zz": "ab\x10",
		"ab\x10\x11zz":     "ab",
		"\x10":             "\x10",
	} {
		got, err := io.ReadAll(&escapeReader{r: strings.NewReader(in), keys: keys})
		detached := err == errDetach
		if string(got) != want || detached != strings.Contains(in, "\x10\x11") {
			t.Errorf("%q: got %q, detached %v (%v)", in, got, detached, err)
		}
	}
	if k, err := parseDetachKeys("ctrl-a,x,ctrl-@"); err != nil || !bytes.Equal(k, []byte{1, 'x', 0}) {
		t.Errorf("ctrl-a,x,ctrl-@: %v %v", k, err)
	}
	if _, err := parseDetachKeys("ctrl-1"); err == nil {
		t.Error("ctrl-1 accepted")
	}
}

func TestSplitCpArg(t *testing.T) {
	for arg, want := range map[string][2]string{
		"c:/tmp":     {"c", "/tmp"},
		"c:tmp":      {"c", "tmp"},
		"/abs:colon": {"", "/abs:colon"},
		"./rel:x":    {"", "./rel:x"},
		"local":      {"", "local"},
		"-":          {"", "-"},
		":x":         {"", ":x"},
	} {
		if c, p := splitCpArg(arg); c != want[0] || p != want[1] {
			t.Errorf("splitCpArg(%q) = %q, %q", arg, c, p)
		}
	}
}

func TestStatsFormatting(t *testing.T) {
	if bytesSize(0) != "0B" || bytesSize(64<<20) != "64MiB" || bytesSize(1536) != "1.5KiB" {
		t.Errorf("bytesSize: %s %s %s", bytesSize(0), bytesSize(64<<20), bytesSize(1536))
	}
	if humanSize3(0) != "0B" || humanSize3(20480) != "20.5kB" || humanSize3(1234567) != "1.23MB" {
		t.Errorf("humanSize3: %s %s", humanSize3(20480), humanSize3(1234567))
	}
	now := time.Now()
	prev := &container.Stats{ID: strings.Repeat("a", 64), Name: "n", Read: now, CPUNanos: 0}
	cur := &container.Stats{ID: prev.ID, Name: "n", Read: now.Add(time.Second), CPUNanos: 5e8, MemUsage: 1 << 20, MemLimit: 4 << 20, Pids: 2}
	r := makeStatsRow(prev, cur, false)
	if r.ID != strings.Repeat("a", 12) || r.CPUPerc != "50.00%" || r.MemUsage != "1MiB / 4MiB" || r.MemPerc != "25.00%" || r.PIDs != "2" || r.NetIO != "0B / 0B" {
		t.Errorf("row %+v", r)
	}
	render, err := statsRenderer(`table {{.Name}}\t{{.CPUPerc}}`)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	render(&buf, []statsRow{r})
	if got := buf.String(); got != "NAME      CPU %\nn         50.00%\n" {
		t.Errorf("table format: %q", got)
	}
	if _, err := statsRenderer("{{.Nope"); err == nil {
		t.Error("bad template accepted")
	}
}

// TestStatsLive: without --no-stream, stats redraws its table every
// second until interrupted, and Ctrl-C ends it cleanly.
func TestStatsLive(t *testing.T) {
	b := newBerth(t)
	runDetached(t, b, "--name", "live", "bb", "sleep", "1000")
	cmd := b.Cmd("stats", "live")
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "CONTAINER ID") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("stats after Ctrl-C: %v", err)
	}
	if got := out.String(); strings.Count(got, "CONTAINER ID") < 2 || !strings.Contains(got, "live") {
		t.Errorf("live stats did not redraw: %q", got)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
