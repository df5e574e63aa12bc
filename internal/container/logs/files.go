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
		return fmt.Errorf("read logs: container id %q is not a file name: %w", id, errdefs.ErrInvalidArgument)
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
// with after set, only the files newer than after's.
//
// The writer may rotate while the files are opened one by one, which
// would make a set skip a file or hold one twice, so the set is opened
// again until it is consistent. Consistent means: opened by number from
// the newest (current, .1, .2, ...) with no gap, each name still holding
// the file opened through it once all are open (a rename only ever moves
// a file to a higher number, so an unchanged name was not touched in
// between: there was an instant when all of them held what was opened),
// and ending at after's file or at the last number there is. The one gap
// allowed is a missing current file, between a rotation's last rename and
// the writer creating the new file.
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
		// Let the writer finish its renames: one rotation is a rename
		// per file kept.
		time.Sleep(time.Duration(attempt) * 100 * time.Microsecond)
	}
}

func openSetTry(dir, id string, after *logFile) (files []*logFile, ok bool, err error) {
	defer func() {
		if !ok || err != nil {
			closeAll(files)
			files = nil
		}
	}()
	cur := CurrentPath(dir, id)
	found, foundPath, end := false, "", 0
	for n := 0; ; n++ {
		p := cur
		if n > 0 {
			p = cur + "." + strconv.Itoa(n)
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			if n == 0 {
				continue
			}
			end = n
			break
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
			found, foundPath = true, p
			break
		}
		files = append(files, &logFile{f: f, path: p, fi: fi, size: fi.Size()})
	}
	for _, lf := range files {
		if fi, err := os.Stat(lf.path); err != nil || !os.SameFile(fi, lf.fi) {
			return files, false, nil
		}
	}
	if found {
		if fi, err := os.Stat(foundPath); err != nil || !os.SameFile(fi, after.fi) {
			return files, false, nil
		}
	} else {
		// The walk met a missing number: the end, or a gap in the middle
		// of a rotation, which leaves a higher number behind it.
		last, err := lastRotated(dir, id)
		if err != nil {
			return files, false, err
		}
		if last >= end {
			return files, false, nil
		}
		if after != nil && linked(after.f) {
			// after's file is not deleted, so it moved out of reach.
			return files, false, nil
		}
	}
	slices.Reverse(files)
	return files, true, nil
}

// lastRotated is the highest number among id's rotated files, or 0.
func lastRotated(dir, id string) (int, error) {
	paths, err := Paths(dir, id)
	if err != nil || len(paths) == 0 {
		return 0, err
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Ext(paths[0]), "."))
	return n, nil
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
