package opts

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "1.5", want: 1_500_000_000},
		{in: "0.25", want: 250_000_000},
		{in: "2", want: 2_000_000_000},
		{in: "0", want: 0},
		{in: "0.01", want: 10_000_000},
		{in: "1/2", want: 500_000_000},
		{in: "+3", want: 3_000_000_000},
		{in: "0.123456789", want: 123_456_789},
		{in: "0.009999999", err: true}, // exact, but under 0.01
		{in: "1.123456789", want: 1_123_456_789},
		{in: "1.0000000001", err: true}, // ten decimals
		{in: "0.001", err: true},
		{in: "-1", err: true},
		{in: "", err: true},
		{in: "abc", err: true},
		{in: "1.5.1", err: true},
		{in: "1/0", err: true},
		{in: "1e3", err: true},
		{in: "1e99999999", err: true},
		{in: "0x10", err: true},
		{in: "99999999999999999999", err: true},
	}
	for _, tt := range tests {
		got, err := ParseCPUs(tt.in)
		if tt.err {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("ParseCPUs(%q) = %d, %v; want an ErrInvalidArgument", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseCPUs(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestValidateCPUs(t *testing.T) {
	if err := ValidateCPUs(4e9, 4); err != nil {
		t.Errorf("4 CPUs of 4: %v", err)
	}
	if err := ValidateCPUs(0, 1); err != nil {
		t.Errorf("no limit: %v", err)
	}
	err := ValidateCPUs(4_000_000_001, 4)
	if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || err.Error() != "invalid --cpus: range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available: invalid argument" {
		t.Errorf("over the host: %v", err)
	}
}

func TestNanoCPUsToQuota(t *testing.T) {
	tests := []struct {
		nano   int64
		quota  int64
		period uint64
	}{
		{1_500_000_000, 150000, 100000},
		{10_000_000, 1000, 100000},
		{1_000_000_001, 100000, 100000}, // Docker's integer division drops the nano
		{0, 0, 0},
		{-1, 0, 0},
		{1 << 62, (1 << 62) / 10000, 100000}, // nano*period would overflow
	}
	for _, tt := range tests {
		q, p := NanoCPUsToQuota(tt.nano)
		if q != tt.quota || p != tt.period {
			t.Errorf("NanoCPUsToQuota(%d) = %d, %d; want %d, %d", tt.nano, q, p, tt.quota, tt.period)
		}
	}
}
