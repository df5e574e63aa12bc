package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
)

// cacheManifest makes sure the manifest ref of a proxied repository is in
// the store and, for a tag, as fresh as the upstream's ttl asks, so that
// getManifest serves it as it serves any other. It does nothing for a
// name that is not proxied (or when p is nil).
func (p *Proxy) cacheManifest(g *Registry, w http.ResponseWriter, r *http.Request, name string, ref Reference) error {
	up, remote := p.route(name)
	if up == nil {
		return nil
	}
	detail := map[string]string{"tag": ref.Tag}
	if ref.Digest != "" {
		detail = map[string]string{"digest": string(ref.Digest)}
	}
	unknown := &Error{Code: CodeManifestUnknown, Message: "manifest unknown to registry", Detail: detail}
	// The check is shared by every request for the same reference, so it
	// must not end when the first client hangs up.
	shared := func(key string, fn func(ctx context.Context) error) error {
		defer upstreamWait(g, w)()
		_, err, _ := p.manifests.Do(key, func() (any, error) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), upstreamCallTimeout)
			defer cancel()
			return nil, fn(ctx)
		})
		return err
	}

	if ref.Digest != "" {
		if _, _, err := g.store.StatManifest(name, ref.Digest); err == nil {
			return nil // a digest never changes
		}
		err := shared(name+"@"+string(ref.Digest), func(ctx context.Context) error {
			m, err := p.fetchManifest(ctx, g, up, remote, string(ref.Digest), ref.Digest)
			if err != nil {
				return err
			}
			return m.store(g, name, "")
		})
		if err != nil {
			return proxyClientError(up, remote, err, unknown)
		}
		return nil
	}

	have := false
	if d, err := g.store.ResolveTag(name, ref.Tag); err == nil {
		if _, _, err := g.store.StatManifest(name, d); err == nil {
			have = true
		}
	}
	if have && up.cfg.TTL > 0 {
		if at, err := g.store.tagCheckedAt(name, ref.Tag); err == nil && time.Since(at) < up.cfg.TTL {
			return nil
		}
	}
	err := shared(name+":"+ref.Tag, func(ctx context.Context) error {
		return p.refreshTag(ctx, g, up, name, remote, ref.Tag, have)
	})
	switch {
	case err == nil:
		return nil
	case have && upstreamUnavailable(err):
		g.log.Warn("registry: upstream unavailable; serving the cached tag", "repository", name, "tag", ref.Tag, "err", err)
		return nil
	}
	return proxyClientError(up, remote, err, unknown)
}

// refreshTag asks the upstream where tag points: a HEAD, and a GET only
// when the manifest is not cached yet. The tag file's mtime records the
// check, for the ttl. have says a cached copy can stand in if the
// upstream cannot answer; without one, a failed HEAD is tried as a GET,
// whose error body (a 429's "pull rate limit reached") is worth passing on.
func (p *Proxy) refreshTag(ctx context.Context, g *Registry, up *upstream, name, remote, tag string, have bool) error {
	resp, err := up.do(ctx, http.MethodHead, remote, "/manifests/"+tag, http.Header{"Accept": {manifestAccept}})
	switch {
	case err == nil:
		resp.Body.Close()
		if d, perr := ParseDigest(resp.Header.Get("Docker-Content-Digest")); perr == nil {
			if err := retagCached(g, name, tag, d); !errdefs.IsNotFound(err) {
				return err
			}
		}
	case upstreamNotFound(err):
		return p.forgetTag(g, name, tag, err)
	case upstreamUnavailable(err) && have:
		return err
	}
	// Not cached, or a HEAD the upstream would not answer (some answer
	// 405, or leave out the digest): GET it.
	m, err := p.fetchManifest(ctx, g, up, remote, tag, "")
	if upstreamNotFound(err) {
		return p.forgetTag(g, name, tag, err)
	}
	if err != nil {
		return err
	}
	return m.store(g, name, tag)
}

// retagCached points tag at manifest d, cached already, and records the
// check; errdefs.ErrNotFound when d is not cached (or was just
// collected). Like every write that makes content reachable, it is one
// critical section against the garbage collector (gc.go), in which
// useManifest touches the revision so that a collection under way keeps
// it.
func retagCached(g *Registry, name, tag string, d digest.Digest) error {
	unlock, err := g.store.LockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	if _, _, err := g.store.useManifest(name, d); err != nil {
		return err
	}
	if err := g.store.SetTag(name, tag, d); err != nil {
		return err
	}
	return g.store.touchTag(name, tag)
}

// forgetTag removes a cached tag the upstream no longer has, and returns
// the upstream's answer for the client.
func (p *Proxy) forgetTag(g *Registry, name, tag string, upstreamErr error) error {
	if err := g.store.DeleteTag(name, tag); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return upstreamErr
}

// fetchedManifest is a manifest from the upstream, checked, to be stored.
type fetchedManifest struct {
	digest digest.Digest
	data   []byte
	info   *manifestInfo
}

// fetchManifest GETs manifest ref (a tag or a digest) of remote and
// checks it as a push would be checked: its digest against want and the
// upstream's Docker-Content-Digest, its structure. Its blobs are fetched
// when they are asked for.
func (p *Proxy) fetchManifest(ctx context.Context, g *Registry, up *upstream, remote, ref string, want digest.Digest) (*fetchedManifest, error) {
	resp, err := up.do(ctx, http.MethodGet, remote, "/manifests/"+ref, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	bad := func(format string, args ...any) error {
		return &upstreamError{remote: up.cfg.Remote, bad: true, err: fmt.Errorf("manifest %s of %s: "+format, append([]any{ref, remote}, args...)...)}
	}
	if resp.ContentLength > g.maxManifestSize {
		return nil, bad("%d bytes, over the limit of %d", resp.ContentLength, g.maxManifestSize)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, g.maxManifestSize+1))
	if err != nil {
		return nil, &upstreamError{remote: up.cfg.Remote, err: fmt.Errorf("reading manifest %s of %s: %w", ref, remote, err)}
	}
	if int64(len(data)) > g.maxManifestSize {
		return nil, bad("over the limit of %d bytes", g.maxManifestSize)
	}
	said, _ := ParseDigest(resp.Header.Get("Docker-Content-Digest"))
	alg := digest.Canonical
	switch {
	case want != "":
		alg = want.Algorithm()
	case said != "":
		alg = said.Algorithm()
	}
	d := alg.FromBytes(data)
	if want != "" && d != want {
		return nil, bad("the bytes sent have digest %s", d)
	}
	if said != "" && said.Algorithm() == alg && said != d {
		return nil, bad("Docker-Content-Digest says %s, the bytes sent have %s", said, d)
	}
	info, err := parseManifest(resp.Header.Get("Content-Type"), data)
	if err != nil {
		return nil, bad("%s", userText(err))
	}
	return &fetchedManifest{digest: d, data: data, info: info}, nil
}

// store puts the manifest into repository name, and tag (if not "") on
// it, in one critical section against the garbage collector.
func (m *fetchedManifest) store(g *Registry, name, tag string) error {
	unlock, err := g.store.LockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	if err := g.store.PutManifest(name, m.digest, m.info.MediaType, m.data); err != nil {
		return err
	}
	if s := m.info.Subject; s != nil {
		if err := g.store.AddReferrer(name, s.Digest, m.info.referrerDescriptor(m.digest, int64(len(m.data)))); err != nil {
			return err
		}
	}
	if tag == "" {
		return nil
	}
	if err := g.store.SetTag(name, tag, m.digest); err != nil {
		return err
	}
	return g.store.touchTag(name, tag)
}

// serveBlob answers GET and HEAD of a blob of a proxied repository that is
// not linked into it yet. served is false when the blob is (now) in the
// store and getBlob should serve it; an error is answered as usual.
func (p *Proxy) serveBlob(g *Registry, w http.ResponseWriter, r *http.Request, name string, d digest.Digest) (served bool, err error) {
	up, remote := p.route(name)
	if up == nil {
		return false, nil
	}
	if _, err := g.store.StatRepoBlob(name, d); err == nil || !errdefs.IsNotFound(err) {
		return false, err
	}
	unknown := &Error{Code: CodeBlobUnknown, Message: "blob unknown to registry", Detail: map[string]string{"digest": string(d)}}
	ctx := r.Context()
	defer upstreamWait(g, w)()

	// Already stored for another repository: link it, as a mount without
	// from= would; with an Authorizer, only once the upstream confirms
	// this repository has it.
	if _, err := g.store.StatBlob(d); err == nil {
		if g.authorizer != nil {
			resp, err := up.do(ctx, http.MethodHead, remote, "/blobs/"+string(d), nil)
			if err != nil {
				return false, proxyClientError(up, remote, err, unknown)
			}
			resp.Body.Close()
		}
		if err := g.store.LinkBlob(name, d); err == nil || !errdefs.IsNotFound(err) {
			return false, err
		}
		// Swept meanwhile: fetch it again.
	}

	if r.Method == http.MethodHead {
		resp, err := up.do(ctx, http.MethodHead, remote, "/blobs/"+string(d), nil)
		if err != nil {
			return false, proxyClientError(up, remote, err, unknown)
		}
		resp.Body.Close()
		h := w.Header()
		h.Set("Docker-Content-Digest", string(d))
		h.Set("Content-Type", "application/octet-stream")
		if resp.ContentLength >= 0 {
			h.Set("Content-Length", fmt.Sprint(resp.ContentLength))
		}
		w.WriteHeader(http.StatusOK)
		return true, nil
	}

	fe, err := p.join(g, up, name, remote, d)
	if err != nil {
		return false, err
	}
	defer p.release(fe)
	select {
	case <-fe.ready:
	case <-ctx.Done():
		// Gone before an answer: close the connection rather than let
		// the server send an empty 200 for us.
		panic(http.ErrAbortHandler)
	}
	if fe.startErr != nil {
		return false, proxyClientError(up, remote, fe.startErr, unknown)
	}
	if conditionalRequest(r) {
		// Range, If-None-Match...: answered by ServeContent from the
		// store, once the whole blob is there.
		if err := fe.wait(ctx); err != nil {
			if ctx.Err() != nil {
				panic(http.ErrAbortHandler)
			}
			return false, proxyClientError(up, remote, err, unknown)
		}
		return false, nil
	}
	return true, fe.stream(g, w, r, d)
}

// upstreamWait lifts the request's I/O deadlines (WithIOTimeout) while
// the proxy waits on an upstream, which may take longer than a client is
// allowed to stall, and returns what sets the write deadline again. Past
// the read deadline the server would also cancel the request's context;
// a GET or HEAD has no body left to read, so without one the server
// reads only to notice the client hanging up.
func upstreamWait(g *Registry, w http.ResponseWriter) (rearm func()) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	return func() {
		if g.ioTimeout > 0 {
			rc.SetWriteDeadline(time.Now().Add(g.ioTimeout))
		}
	}
}

func conditionalRequest(r *http.Request) bool {
	for _, h := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// blobFetch is one download of a blob from an upstream into a temporary
// file, shared by every client asking for it meanwhile. Clients read the
// file (ReadAt, each at its own offset) as it grows; the downloader holds
// one reference and every client one, and the last to leave closes it.
type blobFetch struct {
	key string
	r   *os.File // the temporary file, opened for reading

	ready    chan struct{} // closed once the upstream answered, or failed to
	startErr error         // set before ready closes: the upstream's refusal

	mu      sync.Mutex
	size    int64 // the upstream's Content-Length; -1 unknown
	written int64
	done    bool
	err     error
	change  chan struct{} // closed and replaced whenever written or done change
	refs    int
}

// state is a snapshot of the download, and a channel closed at its next
// change.
func (fe *blobFetch) state() (written int64, done bool, err error, change <-chan struct{}) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	return fe.written, fe.done, fe.err, fe.change
}

func (fe *blobFetch) progress(n int64, done bool, err error) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	fe.written += n
	if done {
		fe.done, fe.err = true, err
	}
	close(fe.change)
	fe.change = make(chan struct{})
}

// wait blocks until the download ends, and is its result.
func (fe *blobFetch) wait(ctx context.Context) error {
	for {
		_, done, err, change := fe.state()
		if done {
			return err
		}
		select {
		case <-change:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// proxyBufSize is how much of the temporary file one read hands a client.
const proxyBufSize = 256 << 10

// stream sends the blob to the client as it downloads. The last byte is
// held back until the digest has been checked: a blob that fails the
// check aborts the connection, so no client takes it for whole.
func (fe *blobFetch) stream(g *Registry, w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	h := w.Header()
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Etag", `"`+string(d)+`"`)
	if fe.size >= 0 {
		h.Set("Content-Length", fmt.Sprint(fe.size))
	}
	w.WriteHeader(http.StatusOK)
	dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: g.ioTimeout}
	buf := make([]byte, proxyBufSize)
	var off int64
	for {
		written, done, err, change := fe.state()
		if done && err != nil {
			panic(http.ErrAbortHandler)
		}
		limit := written
		if !done {
			limit--
		}
		if off < limit {
			n, rerr := fe.r.ReadAt(buf[:min(int64(len(buf)), limit-off)], off)
			if n > 0 {
				if _, werr := dw.Write(buf[:n]); werr != nil {
					return nil // the client went away
				}
				off += int64(n)
			}
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				g.log.Error("registry: reading a blob being downloaded", "digest", d, "err", rerr)
				panic(http.ErrAbortHandler)
			}
			continue
		}
		if done {
			return nil
		}
		// Caught up with the download: what is buffered goes out now,
		// not when the buffer fills.
		if err := dw.rc.Flush(); err != nil {
			return nil
		}
		select {
		case <-change:
		case <-r.Context().Done():
			return nil
		}
	}
}

// join returns the download of blob d for repository name, starting it
// if none is in flight, with a reference for the caller to release.
func (p *Proxy) join(g *Registry, up *upstream, name, remote string, d digest.Digest) (*blobFetch, error) {
	key := name + "@" + string(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	if fe := p.fetches[key]; fe != nil {
		fe.mu.Lock()
		fe.refs++
		fe.mu.Unlock()
		return fe, nil
	}
	wf, err := g.store.tempFile()
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s: %w", d, err)
	}
	rf, err := os.Open(wf.Name())
	if err != nil {
		wf.Close()
		os.Remove(wf.Name())
		return nil, fmt.Errorf("fetch blob %s: %w", d, err)
	}
	fe := &blobFetch{
		key:    key,
		r:      rf,
		ready:  make(chan struct{}),
		size:   -1,
		change: make(chan struct{}),
		refs:   2, // the caller and the downloader
	}
	p.fetches[key] = fe
	go p.download(g, up, name, remote, d, fe, wf)
	return fe, nil
}

// release drops a reference; the last one closes the file.
func (p *Proxy) release(fe *blobFetch) {
	fe.mu.Lock()
	fe.refs--
	last := fe.refs == 0
	fe.mu.Unlock()
	if last {
		fe.r.Close()
	}
}

// download copies blob d from the upstream into wf, checks its digest,
// and only then renames it into blobs/ and links it into repository name.
// It runs apart from any client, so a client that hangs up does not
// break the download for the others (nor the cache for the next).
func (p *Proxy) download(g *Registry, up *upstream, name, remote string, d digest.Digest, fe *blobFetch, wf *os.File) {
	defer p.release(fe)
	tmp := wf.Name()
	err := p.copyBlob(g, up, remote, d, fe, wf)
	if cerr := wf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = installFetched(g, tmp, name, d)
	}
	if err != nil {
		os.Remove(tmp)
		if fe.startErr == nil { // a refusal up front is the client's answer, not news
			g.log.Warn("registry: pull-through of a blob failed; nothing was stored", "repository", name, "digest", d, "err", err)
		}
	}
	// Out of the map first, then done: a request that comes after sees
	// the blob in the store, or starts afresh after a failure.
	p.mu.Lock()
	delete(p.fetches, fe.key)
	p.mu.Unlock()
	fe.progress(0, true, err)
}

// installFetched renames a verified download into blobs/ and links it into
// repository name, in one critical section against the garbage collector,
// as an upload's commit does.
func installFetched(g *Registry, tmp, name string, d digest.Digest) error {
	target, err := g.store.blobPath(d)
	if err != nil {
		return err
	}
	unlock, err := g.store.LockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	if err := g.store.installBlob(tmp, target, d); err != nil {
		return err
	}
	return g.store.linkBlob(name, d)
}

// copyBlob GETs the blob and writes it to wf, hashing as it goes, and
// checks size and digest. A download that makes no progress for the I/O
// timeout is cut off.
func (p *Proxy) copyBlob(g *Registry, up *upstream, remote string, d digest.Digest, fe *blobFetch, wf *os.File) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idle := g.ioTimeout
	if idle <= 0 {
		idle = upstreamHeaderTimeout
	}
	watchdog := time.AfterFunc(upstreamHeaderTimeout+idle, cancel)
	defer watchdog.Stop()

	resp, err := up.do(ctx, http.MethodGet, remote, "/blobs/"+string(d), nil)
	if err != nil {
		fe.startErr = err
		close(fe.ready)
		return err
	}
	defer resp.Body.Close()
	if g.maxBlobSize > 0 && resp.ContentLength > g.maxBlobSize {
		err := &upstreamError{remote: up.cfg.Remote, bad: true, err: fmt.Errorf("blob %s is %d bytes, over the limit of %d", d, resp.ContentLength, g.maxBlobSize)}
		fe.startErr = err
		close(fe.ready)
		return err
	}
	fe.size = resp.ContentLength
	close(fe.ready)

	h := d.Algorithm().Hash()
	buf := make([]byte, proxyBufSize)
	var total int64
	for {
		watchdog.Reset(idle)
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := wf.Write(buf[:n]); err != nil {
				return fmt.Errorf("fetch blob %s: %w", d, err)
			}
			h.Write(buf[:n])
			total += int64(n)
			if g.maxBlobSize > 0 && total > g.maxBlobSize {
				return &upstreamError{remote: up.cfg.Remote, bad: true, err: fmt.Errorf("blob %s is over the limit of %d bytes", d, g.maxBlobSize)}
			}
			fe.progress(int64(n), false, nil)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				rerr = fmt.Errorf("no data for %s", idle)
			}
			return &upstreamError{remote: up.cfg.Remote, err: fmt.Errorf("reading blob %s: %w", d, rerr)}
		}
	}
	if fe.size >= 0 && total != fe.size {
		return &upstreamError{remote: up.cfg.Remote, bad: true, err: fmt.Errorf("blob %s: %d bytes sent, Content-Length said %d", d, total, fe.size)}
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return &upstreamError{remote: up.cfg.Remote, bad: true, err: fmt.Errorf("blob %s: the bytes sent have digest %s", d, got)}
	}
	if err := wf.Chmod(0o444); err != nil {
		return fmt.Errorf("fetch blob %s: %w", d, err)
	}
	if err := wf.Sync(); err != nil {
		return fmt.Errorf("fetch blob %s: %w", d, err)
	}
	return nil
}
