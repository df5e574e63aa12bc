package logs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

const (
	// maxLine caps one line in memory. A writer splits output at 16 KiB,
	// so an entry is under 100 KiB even fully escaped; anything longer is
	// not an entry and is skipped rather than buffered.
	maxLine = 1 << 20
	// chunk is the read size, forwards and backwards.
	chunk = 64 << 10
)

// lineReader returns the complete lines of a file, one at a time, and
// keeps a line still being written until its newline arrives.
type lineReader struct {
	lf       *logFile
	br       *bufio.Reader
	pending  []byte // the start of a line that spans reads
	reuse    bool   // pending was handed out: empty it on the next call
	skipping bool   // inside a line longer than maxLine: drop up to its newline
}

func newLineReader(lf *logFile, r io.Reader) *lineReader {
	return &lineReader{lf: lf, br: bufio.NewReaderSize(r, chunk)}
}

// next returns the next complete line without its newline, valid until
// the following call, or io.EOF when no complete line is there yet. A
// later call returns lines appended since, so a follower calls it again
// after the file grows.
func (lr *lineReader) next() ([]byte, error) {
	if lr.reuse {
		lr.pending, lr.reuse = lr.pending[:0], false
	}
	for {
		frag, err := lr.br.ReadSlice('\n')
		switch {
		case err == nil && lr.skipping:
			lr.skipping = false
		case err == nil && len(lr.pending) == 0:
			return frag[:len(frag)-1], nil
		case err == nil:
			if len(lr.pending)+len(frag)-1 > maxLine {
				lr.pending = lr.pending[:0]
				continue
			}
			lr.pending = append(lr.pending, frag[:len(frag)-1]...)
			lr.reuse = true
			return lr.pending, nil
		case errors.Is(err, bufio.ErrBufferFull) || errors.Is(err, io.EOF):
			// Part of a line: keep it unless the line is too long.
			if !lr.skipping {
				if len(lr.pending)+len(frag) > maxLine {
					lr.pending, lr.skipping = lr.pending[:0], true
				} else {
					lr.pending = append(lr.pending, frag...)
				}
			}
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
		default:
			return nil, fmt.Errorf("read log: %w", err)
		}
	}
}

// dropPartial forgets a line that will never be completed: the end of a
// rotated file that the writer left mid-line (it crashed), or a file that
// was truncated.
func (lr *lineReader) dropPartial() {
	lr.pending, lr.reuse, lr.skipping = lr.pending[:0], false, false
}

// newlineBack returns the offset of the n-th newline before end, counting
// backwards (n = 1 is the last one), reading chunks with ReadAt so the
// descriptor's offset is untouched. It returns -1 with the number of
// newlines seen when there are fewer.
func newlineBack(f *os.File, end int64, n int, buf []byte) (int64, int, error) {
	seen := 0
	for pos := end; pos > 0; {
		size := min(int64(len(buf)), pos)
		b := buf[:size]
		if _, err := f.ReadAt(b, pos-size); err != nil {
			return 0, 0, fmt.Errorf("read log: %w", err)
		}
		for {
			i := bytes.LastIndexByte(b, '\n')
			if i < 0 {
				break
			}
			if seen++; seen == n {
				return pos - size + int64(i), seen, nil
			}
			b = b[:i]
		}
		pos -= size
	}
	return -1, seen, nil
}

// completeEnd is where the complete lines of the first size bytes end:
// just after the last newline, or 0.
func completeEnd(f *os.File, size int64, buf []byte) (int64, error) {
	i, _, err := newlineBack(f, size, 1, buf)
	return i + 1, err
}
