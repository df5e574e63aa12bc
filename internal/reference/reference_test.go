package reference

import (
	"fmt"
	"strings"
	"testing"

	dref "github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// describe renders what a parse gave, the same way for both packages, so
// that any difference in type, parts or error shows.
func describe(r interface{ String() string }, err error, familiar func() string) string {
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s ", kind(r))
	fmt.Fprintf(&b, "string=%s ", r.String())
	if n, ok := r.(interface{ Name() string }); ok {
		fmt.Fprintf(&b, "name=%s ", n.Name())
	}
	if t, ok := r.(interface{ Tag() string }); ok {
		fmt.Fprintf(&b, "tag=%s ", t.Tag())
	}
	if d, ok := r.(interface{ Digest() digest.Digest }); ok {
		fmt.Fprintf(&b, "digest=%s ", d.Digest())
	}
	fmt.Fprintf(&b, "familiar=%s", familiar())
	return b.String()
}

// kind names which of the interfaces a reference has.
func kind(r interface{ String() string }) string {
	_, named := r.(interface{ Name() string })
	_, tagged := r.(interface{ Tag() string })
	_, digested := r.(interface{ Digest() digest.Digest })
	return fmt.Sprintf("named=%v,tagged=%v,digested=%v", named, tagged, digested)
}

func ours(s string) []string {
	var out []string
	n, err := ParseNormalizedNamed(s)
	out = append(out, describe(n, err, func() string {
		return FamiliarString(n) + " " + FamiliarName(n) + " " + Domain(n) + " " + Path(n) + " " + TagNameOnly(n).String() + " " + TrimNamed(n).String() + fmt.Sprint(IsNameOnly(n))
	}))
	r, err := Parse(s)
	out = append(out, describe(r, err, func() string { return FamiliarString(r) }))
	w, err := WithName(s)
	out = append(out, describe(w, err, func() string { return Domain(w) + " " + Path(w) }))
	if err == nil {
		t, err := WithTag(w, "v1.0")
		out = append(out, describe(t, err, func() string { return FamiliarString(t) }))
		c, err := WithDigest(w, digest.Digest("sha256:"+strings.Repeat("ab", 32)))
		out = append(out, describe(c, err, func() string { return FamiliarString(c) }))
	}
	_, err = WithTag(repository{path: "x"}, s)
	out = append(out, fmt.Sprint(err))
	return out
}

func theirs(s string) []string {
	var out []string
	n, err := dref.ParseNormalizedNamed(s)
	out = append(out, describe(n, err, func() string {
		return dref.FamiliarString(n) + " " + dref.FamiliarName(n) + " " + dref.Domain(n) + " " + dref.Path(n) + " " + dref.TagNameOnly(n).String() + " " + dref.TrimNamed(n).String() + fmt.Sprint(dref.IsNameOnly(n))
	}))
	r, err := dref.Parse(s)
	out = append(out, describe(r, err, func() string { return dref.FamiliarString(r) }))
	w, err := dref.WithName(s)
	out = append(out, describe(w, err, func() string { return dref.Domain(w) + " " + dref.Path(w) }))
	if err == nil {
		t, err := dref.WithTag(w, "v1.0")
		out = append(out, describe(t, err, func() string { return dref.FamiliarString(t) }))
		c, err := dref.WithDigest(w, digest.Digest("sha256:"+strings.Repeat("ab", 32)))
		out = append(out, describe(c, err, func() string { return dref.FamiliarString(c) }))
	}
	x, _ := dref.WithName("x")
	_, err = dref.WithTag(x, s)
	out = append(out, fmt.Sprint(err))
	return out
}

var seeds = []string{
	"", "busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:1.36",
	"index.docker.io/busybox", "localhost/app", "localhost:5000/app:1", "LOCALHOST:5000/app",
	"127.0.0.1:5000/team/app:1", "[::1]:5000/app", "[fe80::1%eth0]:5000/a", "[]:5000/a", "[::1]/a",
	"reg.lan/a/b/c:tag", "Reg.Lan/a", "a/B", "A", "a:B", "a__b", "a___b", "a._b", "a--b", "a-b-", "-a",
	"a.b", "a..b", "a/../b", "app@sha256:" + strings.Repeat("a", 64), "app:1@sha256:" + strings.Repeat("a", 64),
	"app@sha256:" + strings.Repeat("a", 63), "app@sha512:" + strings.Repeat("b", 128), "app@md5:" + strings.Repeat("c", 32),
	"app@sha256+b64u:" + strings.Repeat("a", 43), strings.Repeat("a", 64), "sha256:" + strings.Repeat("a", 64),
	"a:" + strings.Repeat("t", 128), "a:" + strings.Repeat("t", 129), "a:_t", "a:.t", "a:-t",
	"reg:5000", "reg:5000/", "reg:/a", "reg:x/a", "a/b:c:d", "a@b@c", "a:b@", "@sha256:" + strings.Repeat("a", 64),
	"host.-bad/a", "host-.x/a", "h_st/a", "x/" + strings.Repeat("a", 255), "x/" + strings.Repeat("a", 256),
	strings.Repeat("a/", 200) + "a", "a/b/", "/a", "a//b", "é/a", "a\x00b", "a b",
}

func TestSameAsDistribution(t *testing.T) {
	for _, s := range seeds {
		if got, want := ours(s), theirs(s); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%q:\n ours   %q\n theirs %q", s, got, want)
		}
	}
}

// FuzzSameAsDistributionHelpers: WithDigest with any digest, SplitName,
// and FamiliarMatch of any pattern, against distribution/reference's.
func FuzzSameAsDistributionHelpers(f *testing.F) {
	f.Add("registry.lan:5000/team/app", "sha256:"+strings.Repeat("ab", 32), "team/*")
	f.Add("busybox", "md5:"+strings.Repeat("c", 32), "bu*")
	f.Add("docker.io/library/busybox:1", "x", "[")
	f.Fuzz(func(t *testing.T, name, dgst, pattern string) {
		d1, p1 := SplitName(name)
		if w, err := dref.WithName(name); err == nil {
			if d2, p2 := dref.Domain(w), dref.Path(w); d1 != d2 || p1 != p2 {
				t.Fatalf("SplitName(%q) = %q %q, distribution %q %q", name, d1, p1, d2, p2)
			}
		}
		ours, oerr := WithName(name)
		theirs, terr := dref.WithName(name)
		if (oerr == nil) != (terr == nil) {
			t.Fatalf("WithName(%q): %v vs %v", name, oerr, terr)
		}
		if oerr != nil {
			return
		}
		oc, oerr := WithDigest(ours, digest.Digest(dgst))
		tc, terr := dref.WithDigest(theirs, digest.Digest(dgst))
		if fmt.Sprint(oerr) != fmt.Sprint(terr) || (oerr == nil && oc.String() != tc.String()) {
			t.Fatalf("WithDigest(%q, %q): %v %v vs %v %v", name, dgst, oc, oerr, tc, terr)
		}
		on, _ := ParseNormalizedNamed(name)
		tn, _ := dref.ParseNormalizedNamed(name)
		if on != nil && tn != nil {
			om, oerr := FamiliarMatch(pattern, on)
			tm, terr := dref.FamiliarMatch(pattern, tn)
			if om != tm || fmt.Sprint(oerr) != fmt.Sprint(terr) {
				t.Fatalf("FamiliarMatch(%q, %q): %v %v vs %v %v", pattern, name, om, oerr, tm, terr)
			}
		}
	})
}

func FuzzSameAsDistribution(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ours(s), theirs(s); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%q:\n ours   %q\n theirs %q", s, got, want)
		}
	})
}
