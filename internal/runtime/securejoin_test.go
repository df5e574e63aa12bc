package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "real/dir"), 0o755))
	must(os.Symlink("/real", filepath.Join(root, "abs")))
	must(os.Symlink("real/dir", filepath.Join(root, "rel")))
	must(os.Symlink("../../../../etc", filepath.Join(root, "real/escape")))
	must(os.Symlink("..", filepath.Join(root, "real/up")))
	must(os.Symlink("loop", filepath.Join(root, "loop")))

	tests := []struct {
		in      string
		want    string
		escapes bool
	}{
		{in: "/real/dir", want: "real/dir"},
		{in: "/abs/dir", want: "real/dir"},
		{in: "/rel", want: "real/dir"},
		{in: "/rel/new/deeper", want: "real/dir/new/deeper"},
		{in: "/../../real", want: "real"},
		{in: "/real/up/real/dir", want: "real/dir"},
		{in: "/real/escape", escapes: true},
		{in: "/real/escape/passwd", escapes: true},
		{in: "/missing/../../x", want: "x"},
		{in: "/", want: ""},
	}
	for _, tt := range tests {
		got, err := resolveInRoot(root, tt.in)
		if tt.escapes {
			if !errors.Is(err, errEscapes) {
				t.Errorf("resolveInRoot(%q) = %q, %v; want escape error", tt.in, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("resolveInRoot(%q): %v", tt.in, err)
			continue
		}
		if want := filepath.Join(root, tt.want); got != want {
			t.Errorf("resolveInRoot(%q) = %q, want %q", tt.in, got, want)
		}
	}
	if _, err := resolveInRoot(root, "/loop"); err == nil {
		t.Error("symlink loop: want error")
	}
}
