package logs

import "io"

// TimeFormat is how docker logs -t prints an entry's time: RFC 3339 with
// all nine fraction digits, so the columns line up.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Formatter writes entries as docker logs prints them: each to Stdout or
// Stderr by its stream, optionally after its time and a space. A nil
// writer drops its stream. It is not safe for concurrent use.
type Formatter struct {
	Stdout, Stderr io.Writer
	// Timestamps prefixes each line with its entry's time (docker logs -t).
	Timestamps bool

	// midLine is, per stream, whether the last entry was part of a line
	// split at 16 KiB: its continuation gets no second timestamp, so the
	// line prints as the container wrote it.
	midLine [2]bool
	buf     []byte
}

// Write writes one entry. Only the entry's bytes go out, in one Write
// call per entry, so lines from the two streams never interleave within
// an entry when both writers are the same terminal.
func (f *Formatter) Write(e Entry) error {
	w, s := f.Stdout, 0
	if e.Stream == Stderr {
		w, s = f.Stderr, 1
	}
	if w == nil {
		return nil
	}
	out := e.Log
	if f.Timestamps && !f.midLine[s] {
		f.buf = e.Time.UTC().AppendFormat(f.buf[:0], TimeFormat)
		f.buf = append(f.buf, ' ')
		f.buf = append(f.buf, e.Log...)
		out = f.buf
	}
	f.midLine[s] = len(e.Log) > 0 && e.Log[len(e.Log)-1] != '\n'
	_, err := w.Write(out)
	return err
}
