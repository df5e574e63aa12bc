package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/reference"
)

// Push statuses, worded as Docker's.
const (
	StatusPreparing   = "Preparing"
	StatusPushing     = "Pushing"
	StatusPushed      = "Pushed"
	StatusLayerExists = "Layer already exists"
	StatusMounted     = "Mounted from" // followed by " <repository>"
)

// maxMountSources bounds the other repositories whose pull scope a push
// asks for, so a host with many images does not send a huge token request.
const maxMountSources = 8

// Push uploads the local image ref names ("localhost:5000/app:1"; a tag,
// not a digest) to its registry: the blobs the registry lacks (asked with
// HEAD first), mounted from another repository of the same registry when
// a local image came from there, else uploaded in one request or in
// chunks (WithChunkSize); then the manifest, byte for byte as stored, so
// its digest is the one berth shows. It returns that digest and the
// manifest's size, and records the repository digest on the image.
func Push(ctx context.Context, svc *image.Service, ref string, opts ...Option) (d digest.Digest, size int64, err error) {
	o := newOptions(opts)
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		_, err = image.ParseRef(ref) // its message explains what is wrong
		return "", 0, fmt.Errorf("push: %w", err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("push %s: %w", reference.FamiliarString(named), err)
		}
	}()
	if _, ok := named.(reference.Digested); ok {
		return "", 0, fmt.Errorf("cannot push a digest reference; tag the image and push the tag: %w", errdefs.ErrInvalidArgument)
	}
	tagged := reference.TagNameOnly(named).(reference.NamedTagged)
	img, err := svc.Get(tagged.String())
	if errdefs.IsNotFound(err) {
		return "", 0, fmt.Errorf("An image does not exist locally with the tag: %s: %w", reference.FamiliarName(tagged), errdefs.ErrNotFound)
	}
	if err != nil {
		return "", 0, err
	}
	raw, err := readManifest(svc, img)
	if err != nil {
		return "", 0, err
	}
	domain, path := reference.Domain(tagged), reference.Path(tagged)
	sources, err := mountSources(svc, domain, path)
	if err != nil {
		return "", 0, err
	}
	var scopes []string
	for _, repo := range uniqueRepos(sources) {
		scopes = append(scopes, "repository:"+repo+":pull")
	}
	c, err := o.dial(ctx, domain, path, false, transport.PushScope, scopes...)
	if err != nil {
		return "", 0, err
	}

	blobs := append([]ocispec.Descriptor{{Digest: img.ID, Size: -1}}, img.Layers...)
	for _, l := range img.Layers {
		o.event(Event{Status: StatusPreparing, ID: short(l.Digest)})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.concurrency)
	seen := map[digest.Digest]bool{}
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		if b.Size < 0 {
			n, err := svc.Content.Stat(b.Digest)
			if err != nil {
				return "", 0, fmt.Errorf("config %s is not in the content store: %w", b.Digest, err)
			}
			b.Size = n
		}
		// Docker shows no line for the config blob; neither do we.
		quiet := b.Digest == img.ID
		g.Go(func() error { return c.pushBlob(gctx, svc, b, sources[b.Digest], quiet) })
	}
	if err := g.Wait(); err != nil {
		return "", 0, err
	}

	d = img.ManifestDigest
	if err := c.putManifest(ctx, tagged.Tag(), raw, img.ManifestMediaType, d); err != nil {
		return "", 0, err
	}
	withDigest, err := reference.WithDigest(reference.TrimNamed(tagged), d)
	if err == nil {
		rec := *img
		rec.RepoTags, rec.RepoDigests = nil, []string{withDigest.String()}
		err = svc.Commit(&rec)
	}
	if err != nil {
		return "", 0, fmt.Errorf("pushed, but recording the repository digest failed: %w", err)
	}
	return d, int64(len(raw)), nil
}

// readManifest reads the image's stored manifest and checks it still has
// the digest the record names.
func readManifest(svc *image.Service, img *image.Image) ([]byte, error) {
	f, err := svc.Content.Open(img.ManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("manifest %s of image %s: %w", img.ManifestDigest, img.ID, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxManifestSize || digest.FromBytes(raw) != img.ManifestDigest {
		return nil, fmt.Errorf("manifest %s of image %s is damaged in the content store: %w", img.ManifestDigest, img.ID, errdefs.ErrInvalidArgument)
	}
	return raw, nil
}

// mountSources maps each blob of local images that came from (or were
// pushed to) another repository of the same registry to that repository,
// which a cross-repository mount can take it from.
func mountSources(svc *image.Service, domain, path string) (map[digest.Digest]string, error) {
	imgs, err := svc.List()
	if err != nil {
		return nil, err
	}
	sources := map[digest.Digest]string{}
	for _, img := range imgs {
		for _, r := range append(append([]string{}, img.RepoDigests...), img.RepoTags...) {
			n, err := reference.ParseNormalizedNamed(r)
			if err != nil || reference.Domain(n) != domain || reference.Path(n) == path {
				continue
			}
			for _, d := range append([]digest.Digest{img.ID}, imageBlobDigests(img)...) {
				if _, ok := sources[d]; !ok {
					sources[d] = reference.Path(n)
				}
			}
		}
	}
	// Keep the token request small: only the first few repositories.
	allowed := map[string]bool{}
	for _, repo := range uniqueRepos(sources) {
		allowed[repo] = true
	}
	for d, repo := range sources {
		if !allowed[repo] {
			delete(sources, d)
		}
	}
	return sources, nil
}

func imageBlobDigests(img *image.Image) []digest.Digest {
	ds := make([]digest.Digest, len(img.Layers))
	for i, l := range img.Layers {
		ds[i] = l.Digest
	}
	return ds
}

// uniqueRepos lists the repositories of sources, at most maxMountSources,
// in a stable order.
func uniqueRepos(sources map[digest.Digest]string) []string {
	set := map[string]bool{}
	for _, r := range sources {
		set[r] = true
	}
	var repos []string
	for r := range set {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	if len(repos) > maxMountSources {
		repos = repos[:maxMountSources]
	}
	return repos
}

// pushBlob gets one blob into the repository: nothing if it is there,
// a mount if from names a repository that has it, else an upload. A
// failed upload is started over from a new session, as many times as the
// retry policy allows.
func (c *client) pushBlob(ctx context.Context, svc *image.Service, desc ocispec.Descriptor, from string, quiet bool) error {
	id := short(desc.Digest)
	event := func(status string) {
		if !quiet {
			c.o.event(Event{Status: status, ID: id})
		}
	}
	exists, err := c.blobExists(ctx, desc)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if exists {
		event(StatusLayerExists)
		return nil
	}
	for attempt := 0; ; attempt++ {
		mounted, retryAfter, err := c.uploadOnce(ctx, svc, desc, from, quiet)
		if err == nil {
			if mounted {
				event(StatusMounted + " " + from)
			} else {
				event(StatusPushed)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt+1 >= c.o.retry.attempts || !(retryable(err) || brokenUpload(err)) {
			return fmt.Errorf("blob %s: %w", desc.Digest, err)
		}
		if werr := c.o.retry.wait(ctx, attempt, retryAfter); werr != nil {
			return werr
		}
	}
}

// brokenUpload reports a request that failed on the way rather than
// being answered: the connection went, or go-containerregistry's bearer
// transport sent a request again after a token refresh with its body
// already read. A fresh session has a fair chance where a GET would not
// (its body is gone, so send does not retry it), but a certificate the
// client refuses will be refused again.
func brokenUpload(err error) bool {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return false
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return !errors.As(err, &unknownCA) && !errors.As(err, &hostname) &&
		!errors.As(err, &invalid) && !errors.As(err, &verify)
}

// blobExists asks the registry with HEAD whether it has the blob.
func (c *client) blobExists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		return http.NewRequest(http.MethodHead, c.url("blobs", desc.Digest.String()), nil)
	}, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// uploadOnce is one attempt at a blob: open a session (or mount), send
// the bytes, close the session with the digest.
func (c *client) uploadOnce(ctx context.Context, svc *image.Service, desc ocispec.Descriptor, from string, quiet bool) (mounted bool, retryAfter time.Duration, err error) {
	start := c.base + "/v2/" + c.repo.RepositoryStr() + "/blobs/uploads/"
	if from != "" {
		start += "?" + url.Values{"mount": {desc.Digest.String()}, "from": {from}}.Encode()
	}
	resp, retryAfter, err := c.send(ctx, func() (*http.Request, error) {
		return http.NewRequest(http.MethodPost, start, nil)
	}, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return false, retryAfter, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated && from != "" {
		return true, 0, nil
	}
	loc, err := location(resp)
	if err != nil {
		return false, 0, err
	}
	f, err := svc.Content.Open(desc.Digest)
	if err != nil {
		return false, 0, fmt.Errorf("not in the content store: %w", err)
	}
	defer f.Close()
	body := &pushProgress{r: f, o: c.o, id: short(desc.Digest), total: desc.Size}
	if quiet {
		body.o = &options{}
	}

	if c.o.chunkSize > 0 {
		for off := int64(0); off < desc.Size; {
			n := min(c.o.chunkSize, desc.Size-off)
			chunk := io.LimitReader(body, n)
			resp, retryAfter, err := c.send(ctx, func() (*http.Request, error) {
				req, err := http.NewRequest(http.MethodPatch, loc.String(), chunk)
				if err == nil {
					req.ContentLength = n
					req.Header.Set("Content-Type", "application/octet-stream")
					req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
				}
				return req, err
			}, http.StatusAccepted, http.StatusNoContent)
			if err != nil {
				return false, retryAfter, err
			}
			resp.Body.Close()
			if loc, err = location(resp); err != nil {
				return false, 0, err
			}
			off += n
		}
		body = nil
	}

	q := loc.Query()
	q.Set("digest", desc.Digest.String())
	loc.RawQuery = q.Encode()
	resp, retryAfter, err = c.send(ctx, func() (*http.Request, error) {
		var r io.Reader = http.NoBody
		n := int64(0)
		if body != nil {
			r, n = body, desc.Size
		}
		req, err := http.NewRequest(http.MethodPut, loc.String(), r)
		if err == nil {
			req.ContentLength = n
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		return req, err
	}, http.StatusCreated, http.StatusNoContent)
	if err != nil {
		return false, retryAfter, err
	}
	resp.Body.Close()
	return false, 0, nil
}

// location is an upload session's URL from a response's Location header,
// resolved against the request (registries may answer with a path).
func location(resp *http.Response) (*url.URL, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return nil, fmt.Errorf("the registry opened an upload without a Location header: %w", errdefs.ErrInvalidArgument)
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return nil, fmt.Errorf("the registry's upload Location %q: %v: %w", l, err, errdefs.ErrInvalidArgument)
	}
	return u, nil
}

// putManifest uploads the manifest under tag and checks the registry
// stored it under the digest berth has.
func (c *client) putManifest(ctx context.Context, tag string, raw []byte, mediaType string, want digest.Digest) error {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPut, c.url("manifests", tag), bytes.NewReader(raw))
		if err == nil {
			req.ContentLength = int64(len(raw))
			req.Header.Set("Content-Type", mediaType)
		}
		return req, err
	}, http.StatusCreated, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != want.String() {
		return fmt.Errorf("the registry stored the manifest as %s, not %s: %w", got, want, errdefs.ErrInvalidArgument)
	}
	return nil
}

// pushProgress reports a blob's upload as it is read.
type pushProgress struct {
	r     io.Reader
	o     *options
	id    string
	total int64

	mu   sync.Mutex
	n    int64
	last int64
}

func (p *pushProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 && p.o.progress != nil {
		p.mu.Lock()
		p.n += int64(n)
		if p.n-p.last >= 512<<10 || p.n == p.total {
			p.last = p.n
			p.o.event(Event{Status: StatusPushing, ID: p.id, Current: p.n, Total: p.total})
		}
		p.mu.Unlock()
	}
	return n, err
}
