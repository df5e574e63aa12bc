package image

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
)

func fakeImage(seed string) *Image {
	return &Image{
		ID:             digest.FromString("config " + seed),
		ManifestDigest: digest.FromString("manifest " + seed),
		Created:        time.Unix(1700000000, 0).UTC(),
	}
}

func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustGet(t *testing.T, s *Store, ref string) *Image {
	t.Helper()
	img, err := s.Get(ref)
	if err != nil {
		t.Fatalf("Get(%q): %v", ref, err)
	}
	return img
}

func TestStoreResolve(t *testing.T) {
	s := openStore(t)
	a, b := fakeImage("a"), fakeImage("b")
	a.RepoTags = []string{"docker.io/library/busybox:latest", "localhost:5000/x:1"}
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(b); err != nil {
		t.Fatal(err)
	}
	hexA := a.ID.Encoded()
	for _, ref := range []string{
		a.ID.String(), hexA, hexA[:12], hexA[:1] + "", "sha256:" + hexA[:5],
		"busybox", "busybox:latest", "docker.io/library/busybox", "localhost:5000/x:1",
		"busybox@" + a.ManifestDigest.String(), // by manifest digest within its repository
	} {
		if ref == hexA[:1] && hexA[0] == b.ID.Encoded()[0] {
			continue // both share the first character
		}
		if got := mustGet(t, s, ref); got.ID != a.ID {
			t.Errorf("Get(%q) = %s, want %s", ref, got.ID, a.ID)
		}
	}
	for _, tc := range []struct {
		ref   string
		class error
	}{
		{"nosuch", errdefs.ErrNotFound},
		{"busybox:1", errdefs.ErrNotFound},
		{"sha256:" + digest.FromString("x").Encoded(), errdefs.ErrNotFound},
		{"localhost:5000/x@" + b.ManifestDigest.String(), errdefs.ErrNotFound}, // b is not in that repository
		{"Nope", errdefs.ErrInvalidArgument},
		{"", errdefs.ErrInvalidArgument},
		{"sha256:xyz", errdefs.ErrInvalidArgument},
	} {
		if _, err := s.Get(tc.ref); !errors.Is(err, tc.class) {
			t.Errorf("Get(%q) = %v, want %v", tc.ref, err, tc.class)
		}
	}
	// An ambiguous prefix: make many images until two share a first character.
	var p string
	for i := 0; p == ""; i++ {
		img := fakeImage(strconv.Itoa(i))
		if err := s.Put(img); err != nil {
			t.Fatal(err)
		}
		for _, other := range []*Image{a, b} {
			if img.ID.Encoded()[0] == other.ID.Encoded()[0] {
				p = img.ID.Encoded()[:1]
			}
		}
	}
	if _, err := s.Get(p); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Get(%q) with two matches = %v, want an ambiguity error", p, err)
	}
}

func TestStoreTagMovesAndUntag(t *testing.T) {
	s := openStore(t)
	a, b := fakeImage("a"), fakeImage("b")
	for _, img := range []*Image{a, b} {
		if err := s.Put(img); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Tag(a.ID.String(), "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("app", "app:v1"); err != nil { // tag by name
		t.Fatal(err)
	}
	if err := s.Tag("app:v1", "app:v1"); err != nil { // again: a no-op
		t.Fatal(err)
	}
	got := mustGet(t, s, a.ID.String())
	if want := []string{"docker.io/library/app:latest", "docker.io/library/app:v1"}; !slices.Equal(got.RepoTags, want) {
		t.Fatalf("tags %v, want %v", got.RepoTags, want)
	}
	if got.LastTagTime.IsZero() {
		t.Error("LastTagTime not set")
	}
	// Moving app:latest to b leaves a with app:v1 only.
	if err := s.Tag(b.ID.Encoded()[:10], "app"); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "app"); got.ID != b.ID {
		t.Fatalf("app is %s, want %s", got.ID, b.ID)
	}
	if got := mustGet(t, s, a.ID.String()); !slices.Equal(got.RepoTags, []string{"docker.io/library/app:v1"}) {
		t.Fatalf("a's tags after the move: %v", got.RepoTags)
	}
	// Refused tags.
	for _, bad := range []string{"app@" + testDigest, "App", "a:b:c", ""} {
		if err := s.Tag("app", bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Tag(app, %q) = %v, want invalid argument", bad, err)
		}
	}
	if err := s.Tag("nosuch", "x"); !errdefs.IsNotFound(err) {
		t.Errorf("Tag(nosuch) = %v, want not found", err)
	}
	// Untag.
	img, err := s.Untag("app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != a.ID || len(img.RepoTags) != 0 {
		t.Fatalf("Untag returned %s %v", img.ID, img.RepoTags)
	}
	if _, err := s.Untag("app:v1"); !errdefs.IsNotFound(err) {
		t.Fatalf("second Untag = %v, want not found", err)
	}
	if _, err := s.Get("app:v1"); !errdefs.IsNotFound(err) {
		t.Fatalf("Get after Untag = %v, want not found", err)
	}
	// Delete removes the record and its names.
	if err := s.Delete("app"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(b.ID.String()); !errdefs.IsNotFound(err) {
		t.Fatalf("Get after Delete = %v", err)
	}
	if _, err := s.Get("app"); !errdefs.IsNotFound(err) {
		t.Fatalf("name survived Delete: %v", err)
	}
	if err := s.Delete(b.ID.String()); !errdefs.IsNotFound(err) {
		t.Fatalf("second Delete = %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestStorePutReconcilesNames(t *testing.T) {
	s := openStore(t)
	a, b := fakeImage("a"), fakeImage("b")
	a.RepoTags = []string{"docker.io/library/x:1", "docker.io/library/x:2"}
	b.RepoTags = []string{"docker.io/library/x:2"}
	for _, img := range []*Image{a, b} {
		if err := s.Put(img); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustGet(t, s, a.ID.String()); !slices.Equal(got.RepoTags, []string{"docker.io/library/x:1"}) {
		t.Fatalf("a keeps %v after b took x:2", got.RepoTags)
	}
	a.RepoTags = nil // Put replaces: x:1 goes
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("x:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("x:1 after Put without it: %v", err)
	}
}

// TestStoreConcurrentGoroutines tags from two goroutines at once: every
// tag must land, none lost to a read-modify-write race.
func TestStoreConcurrentGoroutines(t *testing.T) {
	s := openStore(t)
	img := fakeImage("a")
	if err := s.Put(img); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := s.Tag(img.ID.String(), fmt.Sprintf("g%d:%d", g, i)); err != nil {
					errs <- err
				}
				if _, err := s.Get(img.ID.String()); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := mustGet(t, s, img.ID.String()); len(got.RepoTags) != 2*n {
		t.Fatalf("%d tags, want %d", len(got.RepoTags), 2*n)
	}
}

// TestStoreConcurrentProcesses runs two processes that tag the same image
// while this one reads: the flock protocol must let all of them work.
func TestStoreConcurrentProcesses(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img := fakeImage("a")
	if err := s.Put(img); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var cmds []*exec.Cmd
	for p := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BERTH_IMAGE_HELPER=tag", "HELPER_ROOT="+root,
			"HELPER_ID="+img.ID.String(), "HELPER_PREFIX=p"+strconv.Itoa(p), "HELPER_N="+strconv.Itoa(n))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	done := make(chan struct{})
	go func() {
		for _, c := range cmds {
			c.Wait()
		}
		close(done)
	}()
	reads := 0
	for loop := true; loop; {
		select {
		case <-done:
			loop = false
		default:
			if _, err := s.Get(img.ID.String()); err != nil {
				t.Fatal(err)
			}
			reads++
		}
	}
	for _, c := range cmds {
		if !c.ProcessState.Success() {
			t.Fatalf("helper failed: %v", c.ProcessState)
		}
	}
	if got := mustGet(t, s, img.ID.String()); len(got.RepoTags) != 2*n {
		t.Fatalf("%d tags, want %d", len(got.RepoTags), 2*n)
	}
	t.Logf("%d reads in this process during %d tags in two others", reads, 2*n)
}

func helperProcess(mode string) int {
	switch mode {
	case "tag":
		s, err := Open(os.Getenv("HELPER_ROOT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		n, _ := strconv.Atoi(os.Getenv("HELPER_N"))
		for i := range n {
			if err := s.Tag(os.Getenv("HELPER_ID"), fmt.Sprintf("%s:%d", os.Getenv("HELPER_PREFIX"), i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

func BenchmarkStoreGet(b *testing.B) {
	s := openStore(b)
	img := fakeImage("a")
	img.RepoTags = []string{"docker.io/library/busybox:latest"}
	if err := s.Put(img); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get("busybox"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoreTag(b *testing.B) {
	s := openStore(b)
	img := fakeImage("a")
	if err := s.Put(img); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if err := s.Tag(img.ID.String(), "x:"+strconv.Itoa(i%10)); err != nil {
			b.Fatal(err)
		}
	}
}
