package opts

import (
	"errors"
	"math"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseUlimit(t *testing.T) {
	tests := []struct {
		in   string
		want Ulimit
		err  string // a part of the message
	}{
		{in: "nofile=1024:2048", want: Ulimit{"nofile", 1024, 2048}},
		{in: "nproc=512", want: Ulimit{"nproc", 512, 512}},
		{in: "core=0", want: Ulimit{"core", 0, 0}},
		{in: "memlock=-1", want: Ulimit{"memlock", -1, -1}},
		{in: "memlock=-1:-1", want: Ulimit{"memlock", -1, -1}},
		{in: "stack=8192:-1", want: Ulimit{"stack", 8192, -1}},
		{in: "rttime=5:5", want: Ulimit{"rttime", 5, 5}},
		{in: "nofile=2048:1024", err: "soft limit must be less than or equal to the hard limit"},
		{in: "nofile=-1:1024", err: "soft limit must be less than or equal to the hard limit"},
		{in: "nofile", err: "write NAME=SOFT[:HARD]"},
		{in: "as=1024", err: `unknown ulimit type "as"`},
		{in: "NOFILE=1024", err: "unknown ulimit type"},
		{in: "nofile=", err: "not a number"},
		{in: "nofile=abc", err: "not a number"},
		{in: "nofile=1:abc", err: "not a number"},
		{in: "nofile=1:2:3", err: "not a number"},
		{in: "nofile=-2", err: "not a number"},
		{in: "nofile=1.5", err: "not a number"},
		{in: "nofile=99999999999999999999", err: "not a number"},
	}
	for _, tt := range tests {
		got, err := ParseUlimit(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !contains(err.Error(), tt.err) {
				t.Errorf("ParseUlimit(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseUlimit(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRlimitType(t *testing.T) {
	for _, name := range UlimitNames() {
		typ, err := RlimitType(name)
		if err != nil || typ == "" {
			t.Errorf("RlimitType(%q) = %q, %v", name, typ, err)
		}
	}
	if len(UlimitNames()) != 15 {
		t.Errorf("UlimitNames() = %q, want Docker's 15", UlimitNames())
	}
	if typ, _ := RlimitType("nofile"); typ != "RLIMIT_NOFILE" {
		t.Errorf("RlimitType(nofile) = %q", typ)
	}
	if _, err := RlimitType("as"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("RlimitType(as) error = %v", err)
	}
	typ, soft, hard, err := Ulimit{"memlock", 64, -1}.Rlimit()
	if err != nil || typ != "RLIMIT_MEMLOCK" || soft != 64 || hard != math.MaxUint64 {
		t.Errorf("Rlimit() = %q, %d, %d, %v", typ, soft, hard, err)
	}
}
