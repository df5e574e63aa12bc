package logs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// currentName is the name of the file the monitor appends to.
func currentName(id string) string { return id + "-json.log" }

// CurrentPath is the file the monitor writes id's output to in dir.
func CurrentPath(dir, id string) string { return filepath.Join(dir, currentName(id)) }

// validID refuses ids that would make a path outside dir, or no path.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("container logs %q: id must be a file name: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Paths lists id's log files in dir, oldest first: the rotated files from
// the highest number down, then the current file. A missing directory or
// no files is an empty list, so it suits removal as well as reading.
func Paths(dir, id string) ([]string, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list logs of %s: %w", id, err)
	}
	cur := currentName(id)
	type rotated struct {
		n    int
		name string
	}
	var old []rotated
	hasCurrent := false
	for _, e := range ents {
		name := e.Name()
		if name == cur {
			hasCurrent = true
			continue
		}
		suffix, ok := strings.CutPrefix(name, cur+".")
		if !ok {
			continue
		}
		// Only what the writer makes: .1, .2, ... (no signs, no zero
		// padding), so a stray "x.log.tmp" or "x.log.01" is never read.
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 1 || strconv.Itoa(n) != suffix {
			continue
		}
		old = append(old, rotated{n, name})
	}
	slices.SortFunc(old, func(a, b rotated) int { return b.n - a.n })
	paths := make([]string, 0, len(old)+1)
	for _, r := range old {
		paths = append(paths, filepath.Join(dir, r.name))
	}
	if hasCurrent {
		paths = append(paths, filepath.Join(dir, cur))
	}
	return paths, nil
}

// logFile is an open log file and what fstat said of it when opened.
type logFile struct {
	f    *os.File
	path string // its name when opened; rotation may have changed it since
	fi   os.FileInfo
	size int64
}

func closeAll(files []*logFile) {
	for _, lf := range files {
		lf.f.Close()
	}
}

// errBusy is openSet failing to see the files hold still.
var errBusy = errors.New("log files keep changing while opened")

// openAll opens all of id's log files, oldest first, as one consistent
// set. When the writer rotates without pause, it settles for the files it
// could open, each once.
func openAll(dir, id string) ([]*logFile, error) {
	files, err := openSet(dir, id, nil)
	if errors.Is(err, errBusy) {
		return openSetOnce(dir, id)
	}
	return files, err
}

// openSet opens id's log files, oldest first, as one consistent set, or
// with after set, only the files newer than after's: it opens from the
// newest down and stops at after's file.
//
// The writer may rotate while the files are opened one by one, which
// would make the set skip a file or hold one twice. A rotation changes
// what every existing name points to, so checking each name again after
// opening detects it, and the set is opened again. The writer renames
// from the oldest down, so a set caught mid-rotation, with a gap in the
// numbers, is still in order.
func openSet(dir, id string, after *logFile) ([]*logFile, error) {
	const attempts = 20
	for attempt := 1; ; attempt++ {
		files, ok, err := openSetTry(dir, id, after)
		if err != nil || ok {
			return files, err
		}
		if attempt == attempts {
			return nil, errBusy
		}
		// Let the writer finish its renames: one rotation is a few
		// syscalls per file kept.
		time.Sleep(time.Duration(attempt) * 100 * time.Microsecond)
	}
}

func openSetTry(dir, id string, after *logFile) (files []*logFile, ok bool, err error) {
	paths, err := Paths(dir, id)
	if err != nil {
		return nil, false, err
	}
	found, foundPath := false, ""
	defer func() {
		if !ok || err != nil {
			closeAll(files)
			files = nil
		}
	}()
	for i := len(paths) - 1; i >= 0 && !found; i-- {
		f, err := os.Open(paths[i])
		if errors.Is(err, fs.ErrNotExist) {
			return files, false, nil // renamed since the listing
		}
		if err != nil {
			return files, false, fmt.Errorf("open log: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return files, false, fmt.Errorf("open log: %w", err)
		}
		if after != nil && os.SameFile(fi, after.fi) {
			f.Close()
			found, foundPath = true, paths[i]
			continue
		}
		files = append(files, &logFile{f: f, path: paths[i], fi: fi, size: fi.Size()})
	}
	for _, lf := range files {
		if fi, err := os.Stat(lf.path); err != nil || !os.SameFile(fi, lf.fi) {
			return files, false, nil
		}
	}
	if after != nil {
		if found {
			if fi, err := os.Stat(foundPath); err != nil || !os.SameFile(fi, after.fi) {
				return files, false, nil
			}
		} else if linked(after.f) {
			// Not deleted, so it is under a name the listing missed.
			return files, false, nil
		}
	}
	slices.Reverse(files)
	return files, true, nil
}

// linked reports whether f still has a name.
func linked(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || st.Nlink > 0
}

// openSetOnce opens what it can, each file once, in the listing's order.
func openSetOnce(dir, id string) ([]*logFile, error) {
	paths, err := Paths(dir, id)
	if err != nil {
		return nil, err
	}
	var files []*logFile
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err != nil || slices.ContainsFunc(files, func(o *logFile) bool { return os.SameFile(o.fi, fi) }) {
			f.Close()
			continue
		}
		files = append(files, &logFile{f: f, path: p, fi: fi, size: fi.Size()})
	}
	return files, nil
}
