package opts

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// RestartPolicy is a parsed --restart.
type RestartPolicy struct {
	Name       string // "no", "always", "unless-stopped" or "on-failure"
	MaxRetries int    // on-failure only; 0 is no limit
}

// ParseRestart parses --restart: "no", "always", "unless-stopped" or
// "on-failure[:MAX-RETRIES]". An empty string is "no", Docker's default.
// Like Docker, "on-failure:" counts as no limit and "always:0" passes,
// since a count of 0 is no count.
func ParseRestart(s string) (RestartPolicy, error) {
	if s == "" {
		return RestartPolicy{Name: "no"}, nil
	}
	name, count, hasColon := strings.Cut(s, ":")
	if hasColon && name == "" {
		return RestartPolicy{}, fmt.Errorf("invalid --restart %q: no policy provided before colon: %w", s, errdefs.ErrInvalidArgument)
	}
	var retries int
	if count != "" {
		n, err := strconv.Atoi(count)
		if err != nil {
			return RestartPolicy{}, fmt.Errorf("invalid --restart %q: maximum retry count must be an integer: %w", s, errdefs.ErrInvalidArgument)
		}
		retries = n
	}
	switch name {
	case "no", "always", "unless-stopped":
		if retries != 0 {
			return RestartPolicy{}, fmt.Errorf("invalid --restart %q: maximum retry count can only be used with 'on-failure': %w", s, errdefs.ErrInvalidArgument)
		}
	case "on-failure":
		if retries < 0 {
			return RestartPolicy{}, fmt.Errorf("invalid --restart %q: maximum retry count cannot be negative: %w", s, errdefs.ErrInvalidArgument)
		}
	default:
		return RestartPolicy{}, fmt.Errorf("invalid --restart %q: unknown policy %q; use one of 'no', 'always', 'on-failure', or 'unless-stopped': %w",
			s, name, errdefs.ErrInvalidArgument)
	}
	return RestartPolicy{Name: name, MaxRetries: retries}, nil
}
