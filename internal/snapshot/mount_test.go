package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/testutil"
)

func TestPlanMount(t *testing.T) {
	root := "/var/lib/berth/snapshots"
	lowers := func(n int) string {
		var l []string
		for i := 0; i < n; i++ {
			l = append(l, fmt.Sprintf("%s/l/%026d", root, i))
		}
		return strings.Join(l, ":")
	}
	overlay := func(n int) Mount {
		return Mount{Type: "overlay", Source: "overlay", Options: []string{
			"index=off", "lowerdir=" + lowers(n),
			"upperdir=" + root + "/active/" + strings.Repeat("c", 64) + "/upper",
			"workdir=" + root + "/active/" + strings.Repeat("c", 64) + "/work",
		}}
	}
	tests := []struct {
		name    string
		m       Mount
		flags   uintptr
		prop    int
		dir     string
		data    string // "" to skip the check
		wantErr bool
	}{
		{name: "bind", m: Mount{Type: "bind", Source: "/x", Options: []string{"rbind", "rw"}}, flags: unix.MS_BIND | unix.MS_REC},
		{name: "ro bind", m: Mount{Type: "bind", Source: "/x", Options: []string{"bind", "ro", "nosuid", "rprivate"}}, flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID, prop: 1},
		{name: "tmpfs data", m: Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"nodev", "size=64m", "mode=755"}}, flags: unix.MS_NODEV, data: "size=64m,mode=755"},
		{name: "rw clears ro", m: Mount{Type: "tmpfs", Options: []string{"ro", "rw"}}},
		{name: "short overlay", m: overlay(3), data: "index=off,lowerdir=" + lowers(3) + ",upperdir="},
		{name: "long overlay goes relative", m: overlay(100), dir: root, data: "index=off,lowerdir=l/" + fmt.Sprintf("%026d", 0) + ":l/"},
		{name: "too long even relative", m: overlay(150), wantErr: true},
		{name: "long tmpfs", m: Mount{Type: "tmpfs", Options: []string{strings.Repeat("x", 5000)}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := planMount(tt.m)
			if tt.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("got %v, want invalid argument", err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.flags != tt.flags || len(c.propagation) != tt.prop || c.dir != tt.dir {
				t.Fatalf("got flags %#x prop %v dir %q", c.flags, c.propagation, c.dir)
			}
			if !strings.HasPrefix(c.data, tt.data) {
				t.Fatalf("data %q, want prefix %q", c.data, tt.data)
			}
			if len(c.data) > os.Getpagesize()-1 {
				t.Fatalf("data is %d bytes", len(c.data))
			}
		})
	}
}

func TestRelativeOverlayData(t *testing.T) {
	dir, got := relativeOverlayData([]string{"index=off", "lowerdir=/r/l/A:/r/l/B", "upperdir=/r/active/k/upper", "workdir=/r/active/k/work"})
	want := "index=off,lowerdir=l/A:l/B,upperdir=active/k/upper,workdir=active/k/work"
	if dir != "/r" || strings.Join(got, ",") != want {
		t.Fatalf("got %q %q, want /r %q", dir, got, want)
	}
	// Nothing shared but "/": no gain.
	if dir, _ := relativeOverlayData([]string{"lowerdir=/a/x", "upperdir=/b/y"}); dir != "" {
		t.Fatalf("got dir %q", dir)
	}
	// A path that is a prefix of another's name is not a parent.
	if dir, _ := relativeOverlayData([]string{"lowerdir=/r/ab/x", "upperdir=/r/a/y"}); dir != "/r" {
		t.Fatalf("got dir %q", dir)
	}
}

func TestOverlayMountRefusesSeparators(t *testing.T) {
	if _, err := overlayMount([]string{"/a:b/l/X"}, "/u", "/w"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v", err)
	}
}

func TestUnescapeMountInfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:          "/plain",
		`/with\040space`:  "/with space",
		`/tab\011and\134`: "/tab\tand\\",
		`/trailing\04`:    `/trailing\04`,
	} {
		if got := unescapeMountInfo(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountAtUnmount(t *testing.T) {
	testutil.RequiresRoot(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "with space")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	// Two stacked mounts; Unmount takes both.
	plan := []Mount{
		{Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1m"}},
		{Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
	}
	if err := MountAt(plan, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unmount(target) })
	if m, err := isMounted(target); err != nil || !m {
		t.Fatalf("isMounted = %v, %v", m, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "x" {
		t.Fatalf("read through bind: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644); err == nil {
		t.Fatal("wrote through a read-only bind")
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if m, err := isMounted(target); err != nil || m {
		t.Fatalf("after Unmount isMounted = %v, %v", m, err)
	}
	// A failing plan leaves nothing mounted.
	bad := []Mount{
		{Type: "tmpfs", Source: "tmpfs"},
		{Type: "bind", Source: filepath.Join(src, "missing"), Options: []string{"rbind"}},
	}
	if err := MountAt(bad, target); err == nil {
		t.Fatal("MountAt of a missing source succeeded")
	}
	if m, _ := isMounted(target); m {
		t.Fatal("a failed MountAt left a mount")
	}
}
