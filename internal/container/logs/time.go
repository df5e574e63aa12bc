package logs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

// ParseTime parses a --since or --until value as docker logs does,
// relative to now:
//
//	10m, 1h30m, 90s                    a Go duration: now minus it
//	2026-11-22T07:31:10.5Z             RFC 3339, with a zone (Z or ±hh:mm)
//	2026-11-22T07:31:10, ...T07:31, ...T07, 2026-11-22
//	                                   without a zone: in now's location
//	1700000000, 1700000000.5           Unix seconds, with up to 9 fraction digits
//
// "" is the zero time (no bound). Anything else is
// errdefs.ErrInvalidArgument, naming the value.
func ParseTime(value string, now time.Time) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	// "0" reads as a duration but means the epoch, as in Docker.
	if d, err := time.ParseDuration(value); err == nil && value != "0" {
		return now.Add(-d), nil
	}
	t, err := parseDate(value, now.Location())
	if err == nil {
		return t, nil
	}
	// A Unix time has no dash: with one, it was a date, and what was
	// wrong with it is the useful part.
	var pe *time.ParseError
	if strings.Contains(value, "-") && errors.As(err, &pe) && pe.Message != "" {
		return time.Time{}, fmt.Errorf("parse time %q: %s: %w", value, strings.TrimPrefix(pe.Message, ": "), errdefs.ErrInvalidArgument)
	}
	if t, ok := parseUnix(value); ok && !strings.Contains(value, "-") {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("parse time %q: want a duration (10m), an RFC 3339 time "+
		"(2006-01-02T15:04:05Z), a date (2006-01-02) or Unix seconds (1700000000.5): %w",
		value, errdefs.ErrInvalidArgument)
}

// parseDate picks the layout the way Docker's client does: a value with a
// Z, a + or a third dash (the zone's) carries its zone; any other is in
// loc. The number of colons says how much of the time of day is given.
func parseDate(value string, loc *time.Location) (time.Time, error) {
	zoned := strings.ContainsAny(value, "zZ+") || strings.Count(value, "-") == 3
	var layout string
	switch {
	case strings.Contains(value, "."):
		layout = "2006-01-02T15:04:05.999999999"
	case strings.Contains(value, "T"):
		colons := strings.Count(value, ":")
		if zoned && !strings.ContainsAny(value, "zZ") && colons > 0 {
			colons-- // the one in the ±hh:mm offset
		}
		switch colons {
		case 0:
			layout = "2006-01-02T15"
		case 1:
			layout = "2006-01-02T15:04"
		default:
			layout = "2006-01-02T15:04:05"
		}
	default:
		layout = "2006-01-02"
	}
	if zoned {
		return time.Parse(layout+"Z07:00", value)
	}
	return time.ParseInLocation(layout, value, loc)
}

// parseUnix parses seconds since the epoch with an optional fraction.
func parseUnix(value string) (time.Time, bool) {
	secs, frac, hasFrac := strings.Cut(value, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	var ns int64
	if hasFrac {
		if frac == "" || strings.Trim(frac, "0123456789") != "" {
			return time.Time{}, false
		}
		frac = (frac + "000000000")[:9] // digits past nanoseconds are dropped
		ns, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(s, ns), true
}
