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
	fi   os.FileInfo
	size int64
}

func closeAll(files []*logFile) {
	for _, lf := range files {
		lf.f.Close()
	}
}

// openAll opens id's log files, oldest first, as one consistent set: the
// writer may rotate between two opens, which would make the set skip a
// file or hold one twice. Every rotation changes what every existing name
// points to, so re-checking the names after opening detects it, and the
// set is opened again.
func openAll(dir, id string) ([]*logFile, error) {
	const attempts = 10
	for attempt := 1; ; attempt++ {
		paths, err := Paths(dir, id)
		if err != nil {
			return nil, err
		}
		var files []*logFile
		consistent := true
		for _, p := range paths {
			f, err := os.Open(p)
			if errors.Is(err, fs.ErrNotExist) {
				consistent = false // rotated away since the listing
				continue
			}
			if err != nil {
				closeAll(files)
				return nil, fmt.Errorf("open log: %w", err)
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				closeAll(files)
				return nil, fmt.Errorf("open log: %w", err)
			}
			files = append(files, &logFile{f: f, fi: fi, size: fi.Size()})
		}
		for i, lf := range files {
			if !consistent {
				break
			}
			fi, err := os.Stat(paths[i])
			consistent = err == nil && os.SameFile(fi, lf.fi)
		}
		if consistent {
			return files, nil
		}
		if attempt == attempts {
			// A writer rotating ten times in a row within microseconds:
			// keep what was opened, each file once, so at worst a reader
			// misses some of a log it could not have kept up with.
			return dedup(files), nil
		}
		closeAll(files)
	}
}

func dedup(files []*logFile) []*logFile {
	out := files[:0]
	for _, lf := range files {
		if slices.ContainsFunc(out, func(o *logFile) bool { return os.SameFile(o.fi, lf.fi) }) {
			lf.f.Close()
			continue
		}
		out = append(out, lf)
	}
	return out
}
