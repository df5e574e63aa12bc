package container_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// These tests drive the built binary as a user would, each over its own
// roots, and check from outside (/proc, /sys/fs/cgroup, the run root).

var berthBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testutil.MainWithBerth(m, &berthBin))
}

// newBerth gives the test an engine with a busybox image "bb" and checks,
// at the end, that nothing of the test's containers is left on the host.
func newBerth(t *testing.T) *testutil.Berth {
	t.Helper()
	return testutil.NewEngine(t, berthBin, func(rootfs string) {
		for _, a := range []string{"tty", "stty", "seq"} {
			os.Symlink("busybox", filepath.Join(rootfs, "bin", a))
		}
	})
}

func monitorsOf(b *testutil.Berth) []int { return b.Monitors() }

func TestRunForeground(t *testing.T) {
	b := newBerth(t)
	out, errs, code := b.Run("run", "--name", "fg", "bb", "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || errs != "err\n" || code != 3 {
		t.Fatalf("run: stdout %q stderr %q code %d", out, errs, code)
	}
	if got := b.Must("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "fg"); got != "exited 3" {
		t.Errorf("inspect after exit: %q", got)
	}
	out, _, code = b.Run("run", "--rm", "bb", "echo", "gone")
	if out != "gone\n" || code != 0 {
		t.Fatalf("run --rm: %q %d", out, code)
	}
	if ids := b.Must("ps", "-aq"); len(strings.Fields(ids)) != 1 {
		t.Errorf("run --rm left a container: ps -a shows %q", ids)
	}
	// stdin with -i reaches the process and its end closes it.
	out, _, code = b.RunInput(strings.NewReader("piped\n"), "run", "--rm", "-i", "bb", "cat")
	if out != "piped\n" || code != 0 {
		t.Errorf("run -i: %q %d", out, code)
	}
}

func TestImageConfigAndOptions(t *testing.T) {
	b := newBerth(t)
	out := b.Must("run", "--rm", "-e", "FOO=bar", "-w", "/tmp", "--hostname", "box", "-u", "1000:1000",
		"bb", "sh", "-c", `echo $FOO $(pwd) $(hostname) $(id -u):$(id -g)`)
	if out != "bar /tmp box 1000:1000" {
		t.Errorf("env/workdir/hostname/user: %q", out)
	}
	// A user name resolves in the image's own /etc/passwd, with its
	// groups, and sets HOME.
	out = b.Must("run", "--rm", "-u", "app", "bb", "sh", "-c", `echo $(id -u) $(id -g) $(id -G) $HOME`)
	if out != "1000 1000 1000 2000 /home/app" {
		t.Errorf("-u app: %q", out)
	}
	if _, errs, code := b.Run("run", "--rm", "-u", "nosuch", "bb", "true"); code == 0 || !strings.Contains(errs, "nosuch") {
		t.Errorf("-u nosuch: code %d, %q", code, errs)
	}
	// --entrypoint drops the image's command; arguments follow.
	if out := b.Must("run", "--rm", "--entrypoint", "echo", "bb", "a", "b"); out != "a b" {
		t.Errorf("--entrypoint: %q", out)
	}
	// --read-only root, with a writable --tmpfs.
	out, _, code := b.Run("run", "--rm", "--read-only", "--tmpfs", "/scratch", "bb", "sh", "-c",
		"touch /x 2>/dev/null && echo wrote-root; touch /scratch/y && echo wrote-tmpfs")
	if code != 0 || out != "wrote-tmpfs\n" {
		t.Errorf("--read-only/--tmpfs: %q code %d", out, code)
	}
	// A bind mount, read-only.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("host\n"), 0o644)
	out, _, code = b.Run("run", "--rm", "-v", dir+":/data:ro", "bb", "sh", "-c", "cat /data/f; echo x > /data/g || echo refused")
	if code != 0 || out != "host\nrefused\n" {
		t.Errorf("-v ro: %q code %d", out, code)
	}
	// Labels, as ps filters see them.
	id := b.Must("create", "-l", "tier=web", "--name", "labelled", "bb", "true")
	if got := b.Must("ps", "-aq", "--no-trunc", "--filter", "label=tier=web"); got != id {
		t.Errorf("ps --filter label: %q, want %q", got, id)
	}
	if got := b.Must("ps", "-a", "--filter", "name=label", "--format", "{{.Names}} {{.State}}"); got != "labelled created" {
		t.Errorf("ps --format: %q", got)
	}
}

func TestExitCodesAndBadInput(t *testing.T) {
	b := newBerth(t)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"run", "--rm", "bb", "nosuchcmd"}, 127, "nosuchcmd"},
		{[]string{"run", "--rm", "bb", "/etc/passwd"}, 126, "permission denied"},
		{[]string{"run", "--rm", "--pull", "never", "nosuchimage"}, 125, "No such image: nosuchimage"},
		{[]string{"run", "--rm", "--bogus", "bb"}, 125, "unknown flag"},
		{[]string{"run", "--rm", "-m", "12zz", "bb", "true"}, 125, "--memory"},
		{[]string{"run", "--rm", "-v", "/no/such/dir:/x", "bb", "true"}, 125, "does not exist"},
		{[]string{"run", "--rm", "--restart", "always", "bb", "true"}, 125, "--restart"},
	}
	for _, c := range cases {
		_, errs, code := b.Run(c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("berth %s: code %d, stderr %q; want %d and one line with %q", strings.Join(c.args, " "), code, errs, c.code, c.msg)
		}
	}
	if _, err := os.Stat("/no/such/dir"); err == nil {
		t.Errorf("a missing bind source was created")
	}
	if ids := b.Must("ps", "-aq"); ids != "" {
		t.Errorf("failed runs left containers: %q", ids)
	}
	// A name in use, rm of a running container.
	b.Must("run", "-d", "--name", "taken", "bb", "sleep", "100")
	if _, errs, code := b.Run("run", "-d", "--name", "taken", "bb", "true"); code != 125 || !strings.Contains(errs, "already in use") {
		t.Errorf("name in use: %d %q", code, errs)
	}
	if _, errs, code := b.Run("rm", "taken"); code != 1 || !strings.Contains(errs, "stop the container") {
		t.Errorf("rm running: %d %q", code, errs)
	}
	if _, errs, code := b.Run("stop", "nosuch"); code != 1 || !strings.Contains(errs, "no such container") {
		t.Errorf("stop missing: %d %q", code, errs)
	}
	b.Must("rm", "-f", "taken")
	// A failed start without --rm leaves the container created, with the
	// error recorded, as Docker does.
	if _, _, code := b.Run("run", "--name", "broken", "bb", "nosuchcmd"); code != 127 {
		t.Errorf("run nosuchcmd: %d", code)
	}
	if got := b.Must("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "broken"); got != "created 127" {
		t.Errorf("after failed start: %q", got)
	}
}

func TestDetachedLifecycle(t *testing.T) {
	b := newBerth(t)
	id := b.Must("run", "-d", "--name", "ticker", "--init", "bb", "sh", "-c",
		`trap 'echo got TERM; exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done`)
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-hex ID", id)
	}
	waitFor(t, "two log lines", func() bool { return strings.Count(b.Must("logs", "ticker"), "\n") >= 1 })
	if got := b.Must("ps", "--format", "{{.ID}} {{.Names}} {{.State}}"); got != id[:12]+" ticker running" {
		t.Errorf("ps: %q", got)
	}
	// Prefix lookup by ID.
	if got := b.Must("inspect", "-f", "{{.Name}}", id[:6]); got != "/ticker" {
		t.Errorf("inspect by prefix: %q", got)
	}
	if got := b.Must("logs", "--tail", "1", "ticker"); !strings.HasPrefix(got, "line ") {
		t.Errorf("logs --tail 1: %q", got)
	}
	if got := b.Must("logs", "-t", "--tail", "1", "ticker"); !strings.Contains(got, "Z line ") {
		t.Errorf("logs -t: %q", got)
	}
	b.Must("pause", "ticker")
	if got := b.Must("inspect", "-f", "{{.State.Status}}", "ticker"); got != "paused" {
		t.Errorf("after pause: %q", got)
	}
	b.Must("unpause", "ticker")
	b.Must("rename", "ticker", "tocker")
	start := time.Now()
	b.Must("stop", "-t", "20", "tocker")
	if time.Since(start) > 15*time.Second {
		t.Errorf("stop waited for the timeout: the TERM did not reach the process")
	}
	if got := b.Must("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "tocker"); got != "exited 0" {
		t.Errorf("after stop: %q", got)
	}
	if !strings.Contains(b.Must("logs", "tocker"), "got TERM") {
		t.Errorf("the trap's output is not in the log")
	}
	if got := b.Must("wait", "tocker"); got != "0" {
		t.Errorf("wait on exited: %q", got)
	}
	// kill -s delivers the signal named.
	b.Must("start", "tocker")
	b.Must("kill", "-s", "TERM", "tocker")
	if got := b.Must("wait", "tocker"); got != "0" {
		t.Errorf("wait after kill -s TERM: %q, want the trap's 0", got)
	}
	if n := strings.Count(b.Must("logs", "tocker"), "got TERM"); n != 2 {
		t.Errorf("the trap ran %d times, want 2 (stop, kill -s TERM)", n)
	}
	// start again, then kill: 137.
	b.Must("start", "tocker")
	b.Must("kill", "tocker")
	if got := b.Must("wait", "tocker"); got != "137" {
		t.Errorf("wait after kill: %q", got)
	}
	// --stop-timeout is the default wait of stop.
	b.Must("run", "-d", "--name", "quick", "--stop-timeout", "1", "bb", "sleep", "100")
	begin := time.Now()
	b.Must("stop", "quick")
	if d := time.Since(begin); d > 8*time.Second {
		t.Errorf("stop of a --stop-timeout 1 container took %v (the 10 s default?)", d)
	}
	if got := b.Must("inspect", "-f", "{{.State.ExitCode}} {{.Config.StopTimeout}}", "quick"); got != "137 1" {
		t.Errorf("after stop with --stop-timeout 1: %q", got)
	}
	b.Must("rm", "quick")
	// A process that ignores TERM is killed after -t: 137.
	b.Must("run", "-d", "--name", "stubborn", "bb", "sleep", "100")
	b.Must("stop", "-t", "1", "stubborn")
	if got := b.Must("inspect", "-f", "{{.State.ExitCode}}", "stubborn"); got != "137" {
		t.Errorf("stop of a TERM-ignoring PID 1: %q, want 137", got)
	}
	b.Must("restart", "-t", "1", "stubborn")
	if got := b.Must("inspect", "-f", "{{.State.Status}}", "stubborn"); got != "running" {
		t.Errorf("after restart: %q", got)
	}
	out := b.Must("container", "prune", "-f")
	if !strings.Contains(out, id) || strings.Contains(out, "stubborn") {
		t.Errorf("container prune: %q", out)
	}
	b.Must("rm", "-f", "stubborn")
}

func TestInspectShape(t *testing.T) {
	b := newBerth(t)
	b.Must("create", "--name", "shape", "-m", "64m", "--restart", "on-failure:3", "bb", "sleep", "1")
	var got []map[string]any
	if err := json.Unmarshal([]byte(b.Must("inspect", "shape")), &got); err != nil || len(got) != 1 {
		t.Fatalf("inspect is not a JSON array of one: %v", err)
	}
	for _, k := range []string{"Id", "Created", "Path", "Args", "State", "Image", "Name", "HostConfig", "Config", "Mounts", "LogPath", "GraphDriver", "NetworkSettings"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("inspect lacks %s", k)
		}
	}
	hc := got[0]["HostConfig"].(map[string]any)
	if hc["Memory"].(float64) != 64<<20 || hc["RestartPolicy"].(map[string]any)["MaximumRetryCount"].(float64) != 3 {
		t.Errorf("HostConfig: %v", hc)
	}
}

func TestRestartPolicy(t *testing.T) {
	b := newBerth(t)
	b.Must("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "bb", "sh", "-c", "echo run; exit 1")
	waitFor(t, "the retries to end", func() bool {
		return b.Must("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "flaky") == "exited 2"
	})
	if n := strings.Count(b.Must("logs", "flaky"), "run"); n != 3 {
		t.Errorf("ran %d times, want 3 (1 + 2 restarts)", n)
	}
	// always restarts until stopped, and stop ends it for good.
	b.Must("run", "-d", "--name", "loop", "--restart", "always", "bb", "sh", "-c", "sleep 0.1; exit 0")
	waitFor(t, "a restart", func() bool {
		n, _ := strconv.Atoi(b.Must("inspect", "-f", "{{.RestartCount}}", "loop"))
		return n >= 2
	})
	b.Must("stop", "-t", "1", "loop")
	time.Sleep(500 * time.Millisecond)
	if got := b.Must("inspect", "-f", "{{.State.Status}}", "loop"); got != "exited" {
		t.Errorf("always after stop: %q", got)
	}
}

func TestCgroupLimits(t *testing.T) {
	b := newBerth(t)
	id := b.Must("run", "-d", "-m", "64m", "--memory-swap", "96m", "--pids-limit", "50", "--cpus", "0.5",
		"--cpu-shares", "512", "--cpuset-cpus", "0", "bb", "sleep", "100")
	pid := b.Must("inspect", "-f", "{{.State.Pid}}", id)
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(cg), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch f[1] {
		case "memory":
			checkFile(t, "/sys/fs/cgroup/memory"+f[2]+"/memory.limit_in_bytes", strconv.Itoa(64<<20))
			if _, err := os.Stat("/sys/fs/cgroup/memory" + f[2] + "/memory.memsw.limit_in_bytes"); err == nil {
				checkFile(t, "/sys/fs/cgroup/memory"+f[2]+"/memory.memsw.limit_in_bytes", strconv.Itoa(96<<20))
			}
		case "pids":
			checkFile(t, "/sys/fs/cgroup/pids"+f[2]+"/pids.max", "50")
		case "cpu,cpuacct":
			checkFile(t, "/sys/fs/cgroup/cpu,cpuacct"+f[2]+"/cpu.cfs_quota_us", "50000")
			checkFile(t, "/sys/fs/cgroup/cpu,cpuacct"+f[2]+"/cpu.shares", "512")
		case "cpuset":
			checkFile(t, "/sys/fs/cgroup/cpuset"+f[2]+"/cpuset.cpus", "0")
		}
	}
	b.Must("rm", "-f", id)
	if _, err := os.Stat("/sys/fs/cgroup/memory/berth/" + id); err == nil {
		t.Errorf("the container's cgroup is left after rm -f")
	}
}

func checkFile(t *testing.T, path, want string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if got := strings.TrimSpace(string(data)); got != want {
		t.Errorf("%s = %s, want %s", path, got, want)
	}
}

// TestMonitorKilled: kill -9 of a container's monitor leaves the container
// running and manageable.
func TestMonitorKilled(t *testing.T) {
	b := newBerth(t)
	id := b.Must("run", "-d", "bb", "sleep", "100")
	mons := monitorsOf(b)
	if len(mons) != 1 {
		t.Fatalf("monitors: %v", mons)
	}
	if err := syscallKill(mons[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the monitor to die", func() bool { return len(monitorsOf(b)) == 0 })
	if got := b.Must("ps", "-q"); got != id[:12] {
		t.Errorf("ps after the monitor died: %q", got)
	}
	b.Must("stop", "-t", "1", id)
	if got := b.Must("inspect", "-f", "{{.State.Status}}", id); got != "exited" {
		t.Errorf("after stop: %q", got)
	}
	b.Must("rm", id)
}

// TestInitReapsZombies: with --init, a process that orphans a thousand
// children leaves no zombie; without it, they pile up under sleep as PID 1.
func TestInitReapsZombies(t *testing.T) {
	b := newBerth(t)
	script := `i=0; while [ $i -lt 1000 ]; do (sleep 0 &) ; i=$((i+1)); done; touch /tmp/spawned; exec sleep 100`
	count := func(init bool) int {
		args := []string{"run", "-d"}
		if init {
			args = append(args, "--init")
		}
		id := b.Must(append(args, "bb", "sh", "-c", script)...)
		defer b.Must("rm", "-f", id)
		pid, _ := strconv.Atoi(b.Must("inspect", "-f", "{{.State.Pid}}", id))
		waitFor(t, "the children to be spawned", func() bool {
			_, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/spawned", pid))
			return err == nil
		})
		time.Sleep(300 * time.Millisecond)
		return testutil.Zombies(pid)
	}
	if n := count(true); n != 0 {
		t.Errorf("with --init: %d zombies", n)
	}
	if n := count(false); n < 900 {
		t.Logf("without --init: %d zombies (the control: sleep as PID 1 reaps nothing)", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLogRotationBounded: with max-size and max-file, the log keeps at
// most that much, in whole entries, newest last.
func TestLogRotationBounded(t *testing.T) {
	b := newBerth(t)
	id := b.Must("run", "-d", "--log-opt", "max-size=100k", "--log-opt", "max-file=2", "bb", "sh", "-c",
		`i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done`)
	b.Must("wait", id)
	logPath := b.Must("inspect", "-f", "{{.LogPath}}", id)
	var total int64
	for _, p := range []string{logPath, logPath + ".1", logPath + ".2"} {
		if fi, err := os.Stat(p); err == nil {
			total += fi.Size()
			if p == logPath+".2" {
				t.Errorf("max-file=2 kept a third file")
			}
		}
	}
	if total > 2*100_000+4096 {
		t.Errorf("log files hold %d bytes, more than max-size x max-file", total)
	}
	out := b.Must("logs", id)
	lines := strings.Split(out, "\n")
	if lines[len(lines)-1] != "line 19999" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
	// No gap inside what was kept.
	first, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "line "))
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", first+i) {
			t.Fatalf("line %d is %q, want line %d: a gap", i, l, first+i)
		}
	}
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func TestVolumes(t *testing.T) {
	b := newBerth(t)
	b.Must("run", "--rm", "-v", "data:/data", "bb", "sh", "-c", "echo kept > /data/f")
	if out := b.Must("run", "--rm", "-v", "data:/data:ro", "bb", "cat", "/data/f"); out != "kept" {
		t.Errorf("named volume content: %q", out)
	}
	if out := b.Must("volume", "ls", "-q"); out != "data" {
		t.Errorf("volume ls: %q", out)
	}
	// In use: rm refused; --mount syntax; anonymous volume removed with rm -v.
	id := b.Must("run", "-d", "--mount", "type=volume,source=data,target=/d", "-v", "/anon", "bb", "sleep", "100")
	if _, errs, code := b.Run("volume", "rm", "data"); code == 0 || !strings.Contains(errs, "in use") {
		t.Errorf("volume rm in use: %d %q", code, errs)
	}
	if n := len(strings.Fields(b.Must("volume", "ls", "-q"))); n != 2 {
		t.Errorf("volumes with an anonymous one: %d", n)
	}
	b.Must("rm", "-f", "-v", id)
	if out := b.Must("volume", "ls", "-q"); out != "data" {
		t.Errorf("after rm -v: %q", out)
	}
	b.Must("volume", "rm", "data")
	// The volume verbs through the binary: create with a label, inspect,
	// prune of unused anonymous and (with -a) named volumes.
	if out := b.Must("volume", "create", "--label", "k=v", "named"); out != "named" {
		t.Errorf("volume create: %q", out)
	}
	if out := b.Must("volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Labels.k}}", "named"); out != "named local v" {
		t.Errorf("volume inspect: %q", out)
	}
	anon := b.Must("volume", "create")
	if out := b.Must("volume", "prune", "-f"); !strings.Contains(out, anon) || strings.Contains(out, "named") {
		t.Errorf("volume prune: %q", out)
	}
	if out := b.Must("volume", "prune", "-f", "-a"); !strings.Contains(out, "named") {
		t.Errorf("volume prune -a: %q", out)
	}
	// --mount for binds and tmpfs too.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("bound\n"), 0o644)
	out := b.Must("run", "--rm", "--mount", "type=bind,source="+dir+",target=/b,readonly",
		"--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "bb", "sh", "-c", "cat /b/f; touch /b/x 2>/dev/null || echo ro; grep ' /t ' /proc/mounts | cut -d' ' -f3")
	if out != "bound\nro\ntmpfs" {
		t.Errorf("--mount bind,readonly and tmpfs: %q", out)
	}
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

// TestRunTTY: run -it gives the process a real terminal with the user's
// window size, and keystrokes reach it.
func TestRunTTY(t *testing.T) {
	b := newBerth(t)
	m, s := openPty(t)
	defer m.Close()
	if err := unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100}); err != nil {
		t.Fatal(err)
	}
	cmd := b.Cmd("run", "-it", "--rm", "bb", "sh", "-c", "tty; stty size; read line; echo got:$line")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var mu sync.Mutex
	var out strings.Builder
	read := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
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
	waitFor(t, "the prompt", func() bool { return strings.Contains(read(), "30 100") })
	m.Write([]byte("hello\r"))
	if err := cmd.Wait(); err != nil {
		t.Errorf("run -it: %v\n%s", err, out.String())
	}
	<-done
	got := read()
	if !strings.Contains(got, "/dev/pts/0") || !strings.Contains(got, "got:hello") {
		t.Errorf("terminal session: %q", got)
	}
}

// TestImageInUse: images verbs see the containers: rmi refuses an image a
// container uses, and the container keeps working without the tag.
func TestImageInUse(t *testing.T) {
	b := newBerth(t)
	b.Must("create", "--name", "holder", "bb", "echo", "still here")
	if got := b.Must("info", "--format", "{{.Containers}} {{.ContainersStopped}} {{.Images}}"); got != "1 1 1" {
		t.Errorf("info counts: %q", got)
	}
	if _, errs, code := b.Run("rmi", "bb"); code != 1 || !strings.Contains(errs, "holder") && !strings.Contains(errs, "container") {
		t.Errorf("rmi of a used image: %d %q", code, errs)
	}
	if out := b.Must("start", "-a", "holder"); out != "still here" {
		t.Errorf("start -a: %q", out)
	}
	b.Must("rm", "holder")
	b.Must("rmi", "bb")
}

// TestLogEscaping: whatever bytes a line holds, the monitor's JSON keeps
// them, and logs gives back what the container wrote.
func TestLogEscaping(t *testing.T) {
	b := newBerth(t)
	script := `printf 'q"b\\s\tt<&>\001\033[1mé\r\n'; printf 'no newline at the end'`
	id := b.Must("run", "-d", "bb", "sh", "-c", script)
	b.Must("wait", id)
	want := "q\"b\\s\tt<&>\x01\x1b[1mé\r\nno newline at the end"
	if got, _, _ := b.Run("logs", id); got != want {
		t.Errorf("logs = %q, want %q", got, want)
	}
	logPath := b.Must("inspect", "-f", "{{.LogPath}}", id)
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e struct{ Log, Stream, Time string }
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Stream != "stdout" {
			t.Errorf("not a json-file entry: %q (%v)", line, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("time %q: %v", e.Time, err)
		}
	}
}

func TestMoreRunFlags(t *testing.T) {
	b := newBerth(t)
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# comment\nFROM_FILE=yes\nOVER=file\n"), 0o644)
	out := b.Must("run", "--rm", "--env-file", envFile, "-e", "OVER=flag", "bb", "sh", "-c", "echo $FROM_FILE $OVER")
	if out != "yes flag" {
		t.Errorf("--env-file then -e: %q", out)
	}
	// Capabilities: drop one, add one; --privileged gets all.
	capEff := func(args ...string) uint64 {
		out := b.Must(append(append([]string{"run", "--rm"}, args...), "bb", "sh", "-c", "grep CapEff /proc/self/status")...)
		v, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(out, "CapEff:")), 16, 64)
		return v
	}
	const capChown, capNetAdmin, capSysAdmin = 1 << 0, 1 << 12, 1 << 21
	def := capEff()
	if def&capChown == 0 || def&capNetAdmin != 0 {
		t.Errorf("default caps %x", def)
	}
	if c := capEff("--cap-drop", "chown", "--cap-add", "NET_ADMIN"); c&capChown != 0 || c&capNetAdmin == 0 {
		t.Errorf("--cap-drop chown --cap-add NET_ADMIN: %x", c)
	}
	if c := capEff("--privileged"); c&capSysAdmin == 0 {
		t.Errorf("--privileged: %x", c)
	}
	// no-new-privileges, ulimit.
	if out := b.Must("run", "--rm", "--security-opt", "no-new-privileges", "bb", "sh", "-c", "grep NoNewPrivs /proc/self/status"); !strings.HasSuffix(out, "1") {
		t.Errorf("no-new-privileges: %q", out)
	}
	if out := b.Must("run", "--rm", "--ulimit", "nofile=512:1024", "bb", "sh", "-c", "ulimit -n; ulimit -Hn"); out != "512\n1024" {
		t.Errorf("--ulimit: %q", out)
	}
	// --network host sees the host's interfaces; none only lo; the
	// default, bridge, lo and eth0.
	if out := b.Must("run", "--rm", "--network", "none", "bb", "sh", "-c", "ls /sys/class/net"); out != "lo" {
		t.Errorf("--network none: %q", out)
	}
	hostIfs, _ := os.ReadDir("/sys/class/net")
	if out := b.Must("run", "--rm", "--network", "host", "bb", "sh", "-c", "ls /sys/class/net | wc -l"); out != strconv.Itoa(len(hostIfs)) {
		t.Errorf("--network host sees %s interfaces, the host has %d", out, len(hostIfs))
	}
	if out := b.Must("run", "--rm", "bb", "sh", "-c", "ls /sys/class/net"); out != "eth0\nlo" {
		t.Errorf("default network: %q", out)
	}
	// --stop-signal: stop sends it.
	id := b.Must("run", "-d", "--stop-signal", "USR1", "bb", "sh", "-c", `trap 'echo usr1; exit 5' USR1; while true; do sleep 0.05; done`)
	waitFor(t, "the trap", func() bool { return b.Must("inspect", "-f", "{{.State.Status}}", id) == "running" })
	time.Sleep(200 * time.Millisecond)
	b.Must("stop", "-t", "10", id)
	if got := b.Must("inspect", "-f", "{{.State.ExitCode}}", id); got != "5" {
		t.Errorf("--stop-signal USR1: exit %q, want 5", got)
	}
	// --pull never with a missing image; ps -n and --no-trunc.
	if _, errs, code := b.Run("run", "--pull", "never", "nosuch", "true"); code != 125 || !strings.Contains(errs, "nosuch") {
		t.Errorf("--pull never: %d %q", code, errs)
	}
	b.Must("create", "--name", "newest", "bb", "true")
	if got := b.Must("ps", "-n", "1", "--format", "{{.Names}}"); got != "newest" {
		t.Errorf("ps -n 1: %q", got)
	}
	if got := b.Must("ps", "-a", "-q", "--no-trunc", "--filter", "status=created"); len(got) != 64 {
		t.Errorf("ps --no-trunc --filter status=created: %q", got)
	}
	if got := b.Must("ps", "-a", "-q", "--filter", "ancestor=bb"); len(strings.Fields(got)) != 2 {
		t.Errorf("ps --filter ancestor=bb: %q", got)
	}
	if got := b.Must("ps", "-a", "-s", "--filter", "name=newest"); !strings.Contains(got, "SIZE") || !strings.Contains(got, "virtual") {
		t.Errorf("ps -s: %q", got)
	}
}

func TestLogsSinceUntilFollow(t *testing.T) {
	b := newBerth(t)
	id := b.Must("run", "-d", "bb", "sh", "-c", "echo first; sleep 1.2; echo second; sleep 1.2; echo third")
	// -f follows until the container exits.
	cmd := b.Cmd("logs", "-f", id)
	out, err := cmd.Output()
	if err != nil || string(out) != "first\nsecond\nthird\n" {
		t.Fatalf("logs -f: %q %v", out, err)
	}
	ts := b.Must("logs", "-t", id)
	lines := strings.Split(ts, "\n")
	second := strings.Fields(lines[1])[0]
	if got := b.Must("logs", "--since", second, id); got != "second\nthird" {
		t.Errorf("--since %s: %q", second, got)
	}
	if got := b.Must("logs", "--until", second, id); got != "first\nsecond" {
		t.Errorf("--until %s: %q", second, got)
	}
	if got := b.Must("logs", "--tail", "0", id); got != "" {
		t.Errorf("--tail 0: %q", got)
	}
}

// TestImageConfigHonoured: the image's Entrypoint/Cmd, Env, WorkingDir,
// User, Volumes (anonymous volumes, filled from the image), StopSignal,
// Labels and ExposedPorts reach the container.
func TestImageConfigHonoured(t *testing.T) {
	b := newBerth(t)
	rootfs := testutil.BusyboxRootfs(t, t.TempDir())
	os.MkdirAll(filepath.Join(rootfs, "data"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "data", "seed"), []byte("from the image\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\nsvc:x:500:500::/srv:/bin/sh\n"), 0o644)
	var tarball strings.Builder
	if err := testutil.TarDir(&tarball, rootfs); err != nil {
		t.Fatal(err)
	}
	b.Must("rmi", "bb") // the test's own image replaces it
	_, errs, code := b.RunInput(strings.NewReader(tarball.String()), "import",
		"--change", `ENTRYPOINT ["sh", "-c"]`, "--change", `CMD ["echo default $GREETING from $(pwd) as $(id -u); cat /data/seed"]`,
		"--change", "ENV GREETING=hi", "--change", "WORKDIR /tmp", "--change", "USER svc",
		"--change", "VOLUME /data", "--change", "STOPSIGNAL SIGUSR2", "--change", "LABEL tier=db",
		"--change", "EXPOSE 5432", "-", "cfg:1")
	if code != 0 {
		t.Fatalf("import: %s", errs)
	}
	id := b.Must("create", "cfg:1")
	if got := b.Must("start", "-a", id); got != "default hi from /tmp as 500\nfrom the image" {
		t.Errorf("image config: %q", got)
	}
	got := b.Must("inspect", "-f", `{{.Config.StopSignal}} {{index .Config.Labels "tier"}} {{len .Config.ExposedPorts}} {{len .Mounts}} {{(index .Mounts 0).Type}}`, id)
	if got != "SIGUSR2 db 1 1 volume" {
		t.Errorf("inspect: %q", got)
	}
	// Arguments replace Cmd and keep the Entrypoint.
	if got := b.Must("run", "--rm", "cfg:1", "echo replaced"); got != "replaced" {
		t.Errorf("run with a command: %q", got)
	}
	b.Must("rm", "-v", id)
	if vols := b.Must("volume", "ls", "-q"); vols != "" {
		t.Errorf("anonymous volumes left after rm -v and run --rm: %q", vols)
	}
}
