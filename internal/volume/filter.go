package volume

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"

	"github.com/berth-dev/berth/internal/opts"
)

// Filter selects volumes as `docker volume ls --filter` and `docker volume
// prune --filter` do. The zero Filter matches every volume. Values of one
// key are alternatives (any name, any driver), except labels, which must
// all match, as in Docker.
type Filter struct {
	Dangling  *bool    // dangling=true|false: used by no container, or by one
	Names     []string // name=: the exact name, or an unanchored regular expression
	Drivers   []string // driver=
	Labels    []string // label=KEY or label=KEY=VALUE: all must match
	NotLabels []string // label!=KEY[=VALUE]: excluded when all of these match
}

// ParseFilter reads "key=value" filter arguments, accepting only the keys
// given (Docker accepts dangling, name, driver and label for ls; label and
// label! for prune).
func ParseFilter(args []string, keys ...string) (Filter, error) {
	var f Filter
	for _, kv := range args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, fmt.Errorf("filter %q: use key=value: %w", kv, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(keys, k) {
			return f, fmt.Errorf("invalid filter %q (use %s): %w", k, strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
		}
		switch k {
		case "dangling":
			var b bool
			switch strings.ToLower(v) {
			case "true", "1":
				b = true
			case "false", "0":
			default:
				return f, fmt.Errorf("invalid filter 'dangling=%s': use true or false: %w", v, errdefs.ErrInvalidArgument)
			}
			if f.Dangling != nil && *f.Dangling != b {
				return f, fmt.Errorf("filters dangling=true and dangling=false contradict each other: %w", errdefs.ErrInvalidArgument)
			}
			f.Dangling = &b
		case "name":
			if _, err := regexp.Compile(v); err != nil {
				return f, fmt.Errorf("filter name=%q: %v: %w", v, err, errdefs.ErrInvalidArgument)
			}
			f.Names = append(f.Names, v)
		case "driver":
			f.Drivers = append(f.Drivers, v)
		case "label":
			f.Labels = append(f.Labels, v)
		case "label!":
			f.NotLabels = append(f.NotLabels, v)
		default:
			return f, fmt.Errorf("invalid filter %q: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return f, nil
}

// Match reports whether f selects v. inUse is asked only for a dangling
// filter; nil means no volume is in use.
func (f Filter) Match(v *Volume, inUse InUse) bool {
	if len(f.Names) > 0 && !slices.ContainsFunc(f.Names, func(pat string) bool {
		if pat == v.Name {
			return true
		}
		ok, err := regexp.MatchString(pat, v.Name)
		return err == nil && ok
	}) {
		return false
	}
	if len(f.Drivers) > 0 && !slices.Contains(f.Drivers, v.Driver) {
		return false
	}
	if len(f.Labels) > 0 && !opts.MatchLabels(f.Labels, v.Labels) {
		return false
	}
	if len(f.NotLabels) > 0 && opts.MatchLabels(f.NotLabels, v.Labels) {
		return false
	}
	if f.Dangling != nil {
		used := inUse != nil && len(inUse(v.Name)) > 0
		if used == *f.Dangling {
			return false
		}
	}
	return true
}
