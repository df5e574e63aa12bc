package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// maxTagParams caps the tag= parameters of one manifest PUT; the spec
// asks for at least 10 and allows 414 beyond what a registry takes.
const maxTagParams = 100

// parseRef parses a manifest reference from a URL, as a spec error.
func parseRef(ref string) (Reference, error) {
	r, err := ParseReference(ref)
	if err != nil {
		if strings.Contains(ref, ":") {
			return Reference{}, apiError(CodeDigestInvalid, err)
		}
		return Reference{}, &Error{Code: CodeManifestInvalid, Message: userText(err)}
	}
	return r, nil
}

// resolve turns a reference into the digest of a manifest in repository
// name, with MANIFEST_UNKNOWN (or NAME_UNKNOWN) when there is none.
func (g *Registry) resolve(name string, ref Reference) (digest.Digest, error) {
	d := ref.Digest
	if ref.Tag != "" {
		var err error
		if d, err = g.store.ResolveTag(name, ref.Tag); err != nil {
			if errdefs.IsNotFound(err) {
				return "", g.manifestUnknown(name, ref)
			}
			return "", err
		}
	}
	return d, nil
}

func (g *Registry) manifestUnknown(name string, ref Reference) error {
	if ok, err := g.store.RepositoryExists(name); err == nil && !ok {
		return &Error{Code: CodeNameUnknown, Message: "repository name not known to registry", Detail: map[string]string{"name": name}}
	}
	detail := map[string]string{"tag": ref.Tag}
	if ref.Digest != "" {
		detail = map[string]string{"digest": string(ref.Digest)}
	}
	return &Error{Code: CodeManifestUnknown, Message: "manifest unknown to registry", Detail: detail}
}

// getManifest serves GET and HEAD of /v2/<name>/manifests/<reference>.
// The bytes are sent exactly as pushed, with the media type they were
// pushed as, whatever the Accept header says: berth converts nothing.
func (g *Registry) getManifest(w http.ResponseWriter, r *http.Request, name, refStr string) error {
	ref, err := parseRef(refStr)
	if err != nil {
		return err
	}
	if err := g.proxy.cacheManifest(g, w, r, name, ref); err != nil {
		return err
	}
	d, err := g.resolve(name, ref)
	if err != nil {
		return err
	}
	mt, _, err := g.store.StatManifest(name, d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return g.manifestUnknown(name, ref)
		}
		return err
	}
	f, _, err := g.store.OpenBlob(d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return g.manifestUnknown(name, ref)
		}
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Etag", `"`+string(d)+`"`)
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

// putManifest is PUT /v2/<name>/manifests/<reference>[?tag=...].
func (g *Registry) putManifest(w http.ResponseWriter, r *http.Request, name, refStr string) error {
	if err := g.proxy.refusePush(name); err != nil {
		return err
	}
	ref, err := parseRef(refStr)
	if err != nil {
		return err
	}
	tags, err := tagParams(r, ref)
	if err != nil {
		return err
	}
	tooLarge := &Error{Code: CodeManifestInvalid, Status: http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("manifest is over the registry's limit of %d bytes", g.maxManifestSize)}
	if r.ContentLength > g.maxManifestSize {
		return tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(g.body(w, r), g.maxManifestSize+1))
	if err != nil {
		return err
	}
	if int64(len(data)) > g.maxManifestSize {
		return tooLarge
	}
	alg := digest.Canonical
	if ref.Digest != "" {
		alg = ref.Digest.Algorithm()
	}
	d := alg.FromBytes(data)
	if ref.Digest != "" && ref.Digest != d {
		return &Error{Code: CodeDigestInvalid, Message: fmt.Sprintf("manifest has digest %s, not %s as its URL says", d, ref.Digest)}
	}
	info, err := parseManifest(r.Header.Get("Content-Type"), data)
	if err != nil {
		return err
	}
	// From the check of what the manifest names to its last tag: one
	// critical section against the garbage collector (gc.go), which can
	// then not sweep a blob between our finding it and our naming it.
	unlock, err := g.store.LockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	if err := g.checkReferences(name, info); err != nil {
		return err
	}
	if err := g.store.PutManifest(name, d, info.MediaType, data); err != nil {
		return err
	}
	h := w.Header()
	if info.Subject != nil {
		if err := g.store.AddReferrer(name, info.Subject.Digest, info.referrerDescriptor(d, int64(len(data)))); err != nil {
			return err
		}
		h.Set("OCI-Subject", string(info.Subject.Digest))
	}
	if ref.Tag != "" {
		tags = append(tags, ref.Tag)
	}
	for _, t := range tags {
		if err := g.store.SetTag(name, t, d); err != nil {
			return err
		}
	}
	if ref.Digest != "" && len(tags) > 0 {
		h.Set("OCI-Tag", strings.Join(tags, ", "))
	}
	h.Set("Location", "/v2/"+name+"/manifests/"+string(d))
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// tagParams are the tag= parameters of a push by digest (distribution
// spec 1.1's end-7b), each validated.
func tagParams(r *http.Request, ref Reference) ([]string, error) {
	tags := r.URL.Query()["tag"]
	if len(tags) == 0 {
		return nil, nil
	}
	if ref.Digest == "" {
		return nil, &Error{Code: CodeManifestInvalid, Message: "tag parameters go with a push by digest, not by tag"}
	}
	if len(tags) > maxTagParams {
		return nil, &Error{Code: CodeManifestInvalid, Status: http.StatusRequestURITooLong, Message: fmt.Sprintf("%d tags in one push; at most %d", len(tags), maxTagParams)}
	}
	seen := map[string]bool{}
	out := tags[:0]
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return nil, &Error{Code: CodeManifestInvalid, Message: userText(err)}
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out, nil
}

// checkReferences answers MANIFEST_BLOB_UNKNOWN, one error per missing
// reference, unless everything the manifest names is in the repository:
// blobs for an image (non-distributable layers excepted), manifests for an
// index. A subject need not exist (the spec lets referrers come first).
// It runs under LockWrites, and what it finds it touches (useRepoBlob,
// useManifest): a running collector then keeps it.
func (g *Registry) checkReferences(name string, info *manifestInfo) error {
	var missing errorList
	for _, b := range info.Blobs {
		size, err := g.store.useRepoBlob(name, b.Digest)
		switch {
		case errdefs.IsNotFound(err):
			missing = append(missing, &Error{Code: CodeManifestBlobUnknown, Message: "manifest references a blob unknown to the repository: " + string(b.Digest), Detail: map[string]string{"digest": string(b.Digest)}})
		case err != nil:
			return err
		case size != b.Size:
			return invalidManifest("descriptor of %s says %d bytes, the blob has %d", b.Digest, b.Size, size)
		}
	}
	for _, m := range info.Manifests {
		_, size, err := g.store.useManifest(name, m.Digest)
		switch {
		case errdefs.IsNotFound(err):
			missing = append(missing, &Error{Code: CodeManifestBlobUnknown, Message: "index references a manifest unknown to the repository: " + string(m.Digest), Detail: map[string]string{"digest": string(m.Digest)}})
		case err != nil:
			return err
		case size != m.Size:
			return invalidManifest("descriptor of %s says %d bytes, the manifest has %d", m.Digest, m.Size, size)
		}
	}
	if len(missing) > 0 {
		return missing
	}
	return nil
}

// deleteManifest is DELETE of a tag (the tag only) or of a digest (the
// manifest, its tags and its referrers entry).
func (g *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, name, refStr string) error {
	if err := g.proxy.refusePush(name); err != nil {
		return err
	}
	if !g.deleteEnabled {
		return &Error{Code: CodeUnsupported, Message: "deletes are disabled on this registry"}
	}
	ref, err := parseRef(refStr)
	if err != nil {
		return err
	}
	if ref.Tag != "" {
		if err := g.store.DeleteTag(name, ref.Tag); err != nil {
			if errdefs.IsNotFound(err) {
				return g.manifestUnknown(name, ref)
			}
			return err
		}
	} else {
		var subject digest.Digest
		if _, data, err := g.store.GetManifest(name, ref.Digest, 64<<20); err == nil {
			subject = subjectOf(data)
		} else if !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return err
		}
		if err := g.store.DeleteManifest(name, ref.Digest, subject); err != nil {
			if errdefs.IsNotFound(err) {
				return g.manifestUnknown(name, ref)
			}
			return err
		}
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// subjectOf is the subject digest of a stored manifest, if it has a valid one.
func subjectOf(data []byte) digest.Digest {
	var m struct {
		Subject *struct {
			Digest string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(data, &m) != nil || m.Subject == nil {
		return ""
	}
	d, err := ParseDigest(m.Subject.Digest)
	if err != nil {
		return ""
	}
	return d
}

// atoiParam parses a non-negative integer query parameter; absent is -1.
func atoiParam(r *http.Request, key string) (int, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: fmt.Sprintf("query parameter %s=%q: want a non-negative integer", key, truncate(v))}
	}
	return n, nil
}
