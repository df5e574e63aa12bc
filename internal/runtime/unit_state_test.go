package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestRecordSaveLoad(t *testing.T) {
	root := t.TempDir()
	spec := DefaultSpec()
	spec.Annotations = map[string]string{"org.example": "x"}
	rec := &record{
		ID: "c1", Bundle: "/b", Rootfs: "/b/rootfs", Pid: 42, PidStartTime: 12345,
		Created: time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC), Owner: "root",
		CgroupPath: "/berth/c1", CgroupPaths: map[string]string{"": "/sys/fs/cgroup/berth/c1"},
		Config: spec, ExternalPidNS: true,
	}
	mustMkdir(t, rec.dir(root))
	for _, creating := range []bool{true, false} {
		rec.Creating = creating
		if err := rec.save(root); err != nil {
			t.Fatalf("save: %v", err)
		}
		got, err := loadRecord(root, "c1")
		if err != nil {
			t.Fatalf("loadRecord: %v", err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("loadRecord = %+v\nwant %+v", got, rec)
		}
	}
	// Only state.json is left: the temp file was renamed, not copied.
	entries, err := os.ReadDir(rec.dir(root))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != stateFile {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("state directory holds %q, want only %s", names, stateFile)
	}
	fi, err := os.Stat(filepath.Join(rec.dir(root), stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestRecordSaveWithoutDir(t *testing.T) {
	root := t.TempDir()
	rec := &record{ID: "gone"}
	if err := rec.save(root); err == nil {
		t.Error("save into a missing state directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(root, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("save created %s: %v", filepath.Join(root, "gone"), err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	tests := []struct {
		name    string
		old     string // existing content; "" means no file
		data    string
		mode    os.FileMode
		durable bool
	}{
		{name: "new", data: "1234", mode: 0o644},
		{name: "new, durable", data: "1234", mode: 0o644, durable: true},
		{name: "replace", old: "a much longer old content", data: "short", mode: 0o600},
		{name: "replace, durable", old: "a much longer old content", data: "short", mode: 0o600, durable: true},
		{name: "empty", old: "x", data: "", mode: 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pid")
			if tt.old != "" {
				mustWrite(t, path, tt.old)
			}
			if err := writeFileAtomic(path, []byte(tt.data), tt.mode, tt.durable); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tt.data {
				t.Errorf("content %q, %v; want %q", got, err, tt.data)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, %v; want %v (set with fchmod, so umask does not apply)", fi.Mode().Perm(), err, tt.mode)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries; want only the file", len(entries))
			}
		})
	}
	if err := writeFileAtomic(filepath.Join(t.TempDir(), "missing", "f"), nil, 0o600, true); err == nil {
		t.Error("writeFileAtomic into a missing directory succeeded")
	}
}

func TestLoadRecordErrors(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "empty"))
	mustMkdir(t, filepath.Join(root, "corrupt"))
	mustWrite(t, filepath.Join(root, "corrupt", stateFile), `{"id":"corrupt","pid":`)
	mustMkdir(t, filepath.Join(root, "wrongtype"))
	mustWrite(t, filepath.Join(root, "wrongtype", stateFile), `{"id":"wrongtype","pid":"12"}`)
	mustMkdir(t, filepath.Join(root, "dir", stateFile))

	tests := []struct {
		id    string
		class error    // errdefs class, or nil for none in particular
		want  []string // substrings of the message
	}{
		{id: "missing", class: errdefs.ErrNotFound, want: []string{`"missing" does not exist`}},
		{id: "empty", class: errdefs.ErrNotFound, want: []string{`"empty" does not exist`}},
		{id: "corrupt", want: []string{`"corrupt"`, "corrupt state file"}},
		{id: "wrongtype", want: []string{`"wrongtype"`, "corrupt state file"}},
		{id: "dir", want: []string{stateFile}},
		{id: "../x", class: errdefs.ErrInvalidArgument},
		{id: "", class: errdefs.ErrInvalidArgument},
		{id: "..", class: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		rec, err := loadRecord(root, tt.id)
		if err == nil {
			t.Errorf("loadRecord(%q) = %+v; want an error", tt.id, rec)
			continue
		}
		if tt.class != nil && !errors.Is(err, tt.class) {
			t.Errorf("loadRecord(%q) = %v; want %v", tt.id, err, tt.class)
		}
		if tt.class == nil && errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("loadRecord(%q) = %v: a damaged container must not read as missing", tt.id, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("loadRecord(%q) = %q; want it to say %q", tt.id, err, w)
			}
		}
	}
}

// startSleep starts a process that lives until the test ends.
func startSleep(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, "10")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start %s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// deadPid returns the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "0")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run /bin/sleep: %v", err)
	}
	return cmd.Process.Pid
}

// nonexistentCgroup is a cgroups path that no test and no container uses.
func nonexistentCgroup() string {
	return fmt.Sprintf("/berth-unit-nonexistent-%d", rand.Uint64())
}

// cgroupDirs lists the directories a cgroups path could appear under:
// /sys/fs/cgroup itself (v2) and each directory below it (v1 hierarchies).
func cgroupDirs() []string {
	dirs := []string{"/sys/fs/cgroup"}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return dirs
}

func TestRecordStatus(t *testing.T) {
	sleep := startSleep(t, "/bin/sleep")
	pid := sleep.Process.Pid
	start, state, err := procStartTime(pid)
	if err != nil {
		t.Fatalf("procStartTime(%d): %v", pid, err)
	}
	if state == 'Z' || state == 'X' {
		t.Fatalf("fresh sleep is in state %c", state)
	}
	dead := deadPid(t)
	cgroupPath := nonexistentCgroup()

	tests := []struct {
		name string
		rec  record
		fifo bool
		want Status
	}{
		{name: "creating", rec: record{Creating: true, Pid: pid, PidStartTime: start}, want: Creating},
		{name: "creating without a pid", rec: record{Creating: true}, want: Creating},
		{name: "no pid", rec: record{}, want: Stopped},
		{name: "negative pid", rec: record{Pid: -1}, want: Stopped},
		{name: "dead pid", rec: record{Pid: dead}, want: Stopped},
		{name: "nonexistent pid", rec: record{Pid: 1 << 30}, want: Stopped},
		{name: "live, fifo", rec: record{Pid: pid, PidStartTime: start}, fifo: true, want: Created},
		{name: "live, no fifo", rec: record{Pid: pid, PidStartTime: start}, want: Running},
		{name: "reused pid", rec: record{Pid: pid, PidStartTime: start + 1}, fifo: true, want: Stopped},
		{name: "reused pid, no start time", rec: record{Pid: pid}, want: Stopped},
		{name: "live, no cgroups path", rec: record{Pid: pid, PidStartTime: start, CgroupPath: "-"}, want: Running},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			rec := tt.rec
			rec.ID = "c"
			if rec.CgroupPath == "" {
				rec.CgroupPath = cgroupPath
			} else if rec.CgroupPath == "-" {
				rec.CgroupPath = ""
			}
			mustMkdir(t, rec.dir(root))
			if tt.fifo {
				mustWrite(t, filepath.Join(rec.dir(root), fifoName), "")
			}
			if got := rec.status(root); got != tt.want {
				t.Errorf("status() = %s, want %s", got, tt.want)
			}
			st := rec.state(root)
			if st.Status != tt.want {
				t.Errorf("state().Status = %s, want %s", st.Status, tt.want)
			}
			if wantPid := map[bool]int{true: 0, false: rec.Pid}[tt.want == Stopped]; st.Pid != wantPid {
				t.Errorf("state().Pid = %d, want %d", st.Pid, wantPid)
			}
		})
	}
	// Asking whether the container is paused must not create its cgroup.
	for _, dir := range cgroupDirs() {
		if _, err := os.Stat(filepath.Join(dir, cgroupPath)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("status() left %s behind (%v)", filepath.Join(dir, cgroupPath), err)
		}
	}
}

// TestRecordStatusZombie: an init that exited but was not reaped yet
// counts as stopped.
func TestRecordStatusZombie(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start /bin/sleep: %v", err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	start, _, err := procStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, state, err := procStartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		if state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still in state %c", pid, state)
		}
		time.Sleep(time.Millisecond)
	}
	rec := record{ID: "z", Pid: pid, PidStartTime: start, CgroupPath: nonexistentCgroup()}
	if got := rec.status(t.TempDir()); got != Stopped {
		t.Errorf("status() of a zombie = %s, want %s", got, Stopped)
	}
}

func TestProcStartTime(t *testing.T) {
	self, state, err := procStartTime(os.Getpid())
	// The state is the main thread's, which may well be asleep.
	if err != nil || self == 0 || !strings.ContainsRune("RSD", rune(state)) {
		t.Errorf("procStartTime(self) = %d, %c, %v; want a start time and state R, S or D", self, state, err)
	}
	if _, _, err := procStartTime(deadPid(t)); err == nil {
		t.Error("procStartTime of a reaped process: want an error")
	}

	// The command name is free text: it may hold spaces and parentheses
	// that look like the end of the name field.
	dir := t.TempDir()
	name := "a) 1 2 (3) x"
	if err := os.Link("/bin/sleep", filepath.Join(dir, name)); err != nil {
		data, rerr := os.ReadFile("/bin/sleep")
		if rerr != nil {
			t.Skipf("no /bin/sleep to copy: %v", rerr)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := startSleep(t, filepath.Join(dir, name))
	pid := cmd.Process.Pid
	got, _, err := procStartTime(pid)
	if err != nil {
		t.Fatalf("procStartTime(%d) named %q: %v", pid, name, err)
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%d (%s) ", pid, name)
	if !strings.HasPrefix(string(stat), prefix) {
		t.Skipf("/proc/%d/stat = %q does not start with %q (the kernel may cut the name)", pid, stat, prefix)
	}
	want, err := strconv.ParseUint(strings.Fields(string(stat)[len(prefix):])[19], 10, 64)
	if err != nil || got != want {
		t.Errorf("procStartTime = %d, want %d (%v)", got, want, err)
	}
}

func TestRecordStateAndSpecState(t *testing.T) {
	spec := DefaultSpec()
	spec.Annotations = map[string]string{"a": "b"}
	rec := &record{ID: "c", Bundle: "/b", Rootfs: "/b/rootfs", Pid: deadPid(t), Owner: "me", Config: spec,
		Created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), CgroupPath: nonexistentCgroup()}
	st := rec.state(t.TempDir())
	want := State{OCIVersion: st.OCIVersion, ID: "c", Status: Stopped, Bundle: "/b", Rootfs: "/b/rootfs",
		Created: rec.Created, Owner: "me", Annotations: map[string]string{"a": "b"}}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("state() = %+v, want %+v", st, want)
	}
	if !strings.HasPrefix(st.OCIVersion, "1.") {
		t.Errorf("state().OCIVersion = %q", st.OCIVersion)
	}
	data, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(data), `"status":"stopped"`) || !strings.Contains(string(data), `"ociVersion"`) {
		t.Errorf("state JSON %s, %v", data, err)
	}

	ss := rec.specState(Creating)
	if ss.ID != "c" || ss.Status != "creating" || ss.Pid != rec.Pid || ss.Bundle != "/b" || ss.Annotations["a"] != "b" {
		t.Errorf("specState = %+v", ss)
	}
	rec.Config = nil
	if st := rec.state(t.TempDir()); st.Annotations != nil {
		t.Errorf("state() without a config has annotations %v", st.Annotations)
	}
	if ss := rec.specState(Stopped); ss.Annotations != nil {
		t.Errorf("specState without a config has annotations %v", ss.Annotations)
	}
}

func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	// Released: taking it again does not block.
	unlock, err = lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if _, err := lockDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("lockDir of a missing directory succeeded")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/", "/"},
		{"/plain/path", "/plain/path"},
		{`/a\040b`, "/a b"},
		{`/with\040two\040spaces`, "/with two spaces"},
		{`/tab\011x`, "/tab\tx"},
		{`/nl\012x`, "/nl\nx"},
		{`/back\134slash`, `/back\slash`},
		{`/end\040`, "/end "},
		{`\040`, " "},
		{`/short\04`, `/short\04`},
		{`/short\0`, `/short\0`},
		{`/trailing\`, `/trailing\`},
		{`/not\xyzoctal`, `/not\xyzoctal`},
		{`/nine\999`, `/nine\999`},
		{`/twice\134\040`, `/twice\ `},
	}
	for _, tt := range tests {
		if got := unescapeMountinfo(tt.in); got != tt.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMountPointOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/proc", "/proc"},
		{"/proc/", "/proc"},
		{"/proc/self", "/proc"},
		{"/proc/self/mountinfo", "/proc"},
	}
	for _, tt := range tests {
		got, err := mountPointOf(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("mountPointOf(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// A mount point is a path prefix, not a string prefix: /procfoo is
	// not under /proc.
	got, err := mountPointOf("/procfoo/x")
	if err != nil || got == "/proc" {
		t.Errorf("mountPointOf(/procfoo/x) = %q, %v", got, err)
	}
}
