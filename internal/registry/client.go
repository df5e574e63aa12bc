package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/version"
)

// Option configures Pull, Push and Login.
type Option func(*options)

type options struct {
	insecure    bool
	platform    ocispec.Platform
	progress    func(Event)
	keychain    authn.Keychain
	concurrency int
	hosts       *Hosts
	retry       backoff
	chunkSize   int64
}

// WithInsecure talks plain HTTP (or HTTPS without verifying the
// certificate) to the registry, as Docker's --insecure-registry does.
// Registries on 127.0.0.0/8, ::1 and localhost are insecure without it.
func WithInsecure() Option { return func(c *options) { c.insecure = true } }

// WithPlatform picks the image for os/arch[/variant] from a manifest list
// or OCI index; the default is linux and the host's architecture. An empty
// variant matches any.
func WithPlatform(os, arch, variant string) Option {
	return func(c *options) {
		c.platform = ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
	}
}

// WithProgress calls fn as the transfer advances. fn is called from
// several goroutines, one at a time per layer; it must not block for long.
func WithProgress(fn func(Event)) Option { return func(c *options) { c.progress = fn } }

// WithKeychain resolves credentials (default: authn.DefaultKeychain, the
// Docker config file's auths and credential helpers).
func WithKeychain(k authn.Keychain) Option { return func(c *options) { c.keychain = k } }

// WithConcurrency sets how many layers transfer at once (default 4).
func WithConcurrency(n int) Option {
	return func(c *options) {
		if n > 0 {
			c.concurrency = n
		}
	}
}

// WithHosts applies berth's registry settings: insecure registries,
// Docker Hub mirrors, certificate directories.
func WithHosts(h *Hosts) Option { return func(c *options) { c.hosts = h } }

// WithRetry sets how often a transient failure (connection refused or
// reset, 408, 429, 5xx) is retried and the first wait, which doubles
// each time (default 4 attempts, 500 ms).
func WithRetry(attempts int, first time.Duration) Option {
	return func(c *options) { c.retry = backoff{attempts: attempts, first: first} }
}

// WithChunkSize uploads blobs in PATCH requests of at most n bytes each
// (the chunked upload of the distribution spec); 0, the default, sends
// each blob in one request.
func WithChunkSize(n int64) Option { return func(c *options) { c.chunkSize = n } }

func newOptions(opts []Option) *options {
	o := &options{
		platform:    ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		keychain:    authn.DefaultKeychain,
		concurrency: defaultConcurrency,
		retry:       backoff{attempts: 4, first: 500 * time.Millisecond},
	}
	for _, fn := range opts {
		fn(o)
	}
	return o
}

func (o *options) event(e Event) {
	if o.progress != nil {
		o.progress(e)
	}
}

// backoff is a retry policy: attempts in all, waiting first, then twice
// as long each time, with jitter, never more than maxWait.
type backoff struct {
	attempts int
	first    time.Duration
}

const maxWait = 10 * time.Second

func (b backoff) wait(ctx context.Context, attempt int, retryAfter time.Duration) error {
	d := b.first << attempt
	if d > maxWait || d <= 0 {
		d = maxWait
	}
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	if retryAfter > d {
		d = min(retryAfter, maxWait)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// client talks to one repository of one registry, with authentication
// set up for the actions asked for.
type client struct {
	reg  name.Registry
	repo name.Repository
	// base is "https://host[:port]"; go-containerregistry's scheme
	// transport turns it into http:// when the registry only speaks that.
	base string
	hc   *http.Client
	o    *options
}

// dial pings registry (host[:port]), authenticates for actions ("pull",
// "push,pull") on repoPath, plus any extra scopes (other repositories'
// "repository:name:pull", for cross-repository mounts), with the
// keychain's credentials, and returns a client for repoPath. plain marks
// a registry (a mirror given as http://) as insecure.
func (o *options) dial(ctx context.Context, registry, repoPath string, plain bool, actions string, extraScopes ...string) (*client, error) {
	insecure := plain || o.insecure || o.hosts.IsInsecure(registry)
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(registry, nopts...)
	if err != nil {
		return nil, fmt.Errorf("invalid registry %q: %v: %w", registry, err, errdefs.ErrInvalidArgument)
	}
	// An empty repoPath is the registry itself (login): no repository
	// scope, credentials looked up for the registry.
	var (
		repo   name.Repository
		res    authn.Resource = reg
		scopes []string
	)
	if repoPath != "" {
		if repo, err = name.NewRepository(reg.Name()+"/"+repoPath, nopts...); err != nil {
			return nil, fmt.Errorf("invalid repository %q: %v: %w", repoPath, err, errdefs.ErrInvalidArgument)
		}
		res, scopes = repo, []string{repo.Scope(actions)}
	}
	scopes = append(scopes, extraScopes...)
	base, err := o.hosts.transport(reg.RegistryStr(), insecure)
	if err != nil {
		return nil, err
	}
	auth, err := o.keychain.Resolve(res)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", reg.RegistryStr(), err)
	}
	ua := transport.NewUserAgent(base, "berth/"+version.Version)
	var rt http.RoundTripper
	for attempt := 0; ; attempt++ {
		rt, err = transport.NewWithContext(ctx, reg, auth, ua, scopes)
		if err == nil {
			break
		}
		err = classify(err)
		if attempt+1 >= o.retry.attempts || !retryable(err) {
			return nil, fmt.Errorf("registry %s: %w", reg.RegistryStr(), err)
		}
		if werr := o.retry.wait(ctx, attempt, 0); werr != nil {
			return nil, werr
		}
	}
	return &client{
		reg:  reg,
		repo: repo,
		base: "https://" + reg.RegistryStr(),
		hc:   &http.Client{Transport: rt},
		o:    o,
	}, nil
}

func (c *client) url(kind, ref string) string {
	return c.base + "/v2/" + c.repo.RepositoryStr() + "/" + kind + "/" + ref
}

// do sends a request built by mk, retrying transient failures with
// backoff. A response whose status is not in ok becomes an *HTTPError.
func (c *client) do(ctx context.Context, mk func() (*http.Request, error), ok ...int) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, retryAfter, err := c.send(ctx, mk, ok...)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt+1 >= c.o.retry.attempts || !retryable(err) {
			return nil, err
		}
		if werr := c.o.retry.wait(ctx, attempt, retryAfter); werr != nil {
			return nil, werr
		}
	}
}

// send is one attempt of do; it also returns the Retry-After the
// registry asked for.
func (c *client) send(ctx context.Context, mk func() (*http.Request, error), ok ...int) (*http.Response, time.Duration, error) {
	req, err := mk()
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.hc.Do(req.WithContext(ctx))
	if err != nil {
		return nil, 0, err
	}
	if containsInt(ok, resp.StatusCode) {
		return resp, 0, nil
	}
	return nil, parseRetryAfter(resp.Header.Get("Retry-After")), responseError(req, resp)
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func parseRetryAfter(s string) time.Duration {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil {
		return time.Until(t)
	}
	return 0
}

// HTTPError is a registry's answer that was not what was asked for, with
// the registry's own error code and message when it sent them.
type HTTPError struct {
	Method, URL string
	StatusCode  int
	Code        string // e.g. MANIFEST_UNKNOWN, DENIED
	Message     string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("%s %s: %s", e.Method, e.URL, http.StatusText(e.StatusCode))
	if e.StatusCode != 0 {
		s = fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	}
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		s += " (log in with berth login, or check the repository's name)"
	case http.StatusForbidden:
		s += " (the credentials in use are not allowed this; check berth login)"
	case http.StatusTooManyRequests:
		s += " (rate limited; try again later, log in, or configure a registry mirror)"
	}
	return s
}

// Unwrap gives the error berth's class, for exit codes and retries.
func (e *HTTPError) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusNotFound:
		return errdefs.ErrNotFound
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		return errdefs.ErrFailedPrecondition
	case e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500:
		return errdefs.ErrUnavailable
	}
	return errdefs.ErrInvalidArgument
}

// responseError reads the registry's error document (bounded) and closes
// the body.
func responseError(req *http.Request, resp *http.Response) error {
	defer resp.Body.Close()
	e := &HTTPError{Method: req.Method, URL: redact(req.URL.String()), StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var doc struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &doc) == nil && len(doc.Errors) > 0 {
		e.Code, e.Message = doc.Errors[0].Code, doc.Errors[0].Message
	} else if s := strings.TrimSpace(string(b)); s != "" && len(s) < 200 && !strings.Contains(s, "<") {
		e.Message = s
	}
	return e
}

// redact drops a URL's query, where upload sessions carry state and
// redirects to storage carry signatures.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// retryable reports whether err may go away if the request is repeated.
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode == http.StatusRequestTimeout || he.StatusCode == http.StatusTooManyRequests ||
			he.StatusCode == http.StatusInternalServerError || he.StatusCode == http.StatusBadGateway ||
			he.StatusCode == http.StatusServiceUnavailable || he.StatusCode == http.StatusGatewayTimeout
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.Temporary()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errdefs.ErrUnavailable)
}

// classify gives go-containerregistry's errors (from the ping and token
// exchange) berth's classes, keeping the message.
func classify(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	switch terr.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%v (check the user name and password, or log in with berth login): %w", err, errdefs.ErrFailedPrecondition)
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return fmt.Errorf("%v: %w", err, errdefs.ErrUnavailable)
	}
	return err
}

// Manifest media types berth asks for, best first.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest, mediaTypeDockerManifest,
}, ", ")

// getManifest fetches a manifest or index by tag or digest, refusing one
// larger than MaxManifestSize before reading it whole.
func (c *client) getManifest(ctx context.Context, ref string) ([]byte, string, error) {
	resp, err := c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, c.url("manifests", ref), nil)
		if err == nil {
			req.Header.Set("Accept", manifestAccept)
		}
		return req, err
	}, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifestSize {
		return nil, "", tooLarge(resp.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read manifest: %w", err)
	}
	if len(b) > MaxManifestSize {
		return nil, "", tooLarge(-1)
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return b, strings.TrimSpace(mt), nil
}

func tooLarge(n int64) error {
	if n < 0 {
		return fmt.Errorf("manifest is larger than %d bytes: refusing: %w", MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("manifest is %d bytes, larger than %d: refusing: %w", n, MaxManifestSize, errdefs.ErrInvalidArgument)
}

// maxResumes bounds how often one blob download is resumed after the
// connection broke having delivered something; attempts that deliver
// nothing count against the retry policy instead.
const maxResumes = 20

// fetchBlob writes blob desc's bytes to w in order, each exactly once.
// A connection that breaks mid-blob is resumed where it stopped with a
// Range request (or, if the registry ignores Range, by skipping what w
// already has). It returns the number of bytes written; the caller
// verifies them against desc.
func (c *client) fetchBlob(ctx context.Context, desc ocispec.Descriptor, w io.Writer) (int64, error) {
	var got int64
	fails, resumes := 0, 0
	for {
		resp, err := c.do(ctx, func() (*http.Request, error) {
			req, err := http.NewRequest(http.MethodGet, c.url("blobs", desc.Digest.String()), nil)
			if err == nil && got > 0 {
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", got))
			}
			return req, err
		}, http.StatusOK, http.StatusPartialContent)
		if err != nil {
			return got, err
		}
		before := got
		err = c.readBlob(resp, desc, got, w, &got)
		resp.Body.Close()
		if err == nil {
			return got, nil
		}
		if ctx.Err() != nil {
			return got, ctx.Err()
		}
		if !retryable(err) {
			return got, err
		}
		if got > before {
			resumes++
			fails = 0
		} else {
			fails++
		}
		if resumes > maxResumes || fails >= c.o.retry.attempts {
			return got, fmt.Errorf("download broke off after %d of %d bytes, %d times: %w", got, desc.Size, resumes+fails, err)
		}
		if got == before {
			if werr := c.o.retry.wait(ctx, fails-1, 0); werr != nil {
				return got, werr
			}
		}
	}
}

// readBlob copies one response's body to w from offset have on, counting
// into *got. A body that ends before desc.Size is io.ErrUnexpectedEOF,
// which the caller resumes.
func (c *client) readBlob(resp *http.Response, desc ocispec.Descriptor, have int64, w io.Writer, got *int64) error {
	body := io.Reader(resp.Body)
	if have > 0 {
		switch resp.StatusCode {
		case http.StatusPartialContent:
			var start int64
			if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != have {
				return fmt.Errorf("the registry answered a request for bytes %d- with range %q: %w", have, resp.Header.Get("Content-Range"), errdefs.ErrInvalidArgument)
			}
		case http.StatusOK: // Range ignored: skip what we have
			if _, err := io.CopyN(io.Discard, body, have); err != nil {
				return err
			}
		}
	}
	// One byte past the promised size is read so a registry sending too
	// much is caught by the size check, not silently cut.
	n, err := io.Copy(w, io.LimitReader(body, desc.Size-have+1))
	*got += n
	if err != nil {
		if errdefs.IsInvalidArgument(err) {
			return err // w refused the bytes: not the network's fault
		}
		return fmt.Errorf("read blob: %w", err)
	}
	if *got < desc.Size {
		return fmt.Errorf("the registry ended the blob after %d of %d bytes: %w", *got, desc.Size, io.ErrUnexpectedEOF)
	}
	return nil
}
