package container_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/testutil"
)

// These tests hold the monitor (monitor/monitor.c) to what its clients and
// the log depend on: attach clients that misbehave never stall the log for
// long, stdin never deadlocks the container's output, the json-file log
// stays whole lines through long lines and a full disk, and a restart loop
// leaks nothing.

// engineOf gives the tests the engine's own client (Engine.Dial) without
// opening the engine: Dial needs only the run root.
func engineOf(runRoot string) *container.Engine { return &container.Engine{RunRoot: runRoot} }

// rawConn dials the monitor's socket directly, for tests that write bytes
// the Go client never would.
func rawConn(t *testing.T, runRoot, id string) net.Conn {
	t.Helper()
	c, err := dialRaw(runRoot, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dialRaw(runRoot, id string) (net.Conn, error) {
	dir, err := os.OpenFile(filepath.Join(runRoot, id), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return net.Dial("unix", fmt.Sprintf("/proc/self/fd/%d/attach.sock", dir.Fd()))
}

func frame(typ byte, p []byte) []byte {
	msg := make([]byte, 5+len(p))
	msg[0] = typ
	binary.BigEndian.PutUint32(msg[1:], uint32(len(p)))
	copy(msg[5:], p)
	return msg
}

// readFrame reads one frame from a raw connection.
func readFrame(c net.Conn) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	_, err := io.ReadFull(c, p)
	return hdr[0], p, err
}

// readOutputUntil reads stdout frames until their concatenation holds want.
func readOutputUntil(c net.Conn, want string, d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		t, p, err := readFrame(c)
		if err != nil {
			return got.String(), err
		}
		if t == container.FrameStdout {
			got.Write(p)
		}
	}
	return got.String(), nil
}

// monitorOf is the pid of container id's monitor (argv: berth monitor ID ...).
func monitorOf(t *testing.T, b *testutil.Berth, id string) int {
	t.Helper()
	for _, pid := range b.Monitors() {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if args := strings.Split(string(cmd), "\x00"); len(args) > 2 && args[2] == id {
			return pid
		}
	}
	t.Fatalf("no monitor for %s", id)
	return 0
}

// fdKinds lists what a process's descriptors point at, sorted, without
// their numbers, inodes or the container's ID, so two monitors compare.
func fdKinds(pid int, id string) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if i := strings.IndexByte(l, ':'); i > 0 && strings.HasSuffix(l, "]") {
			l = l[:i] // pipe:[123] -> pipe
		}
		out = append(out, strings.ReplaceAll(l, id, "<id>"))
	}
	sort.Strings(out)
	return out
}

// floodScript says "waiting" until /tmp/go exists, then writes mib MiB of
// flood lines and marks its end with /tmp/done.
func floodScript(mib int) string {
	return fmt.Sprintf("while [ ! -e /tmp/go ]; do echo waiting; sleep 0.05; done; /flood %d; touch /tmp/done; sleep 100", mib)
}

// floodLines reads floodScript's output up to the want'th flood line:
// it closes ready (when not nil) at the first "waiting", and returns how
// many flood lines came, in order, before r ended or a wrong one came.
func floodLines(r io.Reader, want int, ready chan struct{}) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 1<<20)
	n := 0
	for n < want && sc.Scan() {
		l := sc.Text()
		if l == "waiting" && n == 0 {
			if ready != nil {
				close(ready)
				ready = nil
			}
			continue
		}
		if got, err := strconv.Atoi(strings.TrimSpace(l[:min(12, len(l))])); err != nil || got != n || len(l) != 1023 {
			return n, fmt.Errorf("flood line %d is %.40q", n, l)
		}
		n++
	}
	return n, sc.Err()
}

// stdoutOf reads the stdout frames conn receives.
func stdoutOf(conn *container.Conn) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		for {
			typ, p, err := conn.ReadFrame()
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if typ == container.FrameStdout {
				if _, err := pw.Write(p); err != nil {
					return
				}
			}
		}
	}()
	return pr
}

// attachFloodReader attaches a client that reads the flood as it comes,
// and waits until output reaches it; the channel gets how many lines it
// read, in order, and why it stopped short.
func attachFloodReader(t *testing.T, runRoot, id string, mib int) <-chan floodRead {
	t.Helper()
	conn, err := engineOf(runRoot).Dial(id, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ready, read := make(chan struct{}), make(chan floodRead, 1)
	go func() {
		n, err := floodLines(stdoutOf(conn), mib*1024, ready)
		read <- floodRead{n, err}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("no output reached the attached client")
	}
	return read
}

type floodRead struct {
	lines int
	err   error
}

// TestMonitorStuckAttachClients: attach clients that ask for output and
// never read are dropped within a bound; meanwhile the container's 50 MiB
// go to the log whole and to a client that does read.
func TestMonitorStuckAttachClients(t *testing.T) {
	b := newBerth(t)
	flood := buildFlood(t)
	id := b.Must("run", "-d", "--log-opt", "max-size=200m", "-v", flood+":/flood:ro", "bb", "sh", "-c", floodScript(50))
	pid := b.Must("inspect", "-f", "{{.State.Pid}}", id)
	e := engineOf(b.RunRoot)
	var stuck []*container.Conn
	for i := 0; i < 8; i++ {
		c, err := e.Dial(id, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		stuck = append(stuck, c)
	}
	// Once output reaches the reader, attached after them, the stuck
	// clients' hellos are in too.
	received := attachFloodReader(t, b.RunRoot, id, 50)
	if err := os.WriteFile("/proc/"+pid+"/root/tmp/go", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Blocking on each stuck client in turn for 10 s (the old bound) takes
	// 80 s; the monitor must not wait on them one after another.
	waitForLong(t, "the flood to end past 8 stuck attach clients", 40*time.Second, func() bool {
		_, err := os.Stat("/proc/" + pid + "/root/tmp/done")
		return err == nil
	})
	t.Logf("50 MiB past 8 stuck clients in %v", time.Since(start).Round(time.Millisecond))
	select {
	case r := <-received:
		if r.lines != 50*1024 {
			t.Errorf("the reading client got %d flood lines (%v), want %d", r.lines, r.err, 50*1024)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the reading client did not get the whole output")
	}
	// The stuck clients were disconnected: what they hold ends in EOF.
	for i, c := range stuck {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var err error
		for err == nil {
			_, _, err = c.ReadFrame()
		}
		// Dropped, maybe mid-frame.
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, unix.ECONNRESET) {
			t.Errorf("stuck client %d: %v, want EOF (dropped)", i, err)
		}
	}
	checkFloodLog(t, b, id, 50)
	b.Must("rm", "-f", id)
}

// checkFloodLog checks that `logs` gives every one of the flood's lines,
// in order.
func checkFloodLog(t *testing.T, b *testutil.Berth, id string, mib int) {
	t.Helper()
	cmd := b.Cmd("logs", id)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n, err := floodLines(out, mib*1024, nil)
	io.Copy(io.Discard, out)
	cmd.Wait()
	if err != nil || n != mib*1024 {
		t.Errorf("the log holds %d flood lines (%v), want %d", n, err, mib*1024)
	}
}

// TestMonitorAttachedFloodMemory: a long flood with a client attached and
// reading leaves the monitor's peak RSS small, and the client gets every
// byte.
func TestMonitorAttachedFloodMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("512 MiB through the monitor: skipped with -short")
	}
	b := newBerth(t)
	flood := buildFlood(t)
	id := b.Must("run", "-d", "-v", flood+":/flood:ro", "bb", "sh", "-c", floodScript(512))
	pid := b.Must("inspect", "-f", "{{.State.Pid}}", id)
	mon := monitorOf(t, b, id)
	received := attachFloodReader(t, b.RunRoot, id, 512)
	os.WriteFile("/proc/"+pid+"/root/tmp/go", nil, 0o644)
	var rss []int
	waitForLong(t, "the flood to end", 5*time.Minute, func() bool {
		rss = append(rss, procStatusKB(mon, "VmRSS"))
		_, err := os.Stat("/proc/" + pid + "/root/tmp/done")
		return err == nil
	})
	if r := <-received; r.lines != 512*1024 {
		t.Errorf("the attached client got %d flood lines (%v), want %d", r.lines, r.err, 512*1024)
	}
	hwm := procStatusKB(mon, "VmHWM")
	sort.Ints(rss)
	t.Logf("monitor RSS over the flood: min %d kB, max %d kB; peak %d kB", rss[0], rss[len(rss)-1], hwm)
	if hwm == 0 || hwm > 8*1024 {
		t.Errorf("monitor peak RSS %d kB with a client attached, want under 8 MB", hwm)
	}
	b.Must("rm", "-f", id)
}

func procStatusKB(pid int, key string) int {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// TestMonitorStdinNoDeadlock: a container that writes a lot before it
// reads its stdin, with a client that sends a lot of stdin at once (`run
// -i` from a file), completes: a full stdin pipe must not stop the monitor
// from draining the container's output.
func TestMonitorStdinNoDeadlock(t *testing.T) {
	b := newBerth(t)
	flood := buildFlood(t)
	input := bytes.Repeat([]byte("0123456789abcde\n"), 4<<20/16)
	cmd := b.Cmd("run", "-i", "--name", "stdin", "-v", flood+":/flood:ro", "bb", "sh", "-c", "/flood 16; wc -c")
	cmd.Stdin = bytes.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run -i: %v", err)
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("run -i deadlocked: stdin full while the container floods stdout")
	}
	if out.Len() != 16<<20+len("4194304\n") || !strings.HasSuffix(out.String(), "\n4194304\n") {
		t.Errorf("run -i: %d bytes of output ending %q", out.Len(), out.String()[max(0, out.Len()-40):])
	}
	b.Must("rm", "stdin")
}

// TestMonitorLongLines: lines at and around the 16 KiB split, CRLF and a
// last line without a newline come back from `logs` exactly as written,
// and no entry holds more than 16 KiB.
func TestMonitorLongLines(t *testing.T) {
	b := newBerth(t)
	var script, want strings.Builder
	line := func(c byte, n int, end string) {
		fmt.Fprintf(&script, "head -c %d /dev/zero | tr '\\0' %c; printf '%s'; ", n, c, strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(end))
		want.WriteString(strings.Repeat(string(c), n) + end)
	}
	for i, n := range []int{1, 16383, 16384, 16385, 32767, 32768, 40000} {
		line(byte('a'+i), n, "\n")
	}
	line('p', 16383, "\r\n")
	line('q', 16384, "\r\n")
	line('r', 16385, "\r\n")
	line('s', 16384, "") // the last line, without a newline, exactly 16 KiB
	id := b.Must("run", "-d", "bb", "sh", "-c", script.String())
	b.Must("wait", id)
	out, _, code := b.Run("logs", id)
	if code != 0 || out != want.String() {
		t.Errorf("logs differ from what was written: %d bytes, want %d", len(out), want.Len())
		for i := 0; i < min(len(out), want.Len()); i++ {
			if out[i] != want.String()[i] {
				t.Errorf("first difference at byte %d: %q, want %q", i, out[i:min(len(out), i+20)], want.String()[i:min(want.Len(), i+20)])
				break
			}
		}
	}
	data, err := os.ReadFile(b.Must("inspect", "-f", "{{.LogPath}}", id))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var e struct{ Log string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not a json-file entry: %.60q", l)
		}
		if len(e.Log) > 16384+1 || len(e.Log) > 16384 && !strings.HasSuffix(e.Log, "\n") {
			t.Errorf("an entry of %d bytes: the split is at 16 KiB", len(e.Log))
		}
	}
	b.Must("rm", id)
}

// TestMonitorRotationOversizedEntries: entries larger than max-size each
// get a file of their own, and max-file of them are kept, whole.
func TestMonitorRotationOversizedEntries(t *testing.T) {
	b := newBerth(t)
	// Five 20000-byte lines: each is a 16 KiB partial entry and the rest.
	id := b.Must("run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "bb", "sh", "-c",
		`for c in a b c d e; do head -c 20000 /dev/zero | tr '\0' $c; echo; done`)
	b.Must("wait", id)
	if out, _, _ := b.Run("logs", id); out != strings.Repeat("e", 20000)+"\n" {
		t.Errorf("logs: %d bytes %.20q..., want the last line whole", len(out), out)
	}
	logPath := b.Must("inspect", "-f", "{{.LogPath}}", id)
	for _, p := range []string{logPath, logPath + ".1"} {
		if data, err := os.ReadFile(p); err != nil || strings.Count(string(data), "\n") != 1 {
			t.Errorf("%s: %v, %d entries, want 1", filepath.Base(p), err, strings.Count(string(data), "\n"))
		}
	}
	b.Must("rm", id)
}

// TestMonitorHostileClients: frames split at every byte work; a frame
// header with a huge length or more clients than the monitor serves cost
// the offender its connection, never the monitor.
func TestMonitorHostileClients(t *testing.T) {
	b := newBerth(t)
	id := b.Must("run", "-d", "-i", "bb", "cat")
	echo := func(c net.Conn, msg string) {
		t.Helper()
		if got, err := readOutputUntil(c, msg, 10*time.Second); err != nil {
			t.Fatalf("echo of %q: got %q, %v", msg, got, err)
		}
	}
	// One byte at a time: hello, then a stdin frame.
	c := rawConn(t, b.RunRoot, id)
	defer c.Close()
	for _, by := range append(frame('h', []byte("o")), frame(0, []byte("split\n"))...) {
		c.Write([]byte{by})
		time.Sleep(5 * time.Millisecond)
	}
	echo(c, "split\n")
	// A full-size frame, and two frames in one write.
	big := strings.Repeat("z", 32767) + "\n"
	c.Write(append(frame(0, []byte(big)), frame(0, []byte("pair\n"))...))
	echo(c, big+"pair\n")
	// Huge lengths: the offender is disconnected.
	for _, hdr := range [][]byte{{0, 0xff, 0xff, 0xff, 0xff}, {'h', 0, 0x10, 0, 0}} {
		h := rawConn(t, b.RunRoot, id)
		h.Write(hdr)
		h.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := h.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, unix.ECONNRESET) {
			t.Errorf("header %x: %v, want the monitor to hang up", hdr, err)
		}
		h.Close()
	}
	// More clients than it serves: the extra ones are refused (or find
	// the listen queue full).
	var many []net.Conn
	refused := 0
	for i := 0; i < 24; i++ {
		m, err := dialRaw(b.RunRoot, id)
		if err != nil {
			refused++
			continue
		}
		many = append(many, m)
		m.Write(frame('h', []byte("w")))
	}
	// EOF, or a reset as the monitor closed with our hello unread; the
	// ones served hear nothing.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range many {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := m.Read(make([]byte, 1)); errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if refused < 24-15 {
		t.Errorf("%d of 24 extra clients refused, want at least 9 (16 at most served)", refused)
	}
	for _, m := range many {
		m.Close()
	}
	// The monitor still serves: the first client and a new one.
	c.Write(frame(0, []byte("still\n")))
	echo(c, "still\n")
	waitFor(t, "a free slot", func() bool {
		n, err := dialRaw(b.RunRoot, id)
		if err != nil {
			return false
		}
		defer n.Close()
		n.Write(frame('h', []byte("o")))
		n.Write(frame(0, []byte("new\n")))
		_, err = readOutputUntil(n, "new\n", 2*time.Second)
		return err == nil
	})
	if logs := b.Must("logs", id); !strings.HasPrefix(logs, "split\n"+big+"pair\nstill\nnew") {
		t.Errorf("logs: %.40q", logs)
	}
	b.Must("rm", "-f", id)
}

// TestMonitorRestartNoLeak: a container restarted by its policy, with
// pipes, stdin or a terminal, leaves its monitor with the descriptors it
// had on the first run.
func TestMonitorRestartNoLeak(t *testing.T) {
	b := newBerth(t)
	const runs = 7 // backoff 0.1+0.2+...+3.2 s
	type pair struct{ name, looped, control string }
	var pairs []pair
	for _, v := range []struct {
		name  string
		flags []string
	}{{"pipes", nil}, {"stdin", []string{"-i"}}, {"tty", []string{"-t"}}} {
		start := func(threshold int) string {
			dir := t.TempDir()
			script := fmt.Sprintf(`n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run $n; [ $n -ge %d ] && exec sleep 100; exit 1`, threshold)
			args := append([]string{"run", "-d", "--restart", "always", "-v", dir + ":/d"}, v.flags...)
			return b.Must(append(args, "bb", "sh", "-c", script)...)
		}
		pairs = append(pairs, pair{v.name, start(runs), start(1)})
	}
	for _, p := range pairs {
		waitFor(t, p.name+" restarts", func() bool {
			return b.Must("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", p.looped) == fmt.Sprintf("running %d", runs-1)
		})
	}
	time.Sleep(500 * time.Millisecond) // the CLIs' connections are gone
	for _, p := range pairs {
		looped, control := fdKinds(monitorOf(t, b, p.looped), p.looped), fdKinds(monitorOf(t, b, p.control), p.control)
		if strings.Join(looped, ",") != strings.Join(control, ",") {
			t.Errorf("%s: after %d restarts the monitor holds %d fds, on its first run %d:\n  %v\n  %v",
				p.name, runs-1, len(looped), len(control), looped, control)
		}
		if logs := b.Must("logs", p.looped); strings.Count(logs, "run ") != runs {
			t.Errorf("%s: logs %q", p.name, logs)
		}
	}
}

// TestMonitorDiskFull: when the log's file system is full the container
// is not held up, the log keeps whole entries, and logging resumes once
// there is room.
func TestMonitorDiskFull(t *testing.T) {
	b := newBerth(t)
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(small, unix.MNT_DETACH)
	filler := filepath.Join(small, "filler")
	os.WriteFile(filler, bytes.Repeat([]byte{1}, 256<<10), 0o644)
	flood := buildFlood(t)
	id := b.Must("create", "-v", flood+":/flood:ro", "bb", "sh", "-c",
		"/flood 4; touch /tmp/flooded; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after")
	logPath := b.Must("inspect", "-f", "{{.LogPath}}", id)
	if err := os.Symlink(filepath.Join(small, "log"), logPath); err != nil {
		t.Fatal(err)
	}
	b.Must("start", id)
	pid := b.Must("inspect", "-f", "{{.State.Pid}}", id)
	waitFor(t, "the flood to pass a full disk", func() bool {
		_, err := os.Stat("/proc/" + pid + "/root/tmp/flooded")
		return err == nil
	})
	os.Remove(filler)
	os.WriteFile("/proc/"+pid+"/root/tmp/go", nil, 0o644)
	b.Must("wait", id)
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for i, l := range lines {
		var e struct{ Log string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %d of %d is not a whole entry: %.80q", i, len(lines), l)
		}
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, `"log":"after\n"`) {
		t.Errorf("last entry %.80q, want the line written once there was room", last)
	}
	b.Must("rm", id)
}

// TestMonitorEscapedChild: a background process that keeps the container's
// stdout open does not outlive PID 1 (the pid namespace), with the host's
// network too: run returns at once.
func TestMonitorEscapedChild(t *testing.T) {
	b := newBerth(t)
	for _, net := range []string{"none", "host", "bridge"} {
		start := time.Now()
		out := b.Must("run", "--rm", "--network", net, "bb", "sh", "-c", "sleep 100 & echo hi")
		if out != "hi" || time.Since(start) > 5*time.Second {
			t.Errorf("--network %s: %q after %v", net, out, time.Since(start))
		}
	}
}

// TestMonitorSignalDispositions: the monitor ignores SIGPIPE for itself;
// the container's process must not inherit that.
func TestMonitorSignalDispositions(t *testing.T) {
	b := newBerth(t)
	if out := b.Must("run", "--rm", "bb", "grep", "SigIgn", "/proc/self/status"); !strings.HasSuffix(out, "0000000000000000") {
		t.Errorf("the container's process starts with signals ignored: %s", out)
	}
}

// TestMonitorSlowForeground: `run` whose stdout is a pipe nobody reads for
// a few seconds (a pager, a stalled disk) still gets every byte: the
// spawner's connection is waited for longer than an attach client.
func TestMonitorSlowForeground(t *testing.T) {
	b := newBerth(t)
	flood := buildFlood(t)
	cmd := b.Cmd("run", "--rm", "-v", flood+":/flood:ro", "bb", "/flood", "8")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	n, _ := io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil || n != 8<<20 {
		t.Errorf("run through a pipe read late: %d bytes, %v; want %d", n, err, 8<<20)
	}
}
