package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// overlayIndexParam exists when the kernel's overlay knows the index
// feature; then mounts say index=off, as Docker and containerd do, so an
// upper directory is never tied to the file handles of one set of lowers.
const overlayIndexParam = "/sys/module/overlay/parameters/index"

// overlayMount is the plan for an overlay of lowers (absolute paths, top
// first, as overlay wants them) under upper and work. It fails, wrapping
// errdefs.ErrInvalidArgument, when MountAt could not fit the options in a
// page even with relative paths, or a path holds a character overlay
// would take for a separator.
func overlayMount(lowers []string, upper, work string) (Mount, error) {
	for _, p := range append([]string{upper, work}, lowers...) {
		if strings.ContainsAny(p, ":,\\") {
			return Mount{}, fmt.Errorf("overlay path %q holds ':', ',' or '\\', which overlay options cannot carry; use another --root: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	var opts []string
	if _, err := os.Stat(overlayIndexParam); err == nil {
		opts = append(opts, "index=off")
	}
	opts = append(opts,
		"lowerdir="+strings.Join(lowers, ":"),
		"upperdir="+upper,
		"workdir="+work,
	)
	m := Mount{Type: "overlay", Source: "overlay", Options: opts}
	if _, err := planMount(m); err != nil {
		return Mount{}, err
	}
	return m, nil
}

// probeOverlay mounts a tiny overlay in tmp/: two lowers, the top one
// whiting out a file of the bottom one, and checks that the whiteout hides
// it and a write lands in upper. Called with the store lock held.
func (s *Store) probeOverlay() (err error) {
	dir, dl, err := s.newTmp("probe-")
	if err != nil {
		return err
	}
	defer dl.Close()
	defer func() {
		if rerr := removeTree(dir); err == nil && rerr != nil {
			err = rerr
		}
	}()
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, d := range []string{"lower1", "lower2", "upper", "work", "merged"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(p("lower1/gone"), []byte("x"), 0o644); err != nil {
		return err
	}
	if err := unix.Mknod(p("lower2/gone"), unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("overlay whiteout: %w", os.NewSyscallError("mknod", err))
	}
	m, err := overlayMount([]string{p("lower2"), p("lower1")}, p("upper"), p("work"))
	if err != nil {
		return err
	}
	if err := MountAt([]Mount{m}, p("merged")); err != nil {
		return err
	}
	defer func() {
		if uerr := Unmount(p("merged")); err == nil && uerr != nil {
			err = uerr
		}
	}()
	if _, err := os.Lstat(p("merged/gone")); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("overlay ignores whiteouts here (lstat: %v)", err)
	}
	if err := os.WriteFile(p("merged/new"), []byte("y"), 0o644); err != nil {
		return err
	}
	if _, err := os.Lstat(p("upper/new")); err != nil {
		return fmt.Errorf("overlay write did not reach upperdir: %w", err)
	}
	return nil
}
