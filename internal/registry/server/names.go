package server

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Every name, tag, digest and upload ID that reaches the filesystem has
// passed one of the parsers below first. They are hand-written byte loops,
// not regular expressions, so their cost is linear and they are easy to
// fuzz; each accepts a strict subset of what a path component may safely
// be, so "..", "/", NUL and friends never reach a path.

const (
	// maxNameLen caps a repository name. The spec asks registries to
	// avoid names that, with a host, pass 255 characters; distribution
	// refuses names over 255, and so do we.
	maxNameLen = 255
	// maxTagLen is the spec's 128 characters.
	maxTagLen = 128
)

// ValidateName reports whether name is a repository name by the
// distribution spec's grammar:
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// and at most 255 bytes. Components therefore never start with "_" or
// ".", which is what keeps a component from colliding with the storage's
// own "_layers", "_manifests" and "_referrers" directories. The error is
// of class errdefs.ErrInvalidArgument.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("repository name is empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("repository name is %d characters long, at most %d allowed: %w", len(name), maxNameLen, errdefs.ErrInvalidArgument)
	}
	// States: start of a component (need alnum), inside an alnum run, or
	// after a separator (need alnum). "__" is one separator, "-+" is one
	// separator, "." and "_" alone are separators.
	const (
		needAlnum = iota
		inAlnum
	)
	state := needAlnum
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isLowerAlnum(c):
			state = inAlnum
		case state != inAlnum:
			return badName(name, i)
		case c == '/':
			state = needAlnum
		case c == '.':
			state = needAlnum
		case c == '_':
			if i+1 < len(name) && name[i+1] == '_' {
				i++
			}
			state = needAlnum
		case c == '-':
			for i+1 < len(name) && name[i+1] == '-' {
				i++
			}
			state = needAlnum
		default:
			return badName(name, i)
		}
	}
	if state != inAlnum {
		return fmt.Errorf("repository name %q must end with a lower-case letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func badName(name string, i int) error {
	return fmt.Errorf("repository name %q: unexpected %q at offset %d (names are lower-case letters and digits, separated by '.', '_', '__', '-' or '/'): %w",
		name, name[i], i, errdefs.ErrInvalidArgument)
}

func isLowerAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// ValidateTag reports whether tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
// A tag therefore never starts with "." or "-", which keeps "." and ".."
// and the storage's temporary names out of the tags directory.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > maxTagLen {
		return fmt.Errorf("tag %q: want 1 to %d characters: %w", tag, maxTagLen, errdefs.ErrInvalidArgument)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
			(i > 0 && (c == '.' || c == '-'))
		if !ok {
			return fmt.Errorf("tag %q: unexpected %q at offset %d: %w", tag, c, i, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// algorithm is one digest algorithm the registry stores content under.
type algorithm struct {
	name   digest.Algorithm
	hexLen int
	new    func() hash.Hash
}

// algorithms is a closed list: go-digest's own validation depends on which
// crypto packages happen to be linked in, ours does not.
var algorithms = []algorithm{
	{digest.SHA256, 64, sha256.New},
	{digest.SHA512, 128, sha512.New},
}

func lookupAlgorithm(name string) (algorithm, bool) {
	for _, a := range algorithms {
		if string(a.name) == name {
			return a, true
		}
	}
	return algorithm{}, false
}

// ParseDigest checks that s is a digest the registry can store: sha256 or
// sha512, followed by lower-case hex of exactly the algorithm's length.
// Anything else (another algorithm, upper case, a short or long hex, a
// path) is errdefs.ErrInvalidArgument.
func ParseDigest(s string) (digest.Digest, error) {
	_, _, err := splitDigest(s)
	if err != nil {
		return "", err
	}
	return digest.Digest(s), nil
}

func splitDigest(s string) (algorithm, string, error) {
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i == len(s) {
		return algorithm{}, "", fmt.Errorf("digest %q: want <algorithm>:<hex>: %w", truncate(s), errdefs.ErrInvalidArgument)
	}
	alg, ok := lookupAlgorithm(s[:i])
	if !ok {
		return algorithm{}, "", fmt.Errorf("digest %q: unsupported algorithm %q (sha256 and sha512 are): %w", truncate(s), truncate(s[:i]), errdefs.ErrInvalidArgument)
	}
	hex := s[i+1:]
	if len(hex) != alg.hexLen {
		return algorithm{}, "", fmt.Errorf("digest %q: %s wants %d hex characters, got %d: %w", truncate(s), alg.name, alg.hexLen, len(hex), errdefs.ErrInvalidArgument)
	}
	if !isLowerHex(hex) {
		return algorithm{}, "", fmt.Errorf("digest %q: the encoded part must be lower-case hex: %w", truncate(s), errdefs.ErrInvalidArgument)
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

// truncate keeps error messages about hostile input short.
func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// Reference is the <reference> of a manifest URL: exactly one of Tag and
// Digest is set.
type Reference struct {
	Tag    string
	Digest digest.Digest
}

func (r Reference) String() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// ParseReference parses a manifest reference: a digest if it contains a
// ':' (tags cannot), a tag otherwise. A digest with an unknown algorithm
// is an error, not a tag.
func ParseReference(s string) (Reference, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			d, err := ParseDigest(s)
			if err != nil {
				return Reference{}, err
			}
			return Reference{Digest: d}, nil
		}
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}

// validUploadID reports whether id has the shape of the IDs newUploadID
// makes: a UUID, 8-4-4-4-12 lower-case hex.
func validUploadID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
