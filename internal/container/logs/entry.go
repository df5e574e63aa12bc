package logs

import (
	"encoding/json"
	"time"
	"unicode/utf8"
)

// Entry is one line of a json-file log.
type Entry struct {
	// Stream is "stdout" or "stderr".
	Stream string
	// Time is when the monitor read the output from the container (UTC).
	Time time.Time
	// Log is the output, including its final newline unless the entry is
	// one part of a line longer than 16 KiB (then only the last part ends
	// in a newline). It aliases a buffer of the reader and is valid only
	// until the callback returns: copy it to keep it.
	Log []byte
}

// The only stream names an entry may carry; returning these constants
// rather than slicing the line keeps parsing free of allocations.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// parseLine decodes one log line (without its "\n") into e. e.Log is built
// in *scratch, which parseLine grows and reuses. It reports false for
// anything that is not a whole entry with a known stream and a valid time.
//
// Almost every line is exactly what a json-file writer produces, so a
// hand-written parser for that one shape handles them at a few hundred MB/s;
// anything else (reordered keys, whitespace, "attrs", surrogate pairs,
// invalid UTF-8) goes to encoding/json, whose answer is the definition of
// correct: FuzzRead checks that both agree.
func parseLine(line []byte, e *Entry, scratch *[]byte) bool {
	switch parseFast(line, e, scratch) {
	case fastOK:
		return true
	case fastBad:
		return false
	}
	return parseSlow(line, e, scratch)
}

type fastResult int

const (
	fastOK      fastResult = iota
	fastBad                // certainly not an entry: encoding/json would refuse it too
	fastDecline            // not the usual shape; let encoding/json decide
)

func parseFast(line []byte, e *Entry, scratch *[]byte) fastResult {
	const (
		pLog    = `{"log":"`
		pStream = `,"stream":"`
		pTime   = `,"time":"`
	)
	if !hasPrefix(line, pLog) {
		return fastDecline
	}
	log, rest, ok := unquote(line[len(pLog):], (*scratch)[:0])
	if !ok {
		return fastDecline
	}
	*scratch = log
	if !hasPrefix(rest, pStream) {
		return fastDecline
	}
	rest = rest[len(pStream):]
	var stream string
	switch {
	case hasPrefix(rest, `stdout"`):
		stream = Stdout
	case hasPrefix(rest, `stderr"`):
		stream = Stderr
	default:
		return fastDecline
	}
	rest = rest[len(`stdout"`):]
	if !hasPrefix(rest, pTime) {
		return fastDecline
	}
	rest = rest[len(pTime):]
	// The time is the last value: `...Z"}` ends the line.
	if len(rest) < 2 || rest[len(rest)-2] != '"' || rest[len(rest)-1] != '}' {
		return fastDecline
	}
	ts := rest[:len(rest)-2]
	for _, c := range ts {
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			return fastDecline
		}
	}
	t, ok := parseTimestamp(ts)
	if !ok {
		// The JSON is well-formed, so only the time can be wrong, and
		// time.Parse would say the same (parseTimestamp falls back to it).
		return fastBad
	}
	e.Stream, e.Time, e.Log = stream, t, log
	return fastOK
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// unquote decodes the JSON string starting right after its opening quote,
// appending to dst. It returns the rest of src after the closing quote. It
// declines (ok false) whatever encoding/json treats in a way that is
// fiddly to copy exactly: surrogate escapes and invalid UTF-8, which it
// replaces with U+FFFD, and raw control characters, which it refuses.
func unquote(src, dst []byte) (out, rest []byte, ok bool) {
	i := 0
	for {
		// Copy the run of plain bytes up to the next quote or backslash.
		start, ascii := i, true
		for i < len(src) {
			c := src[i]
			if c == '"' || c == '\\' || c < 0x20 {
				break
			}
			if c >= 0x80 {
				ascii = false
			}
			i++
		}
		if !ascii && !utf8.Valid(src[start:i]) {
			return nil, nil, false
		}
		dst = append(dst, src[start:i]...)
		if i == len(src) || src[i] < 0x20 {
			return nil, nil, false
		}
		if src[i] == '"' {
			return dst, src[i+1:], true
		}
		// A backslash escape.
		if i+1 >= len(src) {
			return nil, nil, false
		}
		switch c := src[i+1]; c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if i+6 > len(src) {
				return nil, nil, false
			}
			r, ok := hex4(src[i+2 : i+6])
			if !ok || utf8.RuneLen(r) < 0 || (r >= 0xd800 && r < 0xe000) {
				return nil, nil, false
			}
			dst = utf8.AppendRune(dst, r)
			i += 4
		default:
			return nil, nil, false
		}
		i += 2
	}
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// parseTimestamp parses an RFC 3339 time. The layout every writer uses,
// UTC with up to nine fraction digits, is parsed by hand (time.Parse is a
// third of the cost of a line otherwise); everything else goes to
// time.Parse, which also rejects what the hand parser declines.
func parseTimestamp(b []byte) (time.Time, bool) {
	if t, ok := parseUTC(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t.UTC(), err == nil
}

// parseUTC parses YYYY-MM-DDTHH:MM:SS[.fffffffff]Z.
func parseUTC(b []byte) (time.Time, bool) {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' ||
		b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // 31 April became 1 May: time.Parse refuses the day
		return time.Time{}, false
	}
	return t, true
}

// jsonLine is the shape encoding/json decodes a line into.
type jsonLine struct {
	Log    *string `json:"log"`
	Stream string  `json:"stream"`
	Time   string  `json:"time"`
}

// parseSlow is the reference decoder: whatever encoding/json makes of the
// line, with the same checks on stream and time as parseFast.
func parseSlow(line []byte, e *Entry, scratch *[]byte) bool {
	var j jsonLine
	if json.Unmarshal(line, &j) != nil || j.Log == nil {
		return false
	}
	var stream string
	switch j.Stream {
	case Stdout:
		stream = Stdout
	case Stderr:
		stream = Stderr
	default:
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return false
	}
	*scratch = append((*scratch)[:0], *j.Log...)
	e.Stream, e.Time, e.Log = stream, t.UTC(), *scratch
	return true
}
