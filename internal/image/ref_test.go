package image

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

const testDigest = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, want, familiar string
		wantErr            string // substring of the error; "" = must parse
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", familiar: "busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "docker.io/library/busybox", want: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "index.docker.io/library/busybox", want: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "user/app", want: "docker.io/user/app:latest", familiar: "user/app:latest"},
		{in: "localhost/a", want: "localhost/a:latest", familiar: "localhost/a:latest"},
		{in: "localhost:5000/a", want: "localhost:5000/a:latest", familiar: "localhost:5000/a:latest"},
		{in: "localhost:5000/ns/name:tag", want: "localhost:5000/ns/name:tag", familiar: "localhost:5000/ns/name:tag"},
		{in: "host:5000/ns/name:tag@" + testDigest, want: "host:5000/ns/name:tag@" + testDigest, familiar: "host:5000/ns/name:tag@" + testDigest},
		{in: "busybox@" + testDigest, want: "docker.io/library/busybox@" + testDigest, familiar: "busybox@" + testDigest},
		{in: "quay.io/a/b.c_d--e__f:v1.0-rc_1", want: "quay.io/a/b.c_d--e__f:v1.0-rc_1", familiar: "quay.io/a/b.c_d--e__f:v1.0-rc_1"},
		{in: "Quay.IO/a/b", want: "Quay.IO/a/b:latest", familiar: "Quay.IO/a/b:latest"}, // hosts may have capitals
		{in: "[::1]:5000/a", want: "[::1]:5000/a:latest", familiar: "[::1]:5000/a:latest"},
		{in: "127.0.0.1:5000/a:b", want: "127.0.0.1:5000/a:b", familiar: "127.0.0.1:5000/a:b"},

		{in: "", wantErr: "empty"},
		{in: "Busybox", wantErr: "must be lowercase"},
		{in: "library/Busybox", wantErr: "must be lowercase"},
		{in: "a:b:c", wantErr: "more than one ':'"},
		{in: "busybox:", wantErr: "empty tag"},
		{in: "busybox:-x", wantErr: "must start with"},
		{in: "busybox:" + strings.Repeat("x", 129), wantErr: "longer than 128"},
		{in: "bus box", wantErr: "whitespace"},
		{in: "busy$box", wantErr: `invalid character '$' at position 4`},
		{in: "bus\x00box", wantErr: "invalid character"},
		{in: "busybox@sha256:abc", wantErr: "invalid digest"},
		{in: "busybox@" + testDigest + "@" + testDigest, wantErr: "more than one '@'"},
		{in: "a//b", wantErr: "empty path component"},
		{in: "/a", wantErr: "empty path component"},
		{in: "a/", wantErr: "empty path component"},
		{in: "-a", wantErr: "not of the form"},
		{in: "a..b", wantErr: "not of the form"},
		{in: strings.Repeat("a", 64) /* an image ID */, wantErr: "image ID"},
		{in: "x/" + strings.Repeat("a", 256), wantErr: "not be more than 255"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRef(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseRef(%q) = %v, want an error containing %q", tc.in, got, tc.wantErr)
				}
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("error %v is not ErrInvalidArgument", err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not say %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRef(%q): %v", tc.in, err)
			}
			if got.String() != tc.want {
				t.Errorf("ParseRef(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if f := FamiliarString(got); f != tc.familiar {
				t.Errorf("FamiliarString = %q, want %q", f, tc.familiar)
			}
		})
	}
}

func TestFamiliarAndSplit(t *testing.T) {
	for _, tc := range []struct{ in, familiar, repo, tag string }{
		{"docker.io/library/busybox:latest", "busybox:latest", "busybox", "latest"},
		{"docker.io/user/app:1", "user/app:1", "user/app", "1"},
		{"localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x", "y"},
		{"docker.io/library/busybox@" + testDigest, "busybox@" + testDigest, "busybox", ""},
	} {
		if got := Familiar(tc.in); got != tc.familiar {
			t.Errorf("Familiar(%q) = %q, want %q", tc.in, got, tc.familiar)
		}
		repo, tag := SplitRepoTag(tc.in)
		if repo != tc.repo || tag != tc.tag {
			t.Errorf("SplitRepoTag(%q) = %q, %q; want %q, %q", tc.in, repo, tag, tc.repo, tc.tag)
		}
	}
}

func TestParseTagRefRefusesDigest(t *testing.T) {
	if _, err := parseTagRef("busybox@" + testDigest); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("parseTagRef with digest: %v, want invalid argument", err)
	}
}

// FuzzParseRef checks that parsing never panics, that every error is of
// the invalid-argument class, and that what parses is stable: the
// normalized and the familiar string both parse back to the same name.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a", "a:b:c", "Busybox", "host:5000/ns/name:tag@" + testDigest, "[::1]/a", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseRef(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ParseRef(%q): error %v is not ErrInvalidArgument", s, err)
			}
			if len(err.Error()) > 1000 {
				t.Fatalf("ParseRef(%q): error message of %d bytes", s, len(err.Error()))
			}
			return
		}
		again, err := ParseRef(ref.String())
		if err != nil || again.String() != ref.String() {
			t.Fatalf("ParseRef(%q) = %q, which reparses to %v, %v", s, ref, again, err)
		}
		fam, err := ParseRef(FamiliarString(ref))
		if err != nil || fam.String() != ref.String() {
			t.Fatalf("familiar %q of %q reparses to %v, %v", FamiliarString(ref), ref, fam, err)
		}
	})
}
