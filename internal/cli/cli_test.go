package cli

import (
	"errors"
	"fmt"

	"bytes"
	"encoding/json"
	"github.com/berth-dev/berth/internal/errdefs"
	"os"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	if err != nil || !strings.Contains(out, "Version:") || !strings.Contains(out, "OCI runtime spec:") {
		t.Fatalf("version: %v\n%s", err, out)
	}
	out, err = run(t, "version", "--format", "{{.Os}}/{{.Arch}}")
	if err != nil || !strings.HasPrefix(out, "linux/") {
		t.Fatalf("version --format: %v %q", err, out)
	}
	if _, err := run(t, "version", "--format", "{{.Nope}}"); err == nil {
		t.Error("bad template: want error")
	}
}

func TestInfo(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_ROOT", t.TempDir())
	root := t.TempDir()
	t.Setenv("BERTH_ROOT", root)
	out, err := run(t, "info", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var info systemInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info json: %v\n%s", err, out)
	}
	if info.DockerRootDir != root {
		t.Errorf("info root dir %q, want %q", info.DockerRootDir, root)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("info created %d entries under --root", len(entries))
	}
	if info.KernelVersion == "" || info.CgroupDriver != "cgroupfs" || (info.CgroupVersion != "1" && info.CgroupVersion != "2") || info.NCPU < 1 || info.MemTotal <= 0 || info.OSType != "linux" {
		t.Errorf("info: %+v", info)
	}
	out, err = run(t, "info")
	for _, want := range []string{"Containers: 0", "Cgroup Driver: cgroupfs", "Kernel Version: ", "Storage Driver: "} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("info lacks %q: %v\n%s", want, err, out)
		}
	}
}

func TestRuntimeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"runtime", "start"},
		{"runtime", "kill"},
		{"runtime", "delete"},
		{"runtime", "--log-format", "xml", "list"},
		{"runtime", "--systemd-cgroup", "list"},
	} {
		if _, err := run(t, args...); err == nil {
			t.Errorf("%v: want an error", args)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512B", 2048: "2.00KiB", 3 << 30: "3.00GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestUserMessage(t *testing.T) {
	err := fmt.Errorf("container %q does not exist: %w", "x", errdefs.ErrNotFound)
	if got := userMessage(err); got != `container "x" does not exist` {
		t.Errorf("userMessage = %q", got)
	}
	if got := userMessage(errors.New("plain")); got != "plain" {
		t.Errorf("userMessage = %q", got)
	}
}
