package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// getBlob serves GET and HEAD of /v2/<name>/blobs/<digest>, with Range.
func (g *Registry) getBlob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	d, err := ParseDigest(ref)
	if err != nil {
		return apiError(CodeDigestInvalid, err)
	}
	if served, err := g.proxy.serveBlob(g, w, r, name, d); served || err != nil {
		return err
	}
	f, _, err := g.store.OpenRepoBlob(name, d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &Error{Code: CodeBlobUnknown, Message: "blob unknown to registry", Detail: map[string]string{"digest": string(d)}}
		}
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Type", "application/octet-stream")
	// A blob never changes under its digest.
	h.Set("Etag", `"`+string(d)+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	// ServeContent does Range, If-Range, If-None-Match, HEAD and 416.
	dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: g.ioTimeout}
	http.ServeContent(dw, r, "", time.Time{}, f)
	return nil
}

// deleteBlob unlinks a blob from one repository; the bytes stay until
// garbage collection finds no repository linking them.
func (g *Registry) deleteBlob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	if err := g.proxy.refusePush(name); err != nil {
		return err
	}
	if !g.deleteEnabled {
		return &Error{Code: CodeUnsupported, Message: "deletes are disabled on this registry"}
	}
	d, err := ParseDigest(ref)
	if err != nil {
		return apiError(CodeDigestInvalid, err)
	}
	if err := g.store.UnlinkBlob(name, d); err != nil {
		if errdefs.IsNotFound(err) {
			return &Error{Code: CodeBlobUnknown, Message: "blob unknown to registry", Detail: map[string]string{"digest": string(d)}}
		}
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// serveUpload dispatches the upload endpoints: POST starts (or mounts, or
// uploads in one request), PATCH appends, PUT finishes, GET reports the
// offset, DELETE cancels.
func (g *Registry) serveUpload(w http.ResponseWriter, r *http.Request, name, id string) error {
	if err := g.proxy.refusePush(name); err != nil {
		return err
	}
	if r.Method == http.MethodPost {
		if id != "" {
			return &Error{Code: CodeUnsupported, Message: "POST starts an upload at /v2/<name>/blobs/uploads/"}
		}
		return g.startUpload(w, r, name)
	}
	if id == "" {
		return &Error{Code: CodeUnsupported, Message: "method " + r.Method + " needs an upload ID: use the Location of POST"}
	}
	if r.Method == http.MethodPut {
		// The digest is checked before the session is touched: a PUT
		// without a usable one leaves the session as it was.
		if _, err := finishDigest(r); err != nil {
			return err
		}
	}
	u, err := g.store.OpenUpload(name, id, g.uploadExpiry)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &Error{Code: CodeBlobUploadUnknown, Message: "blob upload unknown to registry", Detail: map[string]string{"uuid": truncate(id)}}
		}
		return err
	}
	defer u.Close()
	switch r.Method {
	case http.MethodGet:
		uploadHeaders(w, name, u)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodDelete:
		if err := u.Cancel(); err != nil {
			return err
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := g.appendChunk(w, r, name, u); err != nil {
			return err
		}
		uploadHeaders(w, name, u)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPut:
		d, _ := finishDigest(r)
		if r.ContentLength != 0 || r.Header.Get("Content-Range") != "" {
			if err := g.appendChunk(w, r, name, u); err != nil {
				return err
			}
		}
		return g.commit(w, name, u, d)
	}
	return &Error{Code: CodeUnsupported, Message: "method " + r.Method + " is not supported on uploads"}
}

// finishDigest is the digest= of a closing PUT or a one-request POST.
func finishDigest(r *http.Request) (digest.Digest, error) {
	q := r.URL.Query().Get("digest")
	if q == "" {
		return "", &Error{Code: CodeDigestInvalid, Message: "the digest query parameter is required to finish an upload"}
	}
	d, err := ParseDigest(q)
	if err != nil {
		return "", apiError(CodeDigestInvalid, err)
	}
	return d, nil
}

// startUpload is POST /v2/<name>/blobs/uploads/.
func (g *Registry) startUpload(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	if q.Has("mount") {
		done, err := g.mount(w, r, name, q.Get("mount"), q.Get("from"))
		if done || err != nil {
			return err
		}
		// Not mountable: the spec's answer is a fresh session (202).
	}
	var alg digest.Algorithm
	if a := q.Get("digest-algorithm"); a != "" {
		if _, ok := lookupAlgorithm(a); !ok {
			return &Error{Code: CodeDigestInvalid, Message: fmt.Sprintf("digest algorithm %q is not supported (sha256 and sha512 are)", truncate(a))}
		}
		alg = digest.Algorithm(a)
	}
	var want digest.Digest
	if q.Has("digest") {
		d, err := finishDigest(r)
		if err != nil {
			return err
		}
		want, alg = d, d.Algorithm()
	}
	u, err := g.store.NewUpload(name, alg)
	if err != nil {
		return err
	}
	defer u.Close()
	if want == "" {
		uploadHeaders(w, name, u)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	// One request: the body is the whole blob.
	if err := g.appendChunk(w, r, name, u); err != nil {
		u.Cancel()
		return err
	}
	return g.commit(w, name, u, want)
}

// mount links a blob from another repository (or, with no Authorizer and
// no from=, from wherever it is stored). done is false when the blob is
// not there to mount.
func (g *Registry) mount(w http.ResponseWriter, r *http.Request, name, mount, from string) (done bool, err error) {
	d, err := ParseDigest(mount)
	if err != nil {
		return false, apiError(CodeDigestInvalid, err)
	}
	switch {
	case from != "":
		if err := ValidateName(from); err != nil {
			return false, apiError(CodeNameInvalid, err)
		}
		if _, err := g.store.StatRepoBlob(from, d); err != nil {
			if errdefs.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
	case g.authorizer == nil:
		if _, err := g.store.StatBlob(d); err != nil {
			if errdefs.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
	default:
		return false, nil
	}
	if err := g.store.LinkBlob(name, d); err != nil {
		if errdefs.IsNotFound(err) {
			return false, nil // swept meanwhile
		}
		return false, err
	}
	blobCreated(w, name, d)
	return true, nil
}

// appendChunk writes a PATCH, PUT or POST body into the session. With a
// Content-Range the chunk must start where the upload stands (416
// otherwise, with the offset to resume from) and be exactly that long.
func (g *Registry) appendChunk(w http.ResponseWriter, r *http.Request, name string, u *Upload) error {
	start, length := int64(-1), r.ContentLength
	if cr := r.Header.Get("Content-Range"); cr != "" {
		s, e, err := parseContentRange(cr)
		if err != nil {
			return &Error{Code: CodeBlobUploadInvalid, Message: err.Error()}
		}
		if e < s {
			uploadHeaders(w, name, u)
			return &Error{Code: CodeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable, Message: fmt.Sprintf("Content-Range %q ends before it starts", cr)}
		}
		if r.ContentLength >= 0 && r.ContentLength != e-s+1 {
			return &Error{Code: CodeSizeInvalid, Message: fmt.Sprintf("Content-Range %q is %d bytes, Content-Length says %d", cr, e-s+1, r.ContentLength)}
		}
		start, length = s, e-s+1
	}
	if _, err := u.Append(g.body(w, r), start, length, g.maxBlobSize); err != nil {
		if _, ok := err.(*RangeError); ok {
			uploadHeaders(w, name, u)
		}
		return err
	}
	return nil
}

// parseContentRange reads the spec's "<start>-<end>" (inclusive), and
// also the RFC 9110 forms some clients send: "bytes=<s>-<e>" and
// "bytes <s>-<e>/<total>".
func parseContentRange(v string) (int64, int64, error) {
	s := strings.TrimSpace(v)
	if rest, ok := strings.CutPrefix(s, "bytes="); ok {
		s = rest
	} else if rest, ok := strings.CutPrefix(s, "bytes "); ok {
		s = rest
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("Content-Range %q: want <start>-<end>", truncate(v))
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < 0 {
		return 0, 0, fmt.Errorf("Content-Range %q: want <start>-<end> with non-negative integers", truncate(v))
	}
	return start, end, nil
}

// commit finishes the session as blob d and answers 201.
func (g *Registry) commit(w http.ResponseWriter, name string, u *Upload, d digest.Digest) error {
	if err := u.Commit(d); err != nil {
		return err
	}
	blobCreated(w, name, d)
	return nil
}

func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+string(d))
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// uploadHeaders tell a client where the session is and how far it got.
// The session lives in the path alone, so a client that keeps only the
// path (and drops the query) still reaches it. Range is inclusive: 0-0
// for an empty upload, as distribution sends.
func uploadHeaders(w http.ResponseWriter, name string, u *Upload) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/uploads/"+u.ID)
	h.Set("Docker-Upload-UUID", u.ID)
	end := u.Offset() - 1
	if end < 0 {
		end = 0
	}
	h.Set("Range", fmt.Sprintf("0-%d", end))
}
