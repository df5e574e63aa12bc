package cli

import (
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/opts"
)

// pruneFilter is the --filter of the prune verbs, Docker's keys: until
// (created before a time: a duration ago, an RFC 3339 time or Unix
// seconds), label=KEY[=VALUE] (all must match) and label!=KEY[=VALUE]
// (excluded when all of those match).
type pruneFilter struct {
	until             time.Time
	labels, notLabels []string
}

// parsePruneFilter reads --filter values, taking only the keys given.
func parsePruneFilter(args []string, keys ...string) (pruneFilter, error) {
	var f pruneFilter
	for _, kv := range args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return f, usageErr("bad format of filter (expected name=value): %s", kv)
		}
		allowed := false
		for _, key := range keys {
			allowed = allowed || key == k
		}
		if !allowed {
			return f, usageErr("invalid filter %q (use %s)", k, strings.Join(keys, ", "))
		}
		switch k {
		case "until":
			t, err := opts.ParseUntil(v, time.Now())
			if err != nil {
				return f, usageErr("invalid filter 'until=%s': use a duration (24h), an RFC 3339 time or a Unix timestamp", v)
			}
			f.until = t
		case "label":
			f.labels = append(f.labels, v)
		case "label!":
			f.notLabels = append(f.notLabels, v)
		}
	}
	return f, nil
}

// match reports whether an object created at created with labels is one
// the filter lets a prune remove.
func (f pruneFilter) match(created time.Time, labels map[string]string) bool {
	if !f.until.IsZero() && !created.Before(f.until) {
		return false
	}
	if !opts.MatchLabels(f.labels, labels) {
		return false
	}
	return len(f.notLabels) == 0 || !opts.MatchLabels(f.notLabels, labels)
}

// empty reports whether the filter lets everything through.
func (f pruneFilter) empty() bool {
	return f.until.IsZero() && len(f.labels) == 0 && len(f.notLabels) == 0
}

// imageKeep is an image prune's "keep" predicate: what inUse keeps, and
// every image the filter does not match (Service.Prune removes only what
// this calls unused). The filter is applied to the image list up front:
// Prune calls the predicate inside its metadata transaction, where
// reading an image would wait for that very lock.
func (f pruneFilter) imageKeep(s *image.Service, inUse func(digest.Digest) bool) (func(digest.Digest) bool, error) {
	if f.empty() {
		return inUse, nil
	}
	imgs, err := s.List()
	if err != nil {
		return nil, err
	}
	match := map[digest.Digest]bool{}
	for _, img := range imgs {
		var created time.Time
		if img.Config.Created != nil {
			created = *img.Config.Created
		}
		match[img.ID] = f.match(created, img.Config.Config.Labels)
	}
	return func(id digest.Digest) bool { return inUse(id) || !match[id] }, nil
}
