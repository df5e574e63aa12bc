package opts

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// CPUPeriod is the CFS period, in microseconds, that Docker pairs with a
// --cpus quota: 100 ms.
const CPUPeriod = 100000

// ParseCPUs parses --cpus ("1.5", "0.25", "2") into nano-CPUs, billionths
// of a CPU, as Docker does: the value is read as an exact rational, so
// "0.1" is exactly 100000000 and a value with more than nine decimals is
// refused rather than rounded. "0" means no limit.
//
// Unlike Docker, exponents and hexadecimal ("1e3", "0x1p1") are refused:
// math/big would expand "1e99999999" into a number of millions of digits.
// Docker's upper bound, the host's CPU count, is ValidateCPUs's job, so
// this function does not depend on the host.
func ParseCPUs(s string) (int64, error) {
	if s == "" || len(s) > 64 || strings.Trim(s, "+-0123456789./") != "" {
		return 0, fmt.Errorf("invalid --cpus %q: write a decimal number of CPUs, such as 1.5: %w", s, errdefs.ErrInvalidArgument)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, fmt.Errorf("invalid --cpus %q: write a decimal number of CPUs, such as 1.5: %w", s, errdefs.ErrInvalidArgument)
	}
	nano := r.Mul(r, big.NewRat(1e9, 1))
	switch {
	case !nano.IsInt():
		return 0, fmt.Errorf("invalid --cpus %q: value is too precise, use at most 9 decimal places: %w", s, errdefs.ErrInvalidArgument)
	case nano.Sign() < 0:
		return 0, fmt.Errorf("invalid --cpus %q: the number of CPUs cannot be negative: %w", s, errdefs.ErrInvalidArgument)
	case !nano.Num().IsInt64():
		return 0, fmt.Errorf("invalid --cpus %q: too large: %w", s, errdefs.ErrInvalidArgument)
	}
	n := nano.Num().Int64()
	// The kernel refuses a CFS quota under 1 ms, which is 0.01 of the 100 ms
	// period; Docker's message gives the same floor.
	if n != 0 && n < 1e7 {
		return 0, fmt.Errorf("invalid --cpus %q: the smallest limit is 0.01 CPUs: %w", s, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// ValidateCPUs refuses a nano-CPU limit above the ncpu CPUs the host has,
// with Docker's message. The caller passes runtime.NumCPU().
func ValidateCPUs(nano int64, ncpu int) error {
	if nano < 0 || nano > int64(ncpu)*1e9 {
		return fmt.Errorf("invalid --cpus: range of CPUs is from 0.01 to %[1]d.00, as there are only %[1]d CPUs available: %w",
			ncpu, errdefs.ErrInvalidArgument)
	}
	return nil
}

// NanoCPUsToQuota turns a nano-CPU limit into the CFS quota and period
// Docker writes (linux.resources.cpu.quota and .period, in microseconds):
// a 100 ms period and a quota of the same share of it. A limit of 0 or
// less means none, and returns zeros.
func NanoCPUsToQuota(nano int64) (quota int64, period uint64) {
	if nano <= 0 {
		return 0, 0
	}
	// Docker computes nano*period/1e9; nano/1e4 is the same number and
	// cannot overflow.
	return nano / (1e9 / CPUPeriod), CPUPeriod
}
