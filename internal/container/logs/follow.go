package logs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// follow reads what is there, then what is written, until Stop.
func (r *reader) follow() error {
	// Watch before the first read, so a write between the read reaching
	// the end and the wait is never missed.
	w := watch(r.dir, currentName(r.id))
	defer w.close()

	var untilC <-chan time.Time
	if !r.opts.Until.IsZero() {
		t := time.NewTimer(time.Until(r.opts.Until))
		defer t.Stop()
		untilC = t.C
	}

	var cur *lineReader
	defer func() {
		if cur != nil {
			cur.lf.f.Close()
		}
	}()
	files, err := openAll(r.dir, r.id)
	if err != nil {
		return err
	}
	if len(files) > 0 {
		last := files[len(files)-1]
		cur = newLineReader(last, last.f)
		if err := r.catchUp(files); err != nil {
			return err
		}
	}

	// retry wakes the loop when the writer kept the files moving
	// (errBusy), as it may fall silent right after.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	stopping := false
	for {
		err := r.pump(&cur)
		busy := errors.Is(err, errBusy)
		if err != nil && !busy {
			return err
		}
		if stopping {
			return nil
		}
		if busy {
			retry.Reset(pollInterval)
		}
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-r.opts.Stop:
			stopping = true // deliver what was written up to now, then return
		case <-untilC:
			stopping = true
		case <-w.c:
		case <-retry.C:
		}
	}
}

// pump delivers everything written so far: what *cur has, then, if the
// writer rotated it away, the files that are newer, ending with *cur on
// the newest file.
func (r *reader) pump(cur **lineReader) error {
	current := CurrentPath(r.dir, r.id)
	for {
		c := *cur
		if c != nil {
			if err := r.drain(c); err != nil {
				return err
			}
			fi, err := os.Stat(current)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("follow log: %w", err)
			}
			if err == nil && os.SameFile(fi, c.lf.fi) {
				truncated, err := c.truncated()
				if err != nil || !truncated {
					return err
				}
				continue // start over from the top of the file
			}
			// Renamed away (or deleted): all the writer put into it came
			// before the rename, so this drain is its last.
			if err := r.drain(c); err != nil {
				return err
			}
			c.dropPartial()
		}
		var newer []*logFile
		var err error
		if c == nil {
			newer, err = openAll(r.dir, r.id)
		} else {
			newer, err = openSet(r.dir, r.id, c.lf)
		}
		if err != nil {
			return err
		}
		if len(newer) == 0 {
			return nil // the writer has not created the next file yet
		}
		if c != nil {
			c.lf.f.Close()
		}
		last := newer[len(newer)-1]
		*cur = newLineReader(last, last.f)
		if err := r.wholes(newer[:len(newer)-1], 0); err != nil {
			return err
		}
	}
}

// catchUp delivers what files (a set from openAll) hold before their
// newest file, from where opts.Tail says to start, and positions the
// newest file, which the caller owns, there or at its start.
func (r *reader) catchUp(files []*logFile) error {
	i, off, err := r.start(files)
	if err != nil {
		closeAll(files[:len(files)-1])
		return err
	}
	last := files[len(files)-1]
	if i == len(files)-1 {
		closeAll(files[:i])
		if _, err := last.f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		return nil
	}
	closeAll(files[:i])
	return r.wholes(files[i:len(files)-1], off)
}

// wholes delivers the rotated files rotated, the first from off on, and
// closes them.
func (r *reader) wholes(rotated []*logFile, off int64) error {
	defer closeAll(rotated)
	for _, lf := range rotated {
		if err := r.whole(lf, off, true); err != nil {
			return err
		}
		off = 0
	}
	return nil
}

// truncated reports whether the file shrank below what was read, as a
// writer truncating in place (max-file 1) does, and if so starts reading
// it again from the top.
func (lr *lineReader) truncated() (bool, error) {
	fi, err := lr.lf.f.Stat()
	if err != nil {
		return false, fmt.Errorf("follow log: %w", err)
	}
	pos, err := lr.lf.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return false, fmt.Errorf("follow log: %w", err)
	}
	if fi.Size() >= pos {
		return false, nil
	}
	if _, err := lr.lf.f.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("follow log: %w", err)
	}
	lr.br.Reset(lr.lf.f)
	lr.dropPartial()
	return true, nil
}
