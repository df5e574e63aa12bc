package opts

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// MinMemory is the smallest memory limit Docker's daemon accepts (6 MiB):
// below it a container cannot even start its runtime. ParseMemory does not
// enforce it because --memory-reservation and --shm-size share the parser
// and have no such floor; the caller checks it for --memory.
const MinMemory = 6 << 20

var (
	binaryUnits  = map[byte]int64{'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}
	decimalUnits = map[byte]int64{'k': 1e3, 'm': 1e6, 'g': 1e9, 't': 1e12, 'p': 1e15}
)

// ParseMemory parses an amount of memory the way Docker's --memory,
// --memory-reservation, --shm-size and tmpfs-size do (go-units RAMInBytes):
// a number, optionally fractional, then an optional unit b, k, m, g, t or p
// in any case, optionally followed by "b" or "ib" ("512m", "1.5g", "10MB",
// "2KiB", "1024"). Units are binary, so 1k is 1024 bytes. A fraction of a
// byte is dropped. Negative sizes are refused.
func ParseMemory(s string) (int64, error) {
	return parseSize(s, binaryUnits)
}

// ParseSize parses a size with decimal units, 1k being 1000 bytes, as
// Docker's json-file logger reads --log-opt max-size (go-units
// FromHumanSize: "10m" is 10,000,000 bytes). The syntax is ParseMemory's.
func ParseSize(s string) (int64, error) {
	return parseSize(s, decimalUnits)
}

// parseSize is go-units' parseSize, with an overflow check added: Docker
// turns "9999999p" into a negative int64, berth refuses it.
func parseSize(s string, units map[byte]int64) (int64, error) {
	num, sfx, ok := strings.Cut(s, " ")
	if !ok {
		// No space between number and unit: the unit starts after the last digit.
		sep := strings.LastIndexAny(s, "0123456789.")
		if sep == -1 {
			return 0, sizeError(s, "no number")
		}
		num, sfx = s[:sep+1], s[sep+1:]
	}
	size, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, sizeError(s, "not a number")
	}
	if size < 0 {
		return 0, sizeError(s, "negative")
	}
	if sfx != "" {
		mul, ok := unitMultiplier(sfx, units)
		if !ok {
			return 0, sizeError(s, fmt.Sprintf("unknown unit %q", sfx))
		}
		size *= float64(mul)
	}
	// 2^63 is the first float64 that does not fit an int64.
	if size >= math.MaxInt64 {
		return 0, sizeError(s, "too large")
	}
	return int64(size), nil
}

// unitMultiplier reads b, k, kb, kib (any case) and the like.
func unitMultiplier(sfx string, units map[byte]int64) (int64, bool) {
	if len(sfx) > 3 {
		return 0, false
	}
	sfx = strings.ToLower(sfx)
	if sfx[0] == 'b' {
		return 1, len(sfx) == 1
	}
	mul, ok := units[sfx[0]]
	if !ok {
		return 0, false
	}
	switch {
	case len(sfx) == 2 && sfx[1] != 'b', len(sfx) == 3 && sfx[1:] != "ib":
		return 0, false
	}
	return mul, true
}

func sizeError(s, why string) error {
	return fmt.Errorf("invalid size %q: %s: write a number with an optional unit b, k, m, g, t or p, such as 512m or 1.5g: %w",
		s, why, errdefs.ErrInvalidArgument)
}
