package content

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

const helperEnv = "BERTH_CONTENT_TEST_HELPER"

// TestHelperProcess is not a test: it is the child that the multi-process
// tests start, by re-executing the test binary. Modes:
//
//	commit: write the whole blob, say "written", wait for a line on stdin,
//	        commit, say "committed <digest>"
//	half:   write half the blob, say "half", then wait to be killed
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper for the multi-process tests")
	}
	if err := helper(mode); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helper(mode string) error {
	seed, err := strconv.ParseUint(os.Getenv("HELPER_SEED"), 10, 64)
	if err != nil {
		return err
	}
	size, err := strconv.Atoi(os.Getenv("HELPER_SIZE"))
	if err != nil {
		return err
	}
	s, err := Open(os.Getenv("HELPER_ROOT"))
	if err != nil {
		return err
	}
	data := testData(seed, size)
	w, err := s.Writer(digest.FromBytes(data), int64(len(data)))
	if err != nil {
		return err
	}
	defer w.Close()
	stdin := bufio.NewReader(os.Stdin)
	switch mode {
	case "commit":
		for rest := data; len(rest) > 0; {
			n := min(256<<10, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		fmt.Println("written")
		if _, err := stdin.ReadString('\n'); err != nil {
			return err
		}
		d, err := w.Commit()
		if err != nil {
			return err
		}
		fmt.Println("committed", d)
		return nil
	case "half":
		if _, err := w.Write(data[:len(data)/2]); err != nil {
			return err
		}
		fmt.Println("half")
		stdin.ReadString('\n') // until killed
		return errors.New("not killed")
	}
	return fmt.Errorf("unknown mode %q", mode)
}

type helperProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
}

func startHelper(t *testing.T, ctx context.Context, mode, root string, seed uint64, size int) *helperProc {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+mode,
		"HELPER_ROOT="+root,
		"HELPER_SEED="+strconv.FormatUint(seed, 10),
		"HELPER_SIZE="+strconv.Itoa(size),
	)
	p := &helperProc{cmd: cmd}
	cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// expect reads the helper's next line and checks it starts with prefix.
func (p *helperProc) expect(t *testing.T, prefix string) string {
	t.Helper()
	line, err := p.stdout.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, prefix) {
		t.Fatalf("helper %d: want %q, got %q, %v; stderr: %s", p.cmd.Process.Pid, prefix, line, err, p.stderr.String())
	}
	return strings.TrimSpace(line)
}

// TestConcurrentWritersProcesses has two processes write the same blob and
// commit at the same moment: both succeed, one blob, right content.
func TestConcurrentWritersProcesses(t *testing.T) {
	const seed, size = 7, 8<<20 + 3
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newStore(t)
	data := testData(seed, size)
	want := digest.FromBytes(data)

	procs := []*helperProc{
		startHelper(t, ctx, "commit", s.Root(), seed, size),
		startHelper(t, ctx, "commit", s.Root(), seed, size),
	}
	for _, p := range procs {
		p.expect(t, "written")
	}
	if n := len(ingestNames(t, s)); n != 2 {
		t.Fatalf("%d ingest files while both write, want 2", n)
	}
	for _, p := range procs {
		io.WriteString(p.stdin, "commit\n")
	}
	for _, p := range procs {
		if got := p.expect(t, "committed"); got != "committed "+string(want) {
			t.Errorf("helper says %q, want digest %s", got, want)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("helper: %v; stderr: %s", err, p.stderr.String())
		}
	}
	if got := walkAll(t, s); len(got) != 1 || got[want] != size {
		t.Errorf("Walk = %v", got)
	}
	if !bytes.Equal(readBlob(t, s, want), data) {
		t.Error("content differs")
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest: %v", names)
	}
}

// TestKillDuringWrite kills (SIGKILL) a process halfway through a blob:
// nothing is visible, the temp stays until CleanIngest(0) sweeps it, and a
// later writer of the same blob succeeds.
func TestKillDuringWrite(t *testing.T) {
	const seed, size = 8, 4 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newStore(t)
	data := testData(seed, size)
	want := digest.FromBytes(data)

	p := startHelper(t, ctx, "half", s.Root(), seed, size)
	p.expect(t, "half")
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: want death by SIGKILL, got %v", err)
	}

	if _, err := s.Stat(want); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Stat after kill: want ErrNotFound, got %v", err)
	}
	if got := walkAll(t, s); len(got) != 0 {
		t.Errorf("Walk after kill = %v", got)
	}
	names := ingestNames(t, s)
	if len(names) != 1 {
		t.Fatalf("ingest after kill: %v, want the one temp", names)
	}
	fi, err := os.Stat(s.Root() + "/ingest/" + names[0])
	if err != nil || fi.Size() != size/2 {
		t.Errorf("temp: %v, %v; want %d bytes", fi, err, size/2)
	}
	// A young temp is left to a sweep with a cutoff...
	if err := s.CleanIngest(time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(ingestNames(t, s)) != 1 {
		t.Error("CleanIngest(1h) removed a fresh temp")
	}
	// ...and removed by CleanIngest(0): the dead writer's lock is gone.
	if err := s.CleanIngest(0); err != nil {
		t.Fatal(err)
	}
	if names := ingestNames(t, s); len(names) != 0 {
		t.Errorf("ingest after CleanIngest(0): %v", names)
	}
	if _, _, err := s.Put(bytes.NewReader(data), want, size); err != nil {
		t.Fatalf("Put after kill: %v", err)
	}
}
