package network

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"

	"github.com/berth-dev/berth/internal/opts"
)

// Filter selects networks as `docker network ls --filter` and `docker
// network prune --filter` do. The zero Filter matches every network.
// Values of one key are alternatives (any of the names), except labels,
// which must all hold.
type Filter struct {
	Names     []string // name=: the exact name, or an unanchored regular expression
	IDs       []string // id=: the same, on the full ID
	Drivers   []string // driver=
	Scopes    []string // scope=
	Labels    []string // label=KEY or label=KEY=VALUE: all must match
	NotLabels []string // label!=KEY[=VALUE]: excluded when all of these match
	Type      string   // type=custom (user networks) or type=builtin (bridge, host, none)
	Dangling  *bool    // dangling=true: custom networks without endpoints
	Until     time.Time
}

// ParseFilter reads "key=value" filter arguments, accepting only the keys
// given (Docker's ls takes name, id, driver, scope, label, type and
// dangling; prune takes until, label and label!).
func ParseFilter(args []string, keys ...string) (Filter, error) {
	var f Filter
	inv := errdefs.ErrInvalidArgument
	for _, kv := range args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, fmt.Errorf("bad format of filter (expected name=value): %s: %w", kv, inv)
		}
		if !slices.Contains(keys, k) {
			return f, fmt.Errorf("invalid filter '%s' (use %s): %w", k, strings.Join(keys, ", "), inv)
		}
		switch k {
		case "name", "id":
			if _, err := regexp.Compile(v); err != nil {
				return f, fmt.Errorf("filter %s=%s: %v: %w", k, v, err, inv)
			}
			if k == "name" {
				f.Names = append(f.Names, v)
			} else {
				f.IDs = append(f.IDs, v)
			}
		case "driver":
			f.Drivers = append(f.Drivers, v)
		case "scope":
			f.Scopes = append(f.Scopes, v)
		case "label":
			f.Labels = append(f.Labels, v)
		case "label!":
			f.NotLabels = append(f.NotLabels, v)
		case "type":
			if v != "custom" && v != "builtin" {
				return f, fmt.Errorf("invalid filter: 'type'='%s' (use custom or builtin): %w", v, inv)
			}
			if f.Type != "" && f.Type != v {
				return f, fmt.Errorf("filters type=custom and type=builtin contradict each other: %w", inv)
			}
			f.Type = v
		case "dangling":
			var b bool
			switch strings.ToLower(v) {
			case "true", "1":
				b = true
			case "false", "0":
			default:
				return f, fmt.Errorf("invalid filter 'dangling=%s': use true or false: %w", v, inv)
			}
			if f.Dangling != nil && *f.Dangling != b {
				return f, fmt.Errorf("filters dangling=true and dangling=false contradict each other: %w", inv)
			}
			f.Dangling = &b
		case "until":
			t, err := opts.ParseUntil(v, time.Now())
			if err != nil {
				return f, fmt.Errorf("invalid filter 'until=%s': use a duration (24h), an RFC 3339 time or a Unix timestamp: %w", v, inv)
			}
			f.Until = t
		}
	}
	return f, nil
}

// Match reports whether f selects n, which has endpoints endpoints.
func (f Filter) Match(n *Network, endpoints int) bool {
	if len(f.Names) > 0 && !slices.ContainsFunc(f.Names, func(p string) bool { return matchPattern(p, n.Name) }) {
		return false
	}
	if len(f.IDs) > 0 && !slices.ContainsFunc(f.IDs, func(p string) bool { return matchPattern(p, n.ID) }) {
		return false
	}
	if len(f.Drivers) > 0 && !slices.Contains(f.Drivers, n.Driver) {
		return false
	}
	if len(f.Scopes) > 0 && !slices.Contains(f.Scopes, n.Scope) {
		return false
	}
	if len(f.Labels) > 0 && !opts.MatchLabels(f.Labels, n.Labels) {
		return false
	}
	if len(f.NotLabels) > 0 && opts.MatchLabels(f.NotLabels, n.Labels) {
		return false
	}
	switch f.Type {
	case "custom":
		if n.Predefined() {
			return false
		}
	case "builtin":
		if !n.Predefined() {
			return false
		}
	}
	if f.Dangling != nil && (!n.Predefined() && endpoints == 0) != *f.Dangling {
		return false
	}
	if !f.Until.IsZero() && !n.Created.Before(f.Until) {
		return false
	}
	return true
}

// matchPattern is Docker's filter match: equal, or an unanchored regular
// expression that matches.
func matchPattern(pattern, s string) bool {
	if pattern == s {
		return true
	}
	ok, err := regexp.MatchString(pattern, s)
	return err == nil && ok
}
