package opts

import "strings"

// MatchLabels reports whether labels satisfy every expression of a
// `--filter label=` list, Docker's rule for volumes, networks and
// containers alike: "key" needs the key, "key=value" the key with that
// value.
func MatchLabels(exprs []string, labels map[string]string) bool {
	for _, e := range exprs {
		k, want, hasValue := strings.Cut(e, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != want) {
			return false
		}
	}
	return true
}
