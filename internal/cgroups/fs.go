package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// writeFile writes value to an existing interface file in one write(2),
// which is how cgroupfs takes a value. It never creates the file: on
// cgroupfs a missing file means the kernel lacks the feature, and in a
// test tree it means the fake kernel does.
func writeFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err == nil {
		_, err = f.WriteString(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("write %s %q: %w", p, value, err)
	}
	return nil
}

func readFile(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b)), err
}

// readUint reads a single-number file; "max" reads as 0, no limit.
func readUint(dir, file string) (uint64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return 0, err
	}
	return parseUint(s, filepath.Join(dir, file))
}

func parseUint(s, what string) (uint64, error) {
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Some v1 files go negative when unset (e.g. cfs_quota_us -1).
		if n, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && n < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parse %s: %q is not a number", what, s)
	}
	return v, nil
}

// readKeyed reads "key value" lines (memory.stat, cpu.stat, *.events).
func readKeyed(dir, file string) (map[string]uint64, error) {
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseKeyed(f, filepath.Join(dir, file))
}

func parseKeyed(r io.Reader, what string) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		n, err := parseUint(strings.TrimSpace(v), what)
		if err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, sc.Err()
}

// applyWrites resolves every write before making the first, so that a
// limit the host cannot honour fails the whole Set with nothing changed.
// dirOf maps a write's controller to its directory, "" when unmounted.
func applyWrites(ws []write, dirOf func(controller string) string) error {
	type target struct {
		w   write
		dir string
	}
	var todo []target
	for _, w := range ws {
		dir := dirOf(w.controller)
		if dir == "" {
			if w.optional {
				continue
			}
			return missingController(w)
		}
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("cgroup %s does not exist (Apply creates it): %w", dir, errdefs.ErrNotFound)
		}
		chosen, ok := w, false
		for c := &w; c != nil; c = c.alt {
			if _, err := os.Stat(filepath.Join(dir, c.file)); err == nil {
				chosen, ok = *c, true
				break
			}
		}
		if !ok {
			if w.optional {
				continue
			}
			missing := w.file + " is"
			if w.alt != nil {
				missing = "both " + w.file + " and " + w.alt.file + " are"
			}
			return fmt.Errorf("%s: %s missing from %s: the %s controller does not offer it here (not enabled, or not in this kernel): %w",
				w.field, missing, dir, w.controller, errdefs.ErrFailedPrecondition)
		}
		todo = append(todo, target{chosen, dir})
	}
	for _, t := range todo {
		if err := writeFile(t.dir, t.w.file, t.w.value); err != nil {
			if t.w.retryLater && errors.Is(err, unix.EINVAL) {
				continue
			}
			return err
		}
	}
	return nil
}

// readProcs lists the processes of dir and every cgroup below it.
func readProcs(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil // a child removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		s, err := readFile(p, "cgroup.procs")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		for f := range strings.FieldsSeq(s) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("parse %s: %q is not a pid", filepath.Join(p, "cgroup.procs"), f)
			}
			pids = append(pids, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// removeTree removes a cgroup and every cgroup below it, deepest first,
// as rmdir only takes an empty cgroup. EBUSY with no process left is
// retried for a moment: the kernel reports it briefly after the last
// process exits, until the exit has been fully accounted.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	delay := time.Millisecond
	for deadline := time.Now().Add(2 * time.Second); ; {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && !hasProcs(dir) && time.Now().Before(deadline):
			time.Sleep(delay)
			delay = min(2*delay, 100*time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("remove cgroup %s: %w (processes are still in it): %w", dir, os.NewSyscallError("rmdir", err), errdefs.ErrConflict)
		default:
			return fmt.Errorf("remove cgroup %s: %w", dir, os.NewSyscallError("rmdir", err))
		}
	}
}

// hasProcs reports whether processes live in dir, which no waiting cures.
func hasProcs(dir string) bool {
	s, err := readFile(dir, "cgroup.procs")
	return err == nil && s != ""
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() (bool, error)) (bool, error) {
	delay := time.Millisecond
	for deadline := time.Now().Add(timeout); ; {
		ok, err := cond()
		if ok || err != nil {
			return ok, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}
