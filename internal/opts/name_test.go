package opts

import (
	"regexp"
	"strings"
	"testing"
)

// TestIsName checks IsName against the regular expressions it replaced.
func TestIsName(t *testing.T) {
	cases := []struct {
		re       *regexp.Regexp
		min, max int
	}{
		{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`), 1, 128},
		{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`), 1, 64},
		{regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`), 1, 0},
		{regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`), 2, 0},
	}
	inputs := []string{"", "a", "ab", "a.b", ".a", "_a", "-a", "a-", "a_b.c-d", "A9", "a b", "a/b", "é", "a\x00",
		strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("a", 128), strings.Repeat("a", 129)}
	for _, c := range cases {
		for _, in := range inputs {
			if got, want := IsName(in, c.min, c.max), c.re.MatchString(in); got != want {
				t.Errorf("IsName(%q, %d, %d) = %v, %s says %v", in, c.min, c.max, got, c.re, want)
			}
		}
	}
}

func FuzzIsName(f *testing.F) {
	f.Add("a_b.c-d", 1, 64)
	f.Add(".x", 2, 0)
	res := map[[2]int]*regexp.Regexp{
		{1, 128}: regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`),
		{1, 64}:  regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`),
		{1, 0}:   regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`),
		{2, 0}:   regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`),
	}
	f.Fuzz(func(t *testing.T, s string, min, max int) {
		for k, re := range res {
			if got, want := IsName(s, k[0], k[1]), re.MatchString(s); got != want {
				t.Fatalf("IsName(%q, %d, %d) = %v, %s says %v", s, k[0], k[1], got, re, want)
			}
		}
	})
}
