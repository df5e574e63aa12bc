package volume

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process: this test binary re-executed with BERTH_VOLUME_HELPER
// set runs one of the modes below instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("BERTH_VOLUME_HELPER"); mode != "" {
		os.Exit(helper(mode, os.Getenv("BERTH_VOLUME_ROOT")))
	}
	os.Exit(m.Run())
}

func helper(mode, root string) int {
	s, err := New(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch mode {
	case "create": // create v0..v19, print name and creation time of each
		for i := 0; i < 20; i++ {
			v, err := s.Create(fmt.Sprintf("v%d", i), nil, nil)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Printf("%s %d\n", v.Name, v.CreatedAt.UnixNano())
		}
	case "churn": // create and remove until killed
		fmt.Println("ready")
		for i := 0; ; i++ {
			name := fmt.Sprintf("c%d", i%7)
			if _, err := s.Create(name, nil, nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			os.WriteFile(filepath.Join(s.dir, name, "_data", "f"), []byte("data"), 0o644)
			if i%3 == 0 {
				if err := s.Remove(name, true, nil); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
			}
		}
	}
	return 0
}

func helperCmd(t *testing.T, mode, root string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_VOLUME_HELPER="+mode, "BERTH_VOLUME_ROOT="+root)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestConcurrentCreateProcesses: four processes create the same twenty
// volumes at once; each name is created once, and every process gets that
// one volume.
func TestConcurrentCreateProcesses(t *testing.T) {
	root := t.TempDir()
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := 0; i < 4; i++ {
		cmd := helperCmd(t, "create", root)
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	first := map[string]string{}
	for _, out := range outs {
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			name, created, _ := strings.Cut(line, " ")
			if prev, ok := first[name]; ok && prev != created {
				t.Errorf("%s: processes got different volumes (%s, %s)", name, prev, created)
			}
			first[name] = created
		}
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if vols, err := s.List(); err != nil || len(vols) != 20 || len(first) != 20 {
		t.Errorf("list: %d volumes (%v), %d names printed", len(vols), err, len(first))
	}
	if entries := tmpEntries(t, s); len(entries) != 0 {
		t.Errorf(".tmp holds %v", entries)
	}
}

// TestKillDuringChurn kills a process that creates and removes volumes at
// random moments, then checks the invariant: every record has its
// directory, and after a sweep every directory has its record.
func TestKillDuringChurn(t *testing.T) {
	root := t.TempDir()
	for round := 0; round < 5; round++ {
		cmd := helperCmd(t, "churn", root)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			t.Fatalf("helper said %q", line)
		}
		time.Sleep(time.Duration(20+round*37) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		s, err := New(root)
		if err != nil {
			t.Fatal(err)
		}
		vols, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vols {
			if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
				t.Errorf("round %d: volume %s has no data directory: %v", round, v.Name, err)
			}
		}
		if _, err := s.Prune(nil, false, Filter{}); err != nil { // named volumes stay; garbage goes
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(s.dir)
		dirs := map[string]bool{}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				dirs[e.Name()] = true
			}
		}
		if len(dirs) != len(vols) {
			t.Errorf("round %d: %d directories for %d volumes after prune", round, len(dirs), len(vols))
		}
		for _, v := range vols {
			if !dirs[v.Name] {
				t.Errorf("round %d: prune took %s's directory", round, v.Name)
			}
		}
		if got := tmpEntries(t, s); len(got) != 0 {
			t.Errorf("round %d: .tmp holds %v after prune", round, got)
		}
	}
}
