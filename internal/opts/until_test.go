package opts

import (
	"testing"
	"time"
)

func TestParseUntil(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"90m":                  now.Add(-90 * time.Minute),
		"2024-01-02T03:04:05Z": time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		"1700000000":           time.Unix(1700000000, 0),
		"1700000000.5":         time.Unix(1700000000, 500000000),
	} {
		if got, err := ParseUntil(in, now); err != nil || !got.Equal(want) {
			t.Errorf("until=%s: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "12x", "2024-13-01"} {
		if _, err := ParseUntil(bad, now); err == nil {
			t.Errorf("until=%s parsed", bad)
		}
	}
}
