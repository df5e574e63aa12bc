package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustCreate(t *testing.T, s *Store, name string, labels map[string]string) *Volume {
	t.Helper()
	v, err := s.Create(name, labels, nil)
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return v
}

func names(vols []*Volume) []string {
	var out []string
	for _, v := range vols {
		out = append(out, v.Name)
	}
	return out
}

// tmpEntries lists what is under volumes/.tmp.
func tmpEntries(t *testing.T, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestCreateGetList(t *testing.T) {
	s := newStore(t)
	before := time.Now().Add(-time.Second)
	v := mustCreate(t, s, "data", map[string]string{"app": "web"})
	if v.Name != "data" || v.Driver != "local" || v.Scope != "local" || v.Labels["app"] != "web" || v.CreatedAt.Before(before) {
		t.Errorf("created %+v", v)
	}
	if want := filepath.Join(s.Root(), "volumes", "data", "_data"); v.Mountpoint != want {
		t.Errorf("mountpoint %s, want %s", v.Mountpoint, want)
	}
	for path, mode := range map[string]os.FileMode{v.Mountpoint: 0o755, filepath.Dir(v.Mountpoint): 0o701, s.dir: 0o701} {
		fi, err := os.Stat(path)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want a directory of %v", path, err, fi.Mode(), mode)
		}
	}
	got, err := s.Get("data")
	if err != nil || got.Name != "data" || got.Mountpoint != v.Mountpoint || !got.CreatedAt.Equal(v.CreatedAt) || got.Labels["app"] != "web" {
		t.Errorf("get: %+v, %v", got, err)
	}
	mustCreate(t, s, "b-2", nil)
	mustCreate(t, s, "a.1", nil)
	vols, err := s.List()
	if err != nil || !slices.Equal(names(vols), []string{"a.1", "b-2", "data"}) {
		t.Errorf("list: %v, %v", names(vols), err)
	}
	if _, err := s.Get("nope"); !errdefs.IsNotFound(err) || err.Error() != "get nope: no such volume: not found" {
		t.Errorf("get missing: %v", err)
	}
	if entries := tmpEntries(t, s); len(entries) != 0 {
		t.Errorf(".tmp holds %v after creates", entries)
	}
	// A second store on the same root (another process) sees the same.
	s2, err := New(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if vols, err := s2.List(); err != nil || len(vols) != 3 {
		t.Errorf("second store lists %v, %v", names(vols), err)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	s := newStore(t)
	v1 := mustCreate(t, s, "data", map[string]string{"a": "1"})
	if err := os.WriteFile(filepath.Join(v1.Mountpoint, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := mustCreate(t, s, "data", map[string]string{"b": "2"}) // Docker returns the volume as it is
	if !v2.CreatedAt.Equal(v1.CreatedAt) || v2.Labels["a"] != "1" || v2.Labels["b"] != "" {
		t.Errorf("second create: %+v, want the first %+v", v2, v1)
	}
	if _, err := os.Stat(filepath.Join(v2.Mountpoint, "keep")); err != nil {
		t.Errorf("second create lost the data: %v", err)
	}
}

func TestCreateAnonymous(t *testing.T) {
	s := newStore(t)
	labels := map[string]string{"x": "y"}
	v := mustCreate(t, s, "", labels)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(v.Name) || !v.Anonymous() || v.Labels["x"] != "y" {
		t.Errorf("anonymous volume %+v", v)
	}
	if _, ok := labels[AnonymousLabel]; ok {
		t.Error("Create changed the caller's label map")
	}
	if w := mustCreate(t, s, "", nil); w.Name == v.Name {
		t.Error("two anonymous volumes got one name")
	}
	if mustCreate(t, s, "named", nil).Anonymous() {
		t.Error("a named volume is anonymous")
	}
}

func TestCreateRefuses(t *testing.T) {
	s := newStore(t)
	for _, name := range []string{"a", "0", "-x", ".x", "_x", "a/b", "../etc", "a b", "é1", "x:y", strings.Repeat("a", 256)} {
		_, err := s.Create(name, nil, nil)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("create %q: %v, want invalid argument", name, err)
		}
	}
	for _, name := range []string{"ab", "0a", "A.b_c-d", strings.Repeat("a", 255)} {
		if _, err := s.Create(name, nil, nil); err != nil {
			t.Errorf("create %q: %v", name, err)
		}
	}
	if _, err := s.Create("opt", nil, map[string]string{"type": "tmpfs"}); !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), `volume driver option "type" not supported`) {
		t.Errorf("create with type=tmpfs: %v", err)
	}
	if _, err := s.Create("opt", nil, map[string]string{"foo": "bar"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `volume driver option "foo" not supported`) {
		t.Errorf("create with foo=bar: %v", err)
	}
	if _, err := s.Get("opt"); !errdefs.IsNotFound(err) {
		t.Errorf("a refused create left a volume: %v", err)
	}
	if CheckDriver("local") != nil || CheckDriver("") != nil || !errdefs.IsInvalidArgument(CheckDriver("nfs")) {
		t.Error("CheckDriver accepts the wrong drivers")
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t)
	v := mustCreate(t, s, "data", nil)
	// Content a container could leave: a read-only directory with a file.
	ro := filepath.Join(v.Mountpoint, "ro")
	if err := os.MkdirAll(filepath.Join(ro, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ro, "sub", "f"), []byte("x"), 0o444)
	os.Chmod(filepath.Join(ro, "sub"), 0o555)
	os.Chmod(ro, 0o555)

	users := []string{"c1", "c2"}
	inUse := func(name string) []string {
		if name == "data" {
			return users
		}
		return nil
	}
	err := s.Remove("data", true, inUse)
	if !errdefs.IsConflict(err) || err.Error() != "remove data: volume is in use - [c1, c2]: conflict" {
		t.Errorf("remove in use: %v", err)
	}
	if _, err := s.Get("data"); err != nil {
		t.Errorf("refused remove removed it: %v", err)
	}
	users = nil
	if err := s.Remove("data", false, inUse); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := s.Get("data"); !errdefs.IsNotFound(err) {
		t.Errorf("get after remove: %v", err)
	}
	if _, err := os.Lstat(filepath.Dir(v.Mountpoint)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume directory survives: %v", err)
	}
	if entries := tmpEntries(t, s); len(entries) != 0 {
		t.Errorf(".tmp holds %v after remove", entries)
	}
	if err := s.Remove("data", false, nil); !errdefs.IsNotFound(err) || err.Error() != "get data: no such volume: not found" {
		t.Errorf("remove missing: %v", err)
	}
	if err := s.Remove("data", true, nil); err != nil {
		t.Errorf("remove -f missing: %v", err)
	}
	// Removed, the name is free for a new, empty volume.
	v = mustCreate(t, s, "data", nil)
	if empty, err := isEmptyDir(v.Mountpoint); !empty || err != nil {
		t.Errorf("re-created volume not empty: %v", err)
	}
}

func TestPrune(t *testing.T) {
	s := newStore(t)
	anon := mustCreate(t, s, "", nil)
	anonUsed := mustCreate(t, s, "", nil)
	anonLabeled := mustCreate(t, s, "", map[string]string{"keep": "yes"})
	mustCreate(t, s, "named", nil)
	mustCreate(t, s, "named-used", nil)
	os.WriteFile(filepath.Join(anon.Mountpoint, "f"), make([]byte, 1200), 0o644)
	os.WriteFile(filepath.Join(anonUsed.Mountpoint, "f"), make([]byte, 99), 0o644)
	inUse := func(name string) []string {
		if name == anonUsed.Name || name == "named-used" {
			return []string{"c"}
		}
		return nil
	}
	notKeep, err := ParseFilter([]string{"label!=keep=yes"}, "label", "label!")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(inUse, false, notKeep)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Names, []string{anon.Name}) || rep.SpaceReclaimed != 1200 {
		t.Errorf("prune: %+v, want only %s and 1200 bytes", rep, anon.Name)
	}
	rep, err = s.Prune(inUse, false, Filter{})
	if err != nil || !slices.Equal(rep.Names, []string{anonLabeled.Name}) {
		t.Errorf("second prune: %+v, %v", rep, err)
	}
	rep, err = s.Prune(inUse, true, Filter{})
	if err != nil || !slices.Equal(rep.Names, []string{"named"}) {
		t.Errorf("prune --all: %+v, %v", rep, err)
	}
	vols, _ := s.List()
	want := []string{anonUsed.Name, "named-used"}
	slices.Sort(want)
	if !slices.Equal(names(vols), want) {
		t.Errorf("after prune: %v", names(vols))
	}
	entries, _ := os.ReadDir(s.dir)
	if len(entries) != 4 { // 2 volumes, .lock, .tmp
		t.Errorf("volumes/ holds %d entries after prune", len(entries))
	}
}

func TestSize(t *testing.T) {
	s := newStore(t)
	v := mustCreate(t, s, "data", nil)
	os.MkdirAll(filepath.Join(v.Mountpoint, "d"), 0o755)
	os.WriteFile(filepath.Join(v.Mountpoint, "d", "a"), make([]byte, 1000), 0o644)
	os.Link(filepath.Join(v.Mountpoint, "d", "a"), filepath.Join(v.Mountpoint, "hard"))
	os.WriteFile(filepath.Join(v.Mountpoint, "b"), make([]byte, 24), 0o644)
	os.Symlink("d/a", filepath.Join(v.Mountpoint, "link")) // 3 bytes
	if n, err := s.Size("data"); err != nil || n != 1027 {
		t.Errorf("size %d, %v, want 1027", n, err)
	}
	if _, err := s.Size("nope"); !errdefs.IsNotFound(err) {
		t.Errorf("size of missing: %v", err)
	}
}

func TestInspectJSON(t *testing.T) {
	s := newStore(t)
	v := mustCreate(t, s, "data", nil)
	b, err := json.Marshal([]*Volume{v})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`[{"CreatedAt":%q,"Driver":"local","Labels":null,"Mountpoint":%q,"Name":"data","Options":null,"Scope":"local"}]`,
		v.CreatedAt.Local().Format(time.RFC3339), v.Mountpoint)
	if string(b) != want {
		t.Errorf("json:\n%s\nwant\n%s", b, want)
	}
	var back []Volume
	if err := json.Unmarshal(b, &back); err != nil || back[0].Name != "data" || back[0].CreatedAt.Unix() != v.CreatedAt.Unix() {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// TestConcurrentCreate: goroutines creating the same names at once all get
// the one volume, and nothing is left over.
func TestConcurrentCreate(t *testing.T) {
	s := newStore(t)
	const workers, vols = 8, 10
	created := make([][]time.Time, vols)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := New(s.Root()) // a store each, like separate CLIs
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < vols; i++ {
				v, err := st.Create(fmt.Sprintf("v%d", i), nil, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				created[i] = append(created[i], v.CreatedAt)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, times := range created {
		for _, ts := range times {
			if !ts.Equal(times[0]) {
				t.Errorf("v%d: creates returned different volumes (%v)", i, times)
				break
			}
		}
	}
	vols_, err := s.List()
	if err != nil || len(vols_) != vols {
		t.Errorf("list: %d volumes, %v", len(vols_), err)
	}
	if entries := tmpEntries(t, s); len(entries) != 0 {
		t.Errorf(".tmp holds %v", entries)
	}
}

// TestCrashLeftovers plants what a kill -9 can leave at each step and
// checks that none of it is visible and all of it is swept, except what a
// live process still holds.
func TestCrashLeftovers(t *testing.T) {
	s := newStore(t)
	mustCreate(t, s, "live", nil)
	// Killed between rename and commit: a directory without a record,
	// with something written into it (it must not reappear).
	orphan := filepath.Join(s.dir, "orphan", "_data")
	os.MkdirAll(orphan, 0o755)
	os.WriteFile(filepath.Join(orphan, "stale"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(s.dir, "orphan2", "_data"), 0o755)
	// Killed while staging, and while deleting a removed volume.
	os.MkdirAll(filepath.Join(s.tmp, "create-123", "_data"), 0o755)
	os.MkdirAll(filepath.Join(s.tmp, "rm-456", "v", "_data", "deep"), 0o755)
	os.WriteFile(filepath.Join(s.tmp, "stray-file"), nil, 0o600)
	// A removal in progress in another process: locked, must survive.
	held := filepath.Join(s.tmp, "rm-held")
	os.MkdirAll(filepath.Join(held, "v"), 0o755)
	f, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	vols, err := s.List()
	if err != nil || !slices.Equal(names(vols), []string{"live"}) {
		t.Errorf("list shows %v, %v", names(vols), err)
	}
	if _, err := s.Get("orphan"); !errdefs.IsNotFound(err) {
		t.Errorf("orphan visible: %v", err)
	}
	v := mustCreate(t, s, "orphan", nil)
	if empty, err := isEmptyDir(v.Mountpoint); !empty || err != nil {
		t.Errorf("create over a crashed one kept its content (%v)", err)
	}
	if got := tmpEntries(t, s); !slices.Equal(got, []string{"rm-held"}) {
		t.Errorf(".tmp after create: %v, want only the held entry", got)
	}
	if _, err := s.Prune(nil, false, Filter{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "orphan2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("prune left the orphan directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "live")); err != nil {
		t.Errorf("prune took a named volume's directory: %v", err)
	}
	f.Close() // its process "dies"
	if err := s.Remove("live", false, nil); err != nil {
		t.Fatal(err)
	}
	if got := tmpEntries(t, s); len(got) != 0 {
		t.Errorf(".tmp after the holder died: %v", got)
	}
}

// TestHoldExcludesRemove: a volume cannot be removed while a container
// holds the store between looking it up and recording itself.
func TestHoldExcludesRemove(t *testing.T) {
	s := newStore(t)
	mustCreate(t, s, "data", nil)
	recorded := false
	var mu sync.Mutex
	inUse := func(string) []string {
		mu.Lock()
		defer mu.Unlock()
		if recorded {
			return []string{"c1"}
		}
		return nil
	}
	inside := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Hold(func() error {
			close(inside)
			if _, err := s.Create("data", nil, nil); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond) // a Remove now must wait
			mu.Lock()
			recorded = true
			mu.Unlock()
			return nil
		})
	}()
	<-inside
	err := s.Remove("data", false, inUse)
	if herr := <-done; herr != nil {
		t.Fatal(herr)
	}
	if !errdefs.IsConflict(err) {
		t.Errorf("remove during hold: %v, want conflict once the container is recorded", err)
	}
}

func TestFilter(t *testing.T) {
	v := &Volume{Name: "web-data", Driver: "local", Labels: map[string]string{"app": "web", "tier": ""}}
	used := func(string) []string { return []string{"c"} }
	for _, tc := range []struct {
		args []string
		used InUse
		want bool
	}{
		{nil, nil, true},
		{[]string{"name=web-data"}, nil, true},
		{[]string{"name=data"}, nil, true}, // unanchored, as Docker
		{[]string{"name=^data"}, nil, false},
		{[]string{"name=x", "name=web"}, nil, true},
		{[]string{"driver=local"}, nil, true},
		{[]string{"driver=nfs"}, nil, false},
		{[]string{"label=app"}, nil, true},
		{[]string{"label=app=web", "label=tier"}, nil, true},
		{[]string{"label=app=db"}, nil, false},
		{[]string{"label=app", "label=nope"}, nil, false},
		{[]string{"label!=app=web"}, nil, false},
		{[]string{"label!=app=db"}, nil, true},
		{[]string{"dangling=true"}, nil, true},
		{[]string{"dangling=true"}, used, false},
		{[]string{"dangling=0"}, used, true},
	} {
		f, err := ParseFilter(tc.args, "name", "driver", "label", "label!", "dangling")
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if got := f.Match(v, tc.used); got != tc.want {
			t.Errorf("%v: match %v, want %v", tc.args, got, tc.want)
		}
	}
	for _, args := range [][]string{{"dangling=maybe"}, {"nokey"}, {"until=1h"}, {"name=("}, {"dangling=true", "dangling=false"}} {
		if _, err := ParseFilter(args, "name", "label", "dangling"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%v: %v, want invalid argument", args, err)
		}
	}
}
