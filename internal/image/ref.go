package image

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/reference"
)

// ParseRef parses an image reference with Docker's rules and normalizes
// it: "busybox" becomes "docker.io/library/busybox:latest", "localhost:5000/a"
// becomes "localhost:5000/a:latest". A reference with a digest keeps it (and
// its tag, if it had one: "name:tag@sha256:..." is accepted as Docker
// accepts it, and lookups use the digest). Errors are of class
// errdefs.ErrInvalidArgument and say what is wrong with the string.
func ParseRef(s string) (reference.Named, error) {
	named, err := parseNamed(s)
	if err != nil {
		return nil, err
	}
	return reference.TagNameOnly(named), nil
}

// parseNamed parses without adding the default tag, so callers can tell
// "busybox" (every tag of a repository, for save) from "busybox:latest".
func parseNamed(s string) (reference.Named, error) {
	if s == "" {
		return nil, fmt.Errorf("invalid reference: empty string: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("invalid reference %q: %s: %w", truncate(s), explainRef(s, err), errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// parseTagRef parses a reference that names a tag to create: digests are
// refused, as Docker refuses them for docker tag and in RepoTags.
func parseTagRef(s string) (reference.NamedTagged, error) {
	named, err := ParseRef(s)
	if err != nil {
		return nil, err
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("invalid tag %q: a tag cannot contain a digest: %w", truncate(s), errdefs.ErrInvalidArgument)
	}
	tagged, ok := named.(reference.NamedTagged)
	if !ok { // TagNameOnly always tags a name-only reference
		return nil, fmt.Errorf("invalid tag %q: %w", truncate(s), errdefs.ErrInvalidArgument)
	}
	return tagged, nil
}

// FamiliarString is the short form Docker shows: "busybox:latest",
// "localhost:5000/x:1", "quay.io/a/b@sha256:...".
func FamiliarString(ref reference.Reference) string {
	return reference.FamiliarString(ref)
}

// Familiar turns a stored, normalized reference string (a RepoTags or
// RepoDigests entry) into the form Docker shows. A string that does not
// parse is returned unchanged.
func Familiar(s string) string {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return reference.FamiliarString(named)
}

// SplitRepoTag splits a stored RepoTags entry into the familiar repository
// and the tag, the two columns of docker images: "busybox", "latest".
func SplitRepoTag(s string) (repo, tag string) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s, ""
	}
	if t, ok := named.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return reference.FamiliarName(named), tag
}

// explainRef turns the library's error into a sentence that points at the
// offending part, since "invalid reference format" alone leaves users
// guessing.
func explainRef(s string, err error) string {
	if strings.ContainsAny(s, " \t\r\n") {
		return "contains whitespace"
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/:@[]", r)) {
			return fmt.Sprintf("invalid character %q at position %d (allowed: a-z 0-9 . _ - / : @)", r, i)
		}
	}
	switch {
	case errors.Is(err, reference.ErrNameTooLong):
		return err.Error()
	case len(s) == 64 && isHex(s):
		return "a 64-character hexadecimal string is an image ID, not a name"
	}
	name, dgst, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if strings.Contains(dgst, "@") {
			return "more than one '@'"
		}
		if _, derr := digest.Parse(dgst); derr != nil {
			return fmt.Sprintf("invalid digest %q: %v", truncate(dgst), derr)
		}
	}
	repo, tag := name, ""
	if i := strings.LastIndex(name, ":"); i >= 0 && !strings.Contains(name[i+1:], "/") {
		repo, tag = name[:i], name[i+1:]
		if strings.Contains(repo, ":") && !strings.Contains(repo, "/") {
			return "more than one ':' (use name:tag, or host:port/name:tag)"
		}
		if tag == "" {
			return "empty tag after ':'"
		}
		if len(tag) > 128 {
			return "tag longer than 128 characters"
		}
		if tag[0] == '.' || tag[0] == '-' {
			return fmt.Sprintf("tag %q must start with a letter, digit or '_'", truncate(tag))
		}
	}
	if repo == "" {
		return "empty repository name"
	}
	if repo != strings.ToLower(repo) {
		// The registry host may have capitals; the path may not.
		path := repo
		if h, rest, ok := strings.Cut(repo, "/"); ok && (strings.ContainsAny(h, ".:") || h == "localhost") {
			path = rest
		}
		if path != strings.ToLower(path) {
			return fmt.Sprintf("repository name %q must be lowercase", truncate(path))
		}
	}
	for _, c := range strings.Split(repo, "/") {
		if c == "" {
			return "empty path component (check for '//' or a leading or trailing '/')"
		}
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "invalid reference format: ")
	if msg == reference.ErrReferenceInvalidFormat.Error() {
		return "not of the form [host[:port]/]name[:tag][@digest]; name components are lowercase letters and digits separated by '.', '_', '__' or '-'"
	}
	return msg
}

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return s != ""
}

// truncate keeps hostile input from flooding an error message.
func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
