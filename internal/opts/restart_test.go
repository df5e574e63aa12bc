package opts

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseRestart(t *testing.T) {
	tests := []struct {
		in   string
		want RestartPolicy
		err  string
	}{
		{in: "", want: RestartPolicy{Name: "no"}},
		{in: "no", want: RestartPolicy{Name: "no"}},
		{in: "always", want: RestartPolicy{Name: "always"}},
		{in: "unless-stopped", want: RestartPolicy{Name: "unless-stopped"}},
		{in: "on-failure", want: RestartPolicy{Name: "on-failure"}},
		{in: "on-failure:5", want: RestartPolicy{Name: "on-failure", MaxRetries: 5}},
		{in: "on-failure:0", want: RestartPolicy{Name: "on-failure"}},
		{in: "on-failure:", want: RestartPolicy{Name: "on-failure"}},
		{in: "always:0", want: RestartPolicy{Name: "always"}},
		{in: "always:3", err: "maximum retry count can only be used with 'on-failure'"},
		{in: "no:1", err: "maximum retry count can only be used with 'on-failure'"},
		{in: "on-failure:-1", err: "maximum retry count cannot be negative"},
		{in: "on-failure:x", err: "maximum retry count must be an integer"},
		{in: "on-failure:3:4", err: "maximum retry count must be an integer"},
		{in: ":3", err: "no policy provided before colon"},
		{in: "sometimes", err: `unknown policy "sometimes"`},
		{in: "Always", err: "unknown policy"},
	}
	for _, tt := range tests {
		got, err := ParseRestart(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseRestart(%q) = %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRestart(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
