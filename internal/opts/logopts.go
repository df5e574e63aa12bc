package opts

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// LogOpts are the --log-opt values of the json-file log driver, the one
// berth has.
type LogOpts struct {
	MaxSize int64 // bytes before the log rotates; 0 is no limit
	MaxFile int   // log files kept, the live one included; at least 1
}

// ParseLogOpts parses --log-opt KEY=VALUE values as Docker's json-file
// driver reads them. max-size uses decimal units ("10m" is 10,000,000
// bytes, ParseSize) and must be positive; max-file is an integer of at
// least 1 (default 1). As in Docker, max-file without max-size is
// accepted and has no effect, since nothing rotates an unbounded log.
// A later value for a key replaces an earlier one.
//
// Docker's other json-file options (compress, and the tag, labels and env
// attributes) are refused with errdefs.ErrNotImplemented rather than
// ignored, so nobody relies on them silently; compress=false is accepted
// since it asks for nothing.
func ParseLogOpts(values []string) (LogOpts, error) {
	o := LogOpts{MaxFile: 1}
	for _, v := range values {
		key, val, ok := strings.Cut(v, "=")
		if !ok {
			return LogOpts{}, fmt.Errorf("invalid --log-opt %q: write KEY=VALUE, such as max-size=10m: %w", v, errdefs.ErrInvalidArgument)
		}
		switch key {
		case "max-size":
			n, err := ParseSize(val)
			if err != nil {
				return LogOpts{}, fmt.Errorf("invalid --log-opt %q: %w", v, err)
			}
			if n <= 0 {
				return LogOpts{}, fmt.Errorf("invalid --log-opt %q: max-size must be a positive number: %w", v, errdefs.ErrInvalidArgument)
			}
			o.MaxSize = n
		case "max-file":
			n, err := strconv.Atoi(val)
			if err != nil {
				return LogOpts{}, fmt.Errorf("invalid --log-opt %q: max-file must be an integer: %w", v, errdefs.ErrInvalidArgument)
			}
			if n < 1 {
				return LogOpts{}, fmt.Errorf("invalid --log-opt %q: max-file cannot be less than 1: %w", v, errdefs.ErrInvalidArgument)
			}
			o.MaxFile = n
		case "compress":
			on, err := strconv.ParseBool(val)
			if err != nil {
				return LogOpts{}, fmt.Errorf("invalid --log-opt %q: compress must be true or false: %w", v, errdefs.ErrInvalidArgument)
			}
			if on {
				return LogOpts{}, fmt.Errorf("--log-opt %q: compressed log rotation is not supported by berth, remove it: %w", v, errdefs.ErrNotImplemented)
			}
		case "tag", "labels", "labels-regex", "env", "env-regex":
			return LogOpts{}, fmt.Errorf("--log-opt %q: log attribute %q is not supported by berth, remove it: %w", v, key, errdefs.ErrNotImplemented)
		default:
			return LogOpts{}, fmt.Errorf("invalid --log-opt %q: unknown log opt %q for json-file log driver, the known ones are max-size and max-file: %w",
				v, key, errdefs.ErrInvalidArgument)
		}
	}
	return o, nil
}
