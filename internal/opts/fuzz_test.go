package opts

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

// checkMount holds what every Mount a parser returns promises, whatever
// the input: a known type, a clean absolute target other than "/", and a
// source that fits the type.
func checkMount(t *testing.T, in string, m Mount) {
	t.Helper()
	if m.Target == "" || m.Target == "/" || !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target {
		t.Fatalf("%q: bad target %q", in, m.Target)
	}
	switch m.Type {
	case TypeBind:
		if !path.IsAbs(m.Source) || path.Clean(m.Source) != m.Source {
			t.Fatalf("%q: bind source %q is not clean and absolute", in, m.Source)
		}
		if !propagationModes[m.Propagation] {
			t.Fatalf("%q: bind propagation %q", in, m.Propagation)
		}
	case TypeVolume:
		if m.Source != "" && !IsName(m.Source, 2, 0) {
			t.Fatalf("%q: volume name %q", in, m.Source)
		}
		if m.Propagation != "" {
			t.Fatalf("%q: volume with propagation %q", in, m.Propagation)
		}
	case TypeTmpfs:
		if m.Source != "" {
			t.Fatalf("%q: tmpfs with source %q", in, m.Source)
		}
		if m.TmpfsMode > 0o7777 || m.TmpfsSize < 0 {
			t.Fatalf("%q: tmpfs mode %o size %d", in, m.TmpfsMode, m.TmpfsSize)
		}
		for _, o := range m.TmpfsOptions() {
			if o == "" {
				t.Fatalf("%q: empty tmpfs option", in)
			}
		}
	default:
		t.Fatalf("%q: type %q", in, m.Type)
	}
}

func checkErr(t *testing.T, in string, err error) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("%q: error %q has no errdefs class", in, err)
	}
	if strings.ContainsRune(err.Error(), '\n') {
		t.Fatalf("%q: error %q is not one line", in, err)
	}
}

func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/host:/ctr", "/host:/ctr:ro,rshared,z", "vol:/data:nocopy", "/data", "./rel:/x",
		"/a:/b:c:d", "/a:/", "v:/x", "~/x:/y", "/a::ro", "/x:ro", "/a:/b:ro,ro", ":", "/a:/b:cached"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseVolume(spec)
		if err != nil {
			checkErr(t, spec, err)
			return
		}
		if m.Type == TypeTmpfs {
			t.Fatalf("%q: -v made a tmpfs", spec)
		}
		checkMount(t, spec, m)
		if m.Type == TypeBind && !m.CreateSource {
			t.Fatalf("%q: -v bind that does not create its source", spec)
		}
	})
}

func FuzzParseMount(f *testing.F) {
	for _, s := range []string{"type=bind,src=/a,dst=/b,ro", "type=volume,source=v1,target=/d,volume-nocopy",
		"type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1777", `type=bind,"src=/a,b",dst=/c`, "target=/x",
		"type=bind,src=/a,dst=/b,bind-propagation=rslave,bind-recursive=disabled,bind-create-src=1",
		"type=tmpfs,src=x,dst=/y", "a", "=", ",,,", `"`, "type=bind,src=./x,dst=/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseMount(spec)
		if err != nil {
			checkErr(t, spec, err)
			return
		}
		checkMount(t, spec, m)
		if m.Options != nil {
			t.Fatalf("%q: --mount produced raw options %q", spec, m.Options)
		}
	})
}

func FuzzParseTmpfs(f *testing.F) {
	for _, s := range []string{"/run", "/run:rw,size=64m,mode=1777", "/x:ro,rw,exec", "/:size=1", "/x:,", "/x:bind"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		m, err := ParseTmpfs(spec)
		if err != nil {
			checkErr(t, spec, err)
			return
		}
		if m.Type != TypeTmpfs {
			t.Fatalf("%q: type %q", spec, m.Type)
		}
		checkMount(t, spec, m)
	})
}

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"512m", "1.5g", "1024", "10MB", "2KiB", "1 k", "-1", "1e400", "0x1p10", ".", "8192p", "9e18"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		binary, err := ParseMemory(s)
		if err != nil {
			checkErr(t, s, err)
		} else if binary < 0 {
			t.Fatalf("ParseMemory(%q) = %d", s, binary)
		}
		decimal, err2 := ParseSize(s)
		if err2 != nil {
			checkErr(t, s, err2)
		} else if decimal < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, decimal)
		}
		// The syntax is the same, only the units differ, and a decimal unit
		// is never the larger one.
		if err == nil && err2 == nil && decimal > binary {
			t.Fatalf("%q: decimal %d > binary %d", s, decimal, binary)
		}
	})
}
