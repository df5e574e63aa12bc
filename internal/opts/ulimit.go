package opts

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Ulimit is one --ulimit: a resource limit for the container's process.
// -1 in Soft or Hard means unlimited (RLIM_INFINITY).
type Ulimit struct {
	Name string // as typed: "nofile", "nproc"...
	Soft int64
	Hard int64
}

// ulimitNames maps Docker's --ulimit names to the OCI rlimit types. "as" is
// missing on purpose, as in Docker: an address-space limit breaks the
// runtime's own startup.
var ulimitNames = map[string]string{
	"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
	"locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
	"nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
	"rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
	"stack": "RLIMIT_STACK",
}

// ParseUlimit parses --ulimit NAME=SOFT[:HARD] ("nofile=1024:2048",
// "nproc=512"). A single value sets both limits. The soft limit may not
// exceed the hard one, and -1 stands for unlimited in either place.
func ParseUlimit(s string) (Ulimit, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return Ulimit{}, fmt.Errorf("invalid --ulimit %q: write NAME=SOFT[:HARD], such as nofile=1024:2048: %w", s, errdefs.ErrInvalidArgument)
	}
	if _, known := ulimitNames[name]; !known {
		return Ulimit{}, fmt.Errorf("invalid --ulimit %q: unknown ulimit type %q, use one of %s: %w",
			s, name, strings.Join(UlimitNames(), ", "), errdefs.ErrInvalidArgument)
	}
	softStr, hardStr, twoValues := strings.Cut(val, ":")
	soft, err := parseLimit(s, softStr)
	if err != nil {
		return Ulimit{}, err
	}
	hard := soft
	if twoValues {
		if hard, err = parseLimit(s, hardStr); err != nil {
			return Ulimit{}, err
		}
	}
	if hard != -1 && (soft == -1 || soft > hard) {
		return Ulimit{}, fmt.Errorf("invalid --ulimit %q: the soft limit must be less than or equal to the hard limit: %w", s, errdefs.ErrInvalidArgument)
	}
	return Ulimit{Name: name, Soft: soft, Hard: hard}, nil
}

// parseLimit reads one limit. Docker lets any negative number through and
// the kernel then sees a huge unsigned value; only -1 (unlimited) is kept.
func parseLimit(s, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < -1 {
		return 0, fmt.Errorf("invalid --ulimit %q: limit %q is not a number, or -1 for unlimited: %w", s, v, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// UlimitNames lists the names --ulimit accepts, sorted.
func UlimitNames() []string {
	names := make([]string, 0, len(ulimitNames))
	for n := range ulimitNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RlimitType returns the OCI rlimit type of a --ulimit name: "nofile" is
// "RLIMIT_NOFILE".
func RlimitType(name string) (string, error) {
	t, ok := ulimitNames[name]
	if !ok {
		return "", fmt.Errorf("unknown ulimit type %q: use one of %s: %w", name, strings.Join(UlimitNames(), ", "), errdefs.ErrInvalidArgument)
	}
	return t, nil
}

// Rlimit returns the limit as an OCI process.rlimits entry wants it:
// unlimited (-1) becomes RLIM_INFINITY, the all-ones uint64.
func (u Ulimit) Rlimit() (typ string, soft, hard uint64, err error) {
	typ, err = RlimitType(u.Name)
	return typ, rlim(u.Soft), rlim(u.Hard), err
}

func rlim(v int64) uint64 {
	if v < 0 {
		return math.MaxUint64
	}
	return uint64(v)
}
