package content

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"path/filepath"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// algorithm is one digest algorithm the store accepts.
type algorithm struct {
	name   digest.Algorithm
	hexLen int
	new    func() hash.Hash
}

// algorithms are the only ones accepted, in the order Walk lists them.
// go-digest's own validation would accept sha384 and relies on which crypto
// packages happen to be linked; ours is a closed list.
var algorithms = []algorithm{
	{digest.SHA256, 64, sha256.New},
	{digest.SHA512, 128, sha512.New},
}

func lookupAlgorithm(name digest.Algorithm) (algorithm, bool) {
	for _, a := range algorithms {
		if a.name == name {
			return a, true
		}
	}
	return algorithm{}, false
}

// parseDigest splits d into its algorithm and hex, accepting only what a
// path may safely be built from: a known algorithm and lower-case hex of
// exactly its length.
func parseDigest(d digest.Digest) (algorithm, string, error) {
	s := string(d)
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i == len(s) {
		return algorithm{}, "", fmt.Errorf("digest %q: want <algorithm>:<hex>: %w", s, errdefs.ErrInvalidArgument)
	}
	alg, ok := lookupAlgorithm(digest.Algorithm(s[:i]))
	if !ok {
		return algorithm{}, "", fmt.Errorf("digest %q: unsupported algorithm %q (want sha256 or sha512): %w", s, s[:i], errdefs.ErrInvalidArgument)
	}
	hex := s[i+1:]
	if len(hex) != alg.hexLen {
		return algorithm{}, "", fmt.Errorf("digest %q: %s wants %d hex characters, got %d: %w", s, alg.name, alg.hexLen, len(hex), errdefs.ErrInvalidArgument)
	}
	if !isLowerHex(hex) {
		return algorithm{}, "", fmt.Errorf("digest %q: encoded part must be lower-case hex: %w", s, errdefs.ErrInvalidArgument)
	}
	return alg, hex, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidateDigest reports whether the store accepts d: sha256 or sha512 with
// lower-case hex of the exact length. Its error is errdefs.ErrInvalidArgument.
func ValidateDigest(d digest.Digest) error {
	_, _, err := parseDigest(d)
	return err
}

// blobPath is the only place a blob's path is built, and only from a
// validated digest.
func (s *Store) blobPath(d digest.Digest) (string, error) {
	alg, hex, err := parseDigest(d)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.root, blobsDir, string(alg.name), hex), nil
}

// MismatchError reports content that does not match what its writer
// declared. It is of the class errdefs.ErrFailedPrecondition (as containerd
// classes a bad commit); the registry can use errors.As to tell a digest
// mismatch from a size one.
type MismatchError struct {
	Expected     digest.Digest // declared digest; "" when none was
	ExpectedSize int64         // declared size; -1 when unknown
	// Actual is the digest of the content received; "" when the write was
	// refused before the end because it ran past ExpectedSize.
	Actual     digest.Digest
	ActualSize int64 // bytes received (with Actual "": at least this many)
}

func (e *MismatchError) Error() string {
	name := "blob"
	if e.Expected != "" {
		name = "blob " + string(e.Expected)
	}
	if e.Actual == "" {
		return fmt.Sprintf("%s: content is longer than the declared size %d (at least %d bytes)", name, e.ExpectedSize, e.ActualSize)
	}
	want := ""
	switch {
	case e.Expected != "" && e.ExpectedSize >= 0:
		want = fmt.Sprintf("%s (size %d)", e.Expected, e.ExpectedSize)
	case e.Expected != "":
		want = string(e.Expected)
	default:
		want = fmt.Sprintf("size %d", e.ExpectedSize)
	}
	return fmt.Sprintf("%s: content has digest %s (size %d), expected %s", name, e.Actual, e.ActualSize, want)
}

// Unwrap gives the error's class.
func (e *MismatchError) Unwrap() error { return errdefs.ErrFailedPrecondition }
