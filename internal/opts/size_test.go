package opts

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "512m", want: 512 << 20},
		{in: "1.5g", want: 1536 << 20},
		{in: "1024", want: 1024},
		{in: "0", want: 0},
		{in: "10MB", want: 10 << 20},
		{in: "10mb", want: 10 << 20},
		{in: "2KiB", want: 2048},
		{in: "2kib", want: 2048},
		{in: "1 k", want: 1024},
		{in: "32kb", want: 32 << 10},
		{in: "7b", want: 7},
		{in: "7B", want: 7},
		{in: "1T", want: 1 << 40},
		{in: "1p", want: 1 << 50},
		{in: "0.5k", want: 512},
		{in: "1.9", want: 1}, // a fraction of a byte is dropped, as Docker does
		{in: ".5k", want: 512},
		{in: "", err: true},
		{in: "-1", err: true},
		{in: "-1m", err: true},
		{in: "abc", err: true},
		{in: "m", err: true},
		{in: "1x", err: true},
		{in: "1kk", err: true},
		{in: "1bb", err: true},
		{in: "1kbb", err: true},
		{in: "1kibx", err: true},
		{in: "1mi", err: true},
		{in: "1.2.3m", err: true},
		{in: "1e400", err: true},
		{in: "9223372036854775807", err: true}, // 2^63 as a float64: Docker wraps it negative
		{in: "8192p", err: true},
		{in: "1 2 m", err: true},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseMemory(%q) = %d, want an error", tt.in, got)
			} else if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("ParseMemory(%q) error %v is not ErrInvalidArgument", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "10m", want: 10_000_000},
		{in: "1k", want: 1000},
		{in: "1KB", want: 1000},
		{in: "1kib", want: 1000}, // go-units FromHumanSize reads only the first letter
		{in: "2g", want: 2e9},
		{in: "100", want: 100},
		{in: "-5k", err: true},
		{in: "10x", err: true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
