package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/runtime"
)

// TestRootfsMountsAnnotation: an overlay rootfs given by the berth
// annotation is mounted inside the container's mount namespace only:
// the container sees the lower layer and writes into the upper one, and
// the host never has the overlay mounted.
func TestRootfsMountsAnnotation(t *testing.T) {
	e := newEnv(t)
	lower := filepath.Join(e.bundle, "rootfs") // the busybox tree as the only layer
	upper := filepath.Join(e.dir, "upper")
	work := filepath.Join(e.dir, "work")
	mnt := filepath.Join(e.dir, "mnt")
	for _, d := range []string{upper, work, mnt} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(lower, "hello"), []byte("from the lower layer\n"), 0o644)
	ms, _ := json.Marshal([]runtime.RootfsMount{{Type: "overlay", Source: "overlay",
		Options: []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work}}})
	e.spec.Annotations = map[string]string{runtime.RootfsMountsAnnotation: string(ms)}
	e.spec.Root.Path = mnt
	before, _ := os.ReadFile("/proc/self/mountinfo")
	r := e.run("sh", "-c", "cat /hello; echo new > /created; grep -c ' / / .* - overlay ' /proc/self/mountinfo")
	if r.code != 0 || !strings.Contains(r.stdout, "from the lower layer") || !strings.Contains(r.stdout, "1\n") {
		t.Errorf("overlay rootfs: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if data, err := os.ReadFile(filepath.Join(upper, "created")); err != nil || string(data) != "new\n" {
		t.Errorf("write did not land in the upper dir: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(lower, "created")); err == nil {
		t.Error("write reached the lower layer")
	}
	if entries, _ := os.ReadDir(mnt); len(entries) != 0 {
		t.Errorf("the host's root.path is not empty: the overlay leaked out (%d entries)", len(entries))
	}
	after, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Count(string(after), "\n") != strings.Count(string(before), "\n") {
		t.Errorf("host mounts changed: %d -> %d lines", strings.Count(string(before), "\n"), strings.Count(string(after), "\n"))
	}

	// Bad annotations are refused before anything exists, naming the field.
	e.spec.Annotations = map[string]string{runtime.RootfsMountsAnnotation: `[{"type":"nfs","source":"x"}]`}
	e.writeSpec()
	if r := e.berth("create", "badroot"); r.code != 1 || !strings.Contains(r.stderr, "annotations.io.berth.rootfs.mounts[0].type") {
		t.Errorf("bad rootfs annotation: exit %d %q", r.code, r.stderr)
	}
}
