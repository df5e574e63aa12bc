package opts

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseLogOpts(t *testing.T) {
	tests := []struct {
		in    []string
		want  LogOpts
		err   string
		class error
	}{
		{in: nil, want: LogOpts{MaxFile: 1}},
		{in: []string{"max-size=10m", "max-file=3"}, want: LogOpts{MaxSize: 10_000_000, MaxFile: 3}},
		{in: []string{"max-size=1k"}, want: LogOpts{MaxSize: 1000, MaxFile: 1}},
		{in: []string{"max-file=5"}, want: LogOpts{MaxFile: 5}}, // accepted, and ineffective, as in Docker
		{in: []string{"max-size=1m", "max-size=2m"}, want: LogOpts{MaxSize: 2_000_000, MaxFile: 1}},
		{in: []string{"compress=false"}, want: LogOpts{MaxFile: 1}},
		{in: []string{"max-size=0"}, err: "max-size must be a positive number"},
		{in: []string{"max-size=-1"}, err: "invalid size"},
		{in: []string{"max-size=10q"}, err: "invalid size"},
		{in: []string{"max-size="}, err: "invalid size"},
		{in: []string{"max-file=0"}, err: "max-file cannot be less than 1"},
		{in: []string{"max-file=x"}, err: "max-file must be an integer"},
		{in: []string{"max-size"}, err: "write KEY=VALUE"},
		{in: []string{"mode=non-blocking"}, err: `unknown log opt "mode" for json-file log driver, the known ones are max-size and max-file`},
		{in: []string{"compress=maybe"}, err: "compress must be true or false"},
		{in: []string{"compress=true"}, err: "not supported", class: errdefs.ErrNotImplemented},
		{in: []string{"tag={{.Name}}"}, err: "not supported", class: errdefs.ErrNotImplemented},
	}
	for _, tt := range tests {
		got, err := ParseLogOpts(tt.in)
		if tt.err != "" {
			class := tt.class
			if class == nil {
				class = errdefs.ErrInvalidArgument
			}
			if err == nil || !errors.Is(err, class) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseLogOpts(%q) = %+v, %v; want a %v with %q", tt.in, got, err, class, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseLogOpts(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
