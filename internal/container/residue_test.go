package container_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestZeroResidue is the contract: after 500 `run --rm` and 200
// `run -d` + `rm -f`, the host is as before — no mount, cgroup, file under
// the run root, container directory, process or zombie left, and the
// engine root holds as many inodes as at the start.
func TestZeroResidue(t *testing.T) {
	if testing.Short() {
		t.Skip("700 containers: skipped with -short")
	}
	b := newBerth(t)
	b.Must("run", "--rm", "bb", "true") // warm: the first run creates lazy directories
	before := hostSnapshot(t, b.Root)
	for i := 0; i < 500; i++ {
		if out, errs, code := b.Run("run", "--rm", "bb", "true"); code != 0 {
			t.Fatalf("run --rm #%d: %d %q %q", i, code, out, errs)
		}
	}
	for i := 0; i < 200; i++ {
		id := b.Must("run", "-d", "bb", "sleep", "100")
		b.Must("rm", "-f", id)
	}
	b.CheckNoResidue(t)
	// Exited monitors are children of the host's init, which reaps when
	// it gets to it (this VM's init is lazy): give it a few seconds.
	after := hostSnapshot(t, b.Root)
	for deadline := time.Now().Add(10 * time.Second); after["zombies"] > before["zombies"] && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		after = hostSnapshot(t, b.Root)
	}
	for k, v := range before {
		if after[k] != v && !(k == "zombies" && after[k] < v) {
			t.Errorf("%s: %d before, %d after", k, v, after[k])
		}
	}
}

// hostSnapshot counts what a leak would grow: mounts, berth cgroups,
// zombies on the host, inodes under the engine root.
func hostSnapshot(t *testing.T, root string) map[string]int {
	t.Helper()
	m := map[string]int{}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	m["mounts"] = strings.Count(string(mi), "\n")
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range ctrls {
		ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", c.Name(), "berth"))
		m["cgroup dirs under berth/"] += len(ents)
	}
	m["zombies"] = testutil.Zombies(0)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			m["inodes under the engine root"]++
		}
		return nil
	})
	return m
}

// floodSource writes n MiB of numbered 1 KiB lines to stdout as fast as it
// can: a static program, so it runs in the busybox image.
const floodSource = `package main

import (
	"os"
	"strconv"
)

func main() {
	mib, _ := strconv.Atoi(os.Args[1])
	line := make([]byte, 1024)
	for i := range line {
		line[i] = 'x'
	}
	line[1023] = '\n'
	buf := make([]byte, 0, 64*1024)
	for i := 0; i < mib*1024; i++ {
		n := strconv.AppendInt(buf[len(buf):len(buf)], int64(i), 10)
		copy(line[:12], "            ")
		copy(line, n)
		buf = append(buf, line...)
		if len(buf) == cap(buf) {
			if _, err := os.Stdout.Write(buf); err != nil {
				os.Exit(1)
			}
			buf = buf[:0]
		}
	}
	os.Stdout.Write(buf)
}
`

func buildFlood(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(floodSource), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module flood\n\ngo 1.22\n"), 0o644)
	cmd := exec.Command("go", "build", "-o", "flood", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build flood: %v\n%s", err, out)
	}
	return filepath.Join(dir, "flood")
}

// TestLogFlood: a container writing 2 GB to stdout as fast as it can
// leaves its monitor under 8 MB of RSS at its peak, and the retained log
// files hold an unbroken run of the last lines.
func TestLogFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("2 GB through the log: skipped with -short")
	}
	b := newBerth(t)
	flood := buildFlood(t)
	start := time.Now()
	id := b.Must("run", "-d", "-v", flood+":/flood:ro", "bb", "sh", "-c", "/flood 2048 && touch /tmp/done && sleep 100")
	mons := monitorsOf(b)
	if len(mons) != 1 {
		t.Fatalf("monitors: %v", mons)
	}
	pid := b.Must("inspect", "-f", "{{.State.Pid}}", id)
	waitForLong(t, "the flood to end", 10*time.Minute, func() bool {
		_, err := os.Stat("/proc/" + pid + "/root/tmp/done")
		return err == nil
	})
	elapsed := time.Since(start)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", mons[0]))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	t.Logf("2048 MiB logged in %v (%.0f MB/s); monitor peak RSS %d kB", elapsed.Round(time.Millisecond),
		2048*1.048576/elapsed.Seconds(), hwm)
	if hwm == 0 || hwm > 8*1024 {
		t.Errorf("monitor peak RSS %d kB, want under 8 MB", hwm)
	}
	// What the rotation kept is an unbroken run ending at the last line.
	cmd := b.Cmd("logs", id)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 4096), 1<<20)
	prev, lines := -1, 0
	for sc.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(sc.Text()[:12]))
		if err != nil || len(sc.Text()) != 1023 {
			t.Fatalf("line %d is not a flood line: %.40q", lines, sc.Text())
		}
		if prev >= 0 && n != prev+1 {
			t.Fatalf("line %d follows %d: lines lost inside the retained log", n, prev)
		}
		prev = n
		lines++
	}
	cmd.Wait()
	if prev != 2048*1024-1 {
		t.Errorf("the last line logged is %d, want %d", prev, 2048*1024-1)
	}
	t.Logf("the retained log holds the last %d lines, unbroken", lines)
	b.Must("rm", "-f", id)
}

func waitForLong(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
