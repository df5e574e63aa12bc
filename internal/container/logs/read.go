package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// ReadOpts selects what Read delivers.
type ReadOpts struct {
	// Tail is -1 for every entry, or N for only the last N entries of
	// the whole log (all files), like docker logs --tail N. Beware: the
	// zero value is --tail 0, nothing but what a follower sees written.
	// Lines that are not entries do not count. As in Docker, Tail picks
	// the entries first and Since then filters them.
	Tail int
	// Since skips entries older than it; zero means no bound.
	Since time.Time
	// Until ends the read at the first entry newer than it (entries are
	// in time order); zero means no bound. A follower also stops when
	// the clock passes Until.
	Until time.Time
	// Follow keeps reading what the container writes, across rotations,
	// until Stop is closed; then Read delivers what has been written by
	// that moment and returns nil. Follow with an Until already past
	// reads what is there and returns, as docker logs does.
	Follow bool
	// Stop is closed by the caller when the container has exited or the
	// user has had enough. A nil Stop follows until ctx ends.
	Stop <-chan struct{}
}

// errUntil ends a read at the first entry past Until; Read returns nil.
var errUntil = errors.New("past until")

// Read calls fn with id's log entries in dir, oldest first, as opts
// selects. An error from fn ends the read and is returned as is. Read
// returns ctx.Err() when ctx ends first; a missing dir is
// errdefs.ErrNotFound. Entries written by the monitor's one writer are
// delivered in order, each once.
func Read(ctx context.Context, dir, id string, opts ReadOpts, fn func(Entry) error) error {
	if err := validID(id); err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read logs of %s: directory %s: %w", id, dir, errdefs.ErrNotFound)
		}
		return fmt.Errorf("read logs of %s: %w", id, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("read logs of %s: %s is not a directory: %w", id, dir, errdefs.ErrInvalidArgument)
	}
	follow := opts.Follow
	if !opts.Until.IsZero() && !opts.Until.After(time.Now()) {
		follow = false
	}
	r := &reader{ctx: ctx, dir: dir, id: id, opts: opts, fn: fn, buf: make([]byte, chunk)}
	var err error
	if follow {
		err = r.follow()
	} else {
		err = r.once()
	}
	if errors.Is(err, errUntil) {
		return nil
	}
	return err
}

// reader is the state of one Read.
type reader struct {
	ctx     context.Context
	dir, id string
	opts    ReadOpts
	fn      func(Entry) error
	entry   Entry
	scratch []byte // backs entry.Log
	buf     []byte // for backward scans
	lines   int    // since the last look at ctx
}

// once reads what is there and returns.
func (r *reader) once() error {
	files, err := openAll(r.dir, r.id)
	if err != nil {
		return err
	}
	defer closeAll(files)
	if len(files) == 0 {
		return nil
	}
	i, off, err := r.start(files)
	if err != nil {
		return err
	}
	for ; i < len(files); i, off = i+1, 0 {
		if err := r.whole(files[i], off, i < len(files)-1); err != nil {
			return err
		}
	}
	return nil
}

// whole delivers lf's entries from off to its end, skipping the file when
// Since shows none of them can be wanted (only for rotated files, which
// no longer grow).
func (r *reader) whole(lf *logFile, off int64, rotated bool) error {
	if rotated && !r.opts.Since.IsZero() {
		if t, ok := r.lastTime(lf); ok && t.Before(r.opts.Since) {
			return nil
		}
	}
	lr, err := r.at(lf, off)
	if err != nil {
		return err
	}
	return r.drain(lr)
}

// at returns a lineReader for lf from offset off on.
func (r *reader) at(lf *logFile, off int64) (*lineReader, error) {
	if _, err := lf.f.Seek(off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	return newLineReader(lf, lf.f), nil
}

// drain delivers every complete line lr has now.
func (r *reader) drain(lr *lineReader) error {
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := r.line(line); err != nil {
			return err
		}
	}
}

// line delivers one line if it is a wanted entry.
func (r *reader) line(b []byte) error {
	if r.lines++; r.lines == 256 {
		r.lines = 0
		if err := r.ctx.Err(); err != nil {
			return err
		}
	}
	if !parseLine(b, &r.entry, &r.scratch) {
		return nil // not an entry: a reader never fails on what a writer left
	}
	if !r.opts.Since.IsZero() && r.entry.Time.Before(r.opts.Since) {
		return nil
	}
	if !r.opts.Until.IsZero() && r.entry.Time.After(r.opts.Until) {
		return errUntil
	}
	return r.fn(r.entry)
}

// start is where reading begins in files: the beginning, or far enough
// back from the end for opts.Tail entries.
//
// It counts lines backwards (cheap: a search for newlines in chunks read
// from the end), then parses the lines it counted to see how many were
// entries, and goes further back for the difference. So the cost is the
// size of the tail, not of the log.
func (r *reader) start(files []*logFile) (int, int64, error) {
	need := r.opts.Tail
	if need < 0 {
		return 0, 0, nil
	}
	for i := len(files) - 1; i >= 0; i-- {
		lf := files[i]
		end, err := completeEnd(lf.f, lf.size, r.buf)
		if err != nil {
			return 0, 0, err
		}
		if need == 0 {
			return i, end, nil
		}
		for end > 0 {
			nl, _, err := newlineBack(lf.f, end, need+1, r.buf)
			if err != nil {
				return 0, 0, err
			}
			start := nl + 1
			n, err := countEntries(lf, start, end)
			if err != nil {
				return 0, 0, err
			}
			need -= n
			end = start
			if need == 0 {
				return i, end, nil
			}
		}
	}
	return 0, 0, nil
}

// countEntries counts the entries among the lines in [start, end).
func countEntries(lf *logFile, start, end int64) (int, error) {
	lr := newLineReader(lf, io.NewSectionReader(lf.f, start, end-start))
	var e Entry
	var scratch []byte
	n := 0
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		if parseLine(line, &e, &scratch) {
			n++
		}
	}
}

// lastTime is the time of lf's last entry, if its last line is one.
func (r *reader) lastTime(lf *logFile) (time.Time, bool) {
	end, err := completeEnd(lf.f, lf.size, r.buf)
	if err != nil || end == 0 {
		return time.Time{}, false
	}
	nl, _, err := newlineBack(lf.f, end, 2, r.buf)
	if err != nil || end-(nl+1) > maxLine {
		return time.Time{}, false
	}
	line := make([]byte, end-(nl+1)-1)
	if _, err := lf.f.ReadAt(line, nl+1); err != nil {
		return time.Time{}, false
	}
	var e Entry
	var scratch []byte
	if !parseLine(line, &e, &scratch) {
		return time.Time{}, false
	}
	return e.Time, true
}
