package reference

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// NameTotalLengthMax is the longest repository path a reference may have.
const NameTotalLengthMax = 255

// The errors of Parse, as distribution/reference's (same texts).
var (
	ErrReferenceInvalidFormat = errors.New("invalid reference format")
	ErrTagInvalidFormat       = errors.New("invalid tag format")
	ErrDigestInvalidFormat    = errors.New("invalid digest format")
	ErrNameContainsUppercase  = errors.New("repository name must be lowercase")
	ErrNameEmpty              = errors.New("repository name must have at least one component")
	ErrNameTooLong            = fmt.Errorf("repository name must not be more than %v characters", NameTotalLengthMax)
	ErrNameNotCanonical       = errors.New("repository name must be canonical")
)

// Reference is any reference: a name, a name with a tag and/or digest,
// or a bare digest.
type Reference interface{ String() string }

// Named is a reference with a repository name.
type Named interface {
	Reference
	Name() string
}

// Tagged is a reference with a tag.
type Tagged interface {
	Reference
	Tag() string
}

// NamedTagged is a name with a tag.
type NamedTagged interface {
	Named
	Tag() string
}

// Digested is a reference with a digest.
type Digested interface {
	Reference
	Digest() digest.Digest
}

// Canonical is a name with a digest.
type Canonical interface {
	Named
	Digest() digest.Digest
}

// namedRepository is a Named that knows its domain and path.
type namedRepository interface {
	Named
	Domain() string
	Path() string
}

// normalizedNamed is a Named that has a familiar (short) form.
type normalizedNamed interface {
	Named
	Familiar() Named
}

const (
	defaultDomain       = "docker.io"
	legacyDefaultDomain = "index.docker.io"
	officialRepoPrefix  = "library/"
	defaultTag          = "latest"
	localhost           = "localhost"
)

// Parse parses s as a reference in its canonical form: no docker.io or
// library/ is added.
func Parse(s string) (Reference, error) {
	name, tag, dgst, ok := match(s)
	if !ok {
		if s == "" {
			return nil, ErrNameEmpty
		}
		if _, _, _, ok := match(strings.ToLower(s)); ok {
			return nil, ErrNameContainsUppercase
		}
		return nil, ErrReferenceInvalidFormat
	}
	domain, p, _ := splitName(name)
	repo := repository{domain: domain, path: p}
	if len(repo.path) > NameTotalLengthMax {
		return nil, ErrNameTooLong
	}
	ref := reference{namedRepository: repo, tag: tag}
	if dgst != "" {
		d, err := digest.Parse(dgst)
		if err != nil {
			return nil, err
		}
		ref.digest = d
	}
	return bestReferenceType(ref), nil
}

// ParseNormalizedNamed parses a reference as a user writes it: a name
// without a domain is Docker Hub's ("docker.io"), a one-component Hub
// name an official image's ("library/").
func ParseNormalizedNamed(s string) (Named, error) {
	if matchIdentifier(s) {
		return nil, fmt.Errorf("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	domain, remainder := splitDockerDomain(s)
	remote := remainder
	if i := strings.IndexRune(remainder, ':'); i > -1 {
		remote = remainder[:i]
	}
	if strings.ToLower(remote) != remote {
		return nil, fmt.Errorf("invalid reference format: repository name (%s) must be lowercase", remote)
	}
	ref, err := Parse(domain + "/" + remainder)
	if err != nil {
		return nil, err
	}
	named, ok := ref.(Named)
	if !ok {
		return nil, fmt.Errorf("reference %s has no name", ref.String())
	}
	return named, nil
}

// ParseNamed parses a reference that must be in canonical form already.
func ParseNamed(s string) (Named, error) {
	named, err := ParseNormalizedNamed(s)
	if err != nil {
		return nil, err
	}
	if named.String() != s {
		return nil, ErrNameNotCanonical
	}
	return named, nil
}

// splitDockerDomain splits a user's name into domain and remote name,
// adding Docker Hub's defaults.
func splitDockerDomain(name string) (domain, remote string) {
	maybeDomain, maybeRemote, ok := strings.Cut(name, "/")
	if !ok {
		return defaultDomain, officialRepoPrefix + name
	}
	switch {
	case maybeDomain == localhost:
		domain, remote = maybeDomain, maybeRemote
	case maybeDomain == legacyDefaultDomain:
		domain, remote = defaultDomain, maybeRemote
	case strings.ContainsAny(maybeDomain, ".:"), strings.ToLower(maybeDomain) != maybeDomain:
		domain, remote = maybeDomain, maybeRemote
	default:
		domain, remote = defaultDomain, name
	}
	if domain == defaultDomain && !strings.ContainsRune(remote, '/') {
		remote = officialRepoPrefix + remote
	}
	return domain, remote
}

// WithName makes a Named of a canonical name.
func WithName(name string) (Named, error) {
	domain, p, ok := splitName(name)
	if !ok {
		return nil, ErrReferenceInvalidFormat
	}
	if len(p) > NameTotalLengthMax {
		return nil, ErrNameTooLong
	}
	return repository{domain: domain, path: p}, nil
}

// WithTag adds a tag to name, keeping a digest it has.
func WithTag(name Named, tag string) (NamedTagged, error) {
	if !matchTag(tag) {
		return nil, ErrTagInvalidFormat
	}
	repo := repoOf(name)
	if c, ok := name.(Canonical); ok {
		return reference{namedRepository: repo, tag: tag, digest: c.Digest()}, nil
	}
	return taggedReference{namedRepository: repo, tag: tag}, nil
}

// WithDigest adds a digest to name, keeping a tag it has.
func WithDigest(name Named, d digest.Digest) (Canonical, error) {
	if !matchDigest(d.String()) {
		return nil, ErrDigestInvalidFormat
	}
	repo := repoOf(name)
	if t, ok := name.(Tagged); ok {
		return reference{namedRepository: repo, tag: t.Tag(), digest: d}, nil
	}
	return canonicalReference{namedRepository: repo, digest: d}, nil
}

// repoOf is the repository of a Named, domain and path.
func repoOf(name Named) repository {
	if r, ok := name.(namedRepository); ok {
		return repository{domain: r.Domain(), path: r.Path()}
	}
	return repository{path: name.Name()}
}

// TrimNamed is ref without its tag and digest.
func TrimNamed(ref Named) Named {
	if r, ok := ref.(namedRepository); ok {
		return repository{domain: r.Domain(), path: r.Path()}
	}
	domain, p := SplitName(ref.Name())
	return repository{domain: domain, path: p}
}

// SplitName is a canonical name's domain and path ("" and the name when
// it has no domain).
func SplitName(name string) (domain, path string) {
	d, p, ok := splitName(name)
	if !ok {
		return "", name
	}
	return d, p
}

// Domain is named's registry host ("docker.io" for Hub names).
func Domain(named Named) string {
	if r, ok := named.(namedRepository); ok {
		return r.Domain()
	}
	d, _ := SplitName(named.Name())
	return d
}

// Path is named's repository path in its registry.
func Path(named Named) string {
	if r, ok := named.(namedRepository); ok {
		return r.Path()
	}
	_, p := SplitName(named.Name())
	return p
}

// IsNameOnly reports whether ref has neither tag nor digest.
func IsNameOnly(ref Named) bool {
	if _, ok := ref.(NamedTagged); ok {
		return false
	}
	if _, ok := ref.(Canonical); ok {
		return false
	}
	return true
}

// TagNameOnly adds the "latest" tag to a bare name.
func TagNameOnly(ref Named) Named {
	if IsNameOnly(ref) {
		t, err := WithTag(ref, defaultTag)
		if err != nil {
			panic(err) // "latest" is a valid tag
		}
		return t
	}
	return ref
}

// FamiliarName is the name as Docker shows it: no docker.io, no library/.
func FamiliarName(ref Named) string {
	if nn, ok := ref.(normalizedNamed); ok {
		return nn.Familiar().Name()
	}
	return ref.Name()
}

// FamiliarString is the reference as Docker shows it.
func FamiliarString(ref Reference) string {
	if nn, ok := ref.(normalizedNamed); ok {
		return nn.Familiar().String()
	}
	return ref.String()
}

// FamiliarMatch matches pattern (path.Match) against the familiar string
// of ref, then its familiar name.
func FamiliarMatch(pattern string, ref Reference) (bool, error) {
	matched, err := path.Match(pattern, FamiliarString(ref))
	if named, ok := ref.(Named); ok && !matched {
		matched, _ = path.Match(pattern, FamiliarName(named))
	}
	return matched, err
}

// bestReferenceType is the narrowest type for what ref has.
func bestReferenceType(ref reference) Reference {
	switch {
	case ref.tag == "" && ref.digest == "":
		return ref.namedRepository
	case ref.tag == "":
		return canonicalReference{namedRepository: ref.namedRepository, digest: ref.digest}
	case ref.digest == "":
		return taggedReference{namedRepository: ref.namedRepository, tag: ref.tag}
	}
	return ref
}

func familiarize(r namedRepository) repository {
	repo := repository{domain: r.Domain(), path: r.Path()}
	if repo.domain == defaultDomain {
		repo.domain = ""
		if rest, ok := strings.CutPrefix(repo.path, officialRepoPrefix); ok && !strings.ContainsRune(rest, '/') {
			repo.path = rest
		}
	}
	return repo
}

type repository struct{ domain, path string }

func (r repository) String() string { return r.Name() }
func (r repository) Name() string {
	if r.domain == "" {
		return r.path
	}
	return r.domain + "/" + r.path
}
func (r repository) Domain() string  { return r.domain }
func (r repository) Path() string    { return r.path }
func (r repository) Familiar() Named { return familiarize(r) }

type reference struct {
	namedRepository
	tag    string
	digest digest.Digest
}

func (r reference) String() string        { return r.Name() + ":" + r.tag + "@" + r.digest.String() }
func (r reference) Tag() string           { return r.tag }
func (r reference) Digest() digest.Digest { return r.digest }
func (r reference) Familiar() Named {
	return reference{namedRepository: familiarize(r.namedRepository), tag: r.tag, digest: r.digest}
}

type taggedReference struct {
	namedRepository
	tag string
}

func (t taggedReference) String() string { return t.Name() + ":" + t.tag }
func (t taggedReference) Tag() string    { return t.tag }
func (t taggedReference) Familiar() Named {
	return taggedReference{namedRepository: familiarize(t.namedRepository), tag: t.tag}
}

type canonicalReference struct {
	namedRepository
	digest digest.Digest
}

func (c canonicalReference) String() string        { return c.Name() + "@" + c.digest.String() }
func (c canonicalReference) Digest() digest.Digest { return c.digest }
func (c canonicalReference) Familiar() Named {
	return canonicalReference{namedRepository: familiarize(c.namedRepository), digest: c.digest}
}
