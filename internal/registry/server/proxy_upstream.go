package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Timeouts for talking to an upstream. A blob body has no overall limit;
// blobFetch cuts a download that makes no progress for the Registry's I/O
// timeout instead.
const (
	upstreamDialTimeout   = 30 * time.Second
	upstreamHeaderTimeout = 60 * time.Second
	// upstreamCallTimeout bounds one manifest or tag request, start to end.
	upstreamCallTimeout = 2 * time.Minute
	// upstreamAuthLifetime is how long an authenticated transport is reused when
	// the upstream does not say how long its token lives (the token spec's
	// default is 60 s), and for upstreams that take Basic or no auth.
	upstreamAuthLifetime = 60 * time.Second
	// maxUpstreamError caps how much of an upstream's error body is read.
	maxUpstreamError = 64 << 10
)

// manifestAccept is every manifest type the registry stores, so that a tag
// resolves to the same bytes whoever asks (see the package's proxy notes).
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifestList, MediaTypeDockerManifest,
}, ", ")

// upstream is one remote registry and how to reach it.
type upstream struct {
	cfg    ProxyConfig
	scheme string // http or https, as the remote says
	base   string // scheme://host
	reg    name.Registry
	auth   authn.Authenticator
	rt     http.RoundTripper // TLS settings, no auth
	hub    bool              // Docker Hub: one-component names get library/

	authFlight singleflight.Group
	mu         sync.Mutex
	authed     map[string]authedTransport // by remote repository name
}

type authedTransport struct {
	rt      http.RoundTripper
	expires time.Time
}

func newUpstream(c ProxyConfig) (*upstream, error) {
	c, u, err := checkProxyConfig(c)
	if err != nil {
		return nil, err
	}
	host := u.Host
	hub := false
	switch host {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		// docker.io serves no API; registry-1.docker.io is where it is.
		host, hub = "registry-1.docker.io", true
	}
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("proxy upstream %s: %v: %w", c.Remote, err, errdefs.ErrInvalidArgument)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: upstreamDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = upstreamHeaderTimeout
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.Insecure} //nolint:gosec // the configuration asked for it
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("proxy upstream %s: read CA file: %w", c.Remote, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("proxy upstream %s: CA file %s holds no PEM certificate: %w", c.Remote, c.CAFile, errdefs.ErrInvalidArgument)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	auth := authn.Anonymous
	if c.Username != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password})
	}
	return &upstream{
		cfg:    c,
		scheme: u.Scheme,
		base:   u.Scheme + "://" + host,
		reg:    reg,
		auth:   auth,
		rt:     transport.NewUserAgent(t, "berth-registry-proxy"),
		hub:    hub,
		authed: map[string]authedTransport{},
	}, nil
}

// transport is an authenticated transport for pulling repository repo:
// the upstream is pinged for its challenge, and for Bearer a token with
// pull scope is fetched. It is kept until the token is due to expire.
// go-containerregistry does the protocol (challenge parsing, token
// exchange, Basic), which keeps this file free of auth details.
func (u *upstream) transport(ctx context.Context, repo string) (http.RoundTripper, error) {
	u.mu.Lock()
	if a, ok := u.authed[repo]; ok && time.Now().Before(a.expires) {
		u.mu.Unlock()
		return a.rt, nil
	}
	u.mu.Unlock()
	v, err, _ := u.authFlight.Do(repo, func() (any, error) {
		// Shared by every request waiting for it: the first one hanging
		// up must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upstreamCallTimeout)
		defer cancel()
		// Ping tries https and then http for a registry on loopback or a
		// private network, whatever the remote says; pinned to the
		// remote's scheme, both tries go where the configuration says.
		pr, err := transport.Ping(ctx, u.reg, pinScheme{scheme: u.scheme, inner: u.rt})
		if err != nil {
			return nil, err
		}
		pr.Insecure = u.scheme == "http"
		rt, life := http.RoundTripper(u.rt), upstreamAuthLifetime
		switch strings.ToLower(pr.Scheme) {
		case "":
			// No auth asked for.
		case "bearer":
			tok, err := transport.Exchange(ctx, u.reg, u.auth, u.rt, []string{"repository:" + repo + ":pull"}, pr)
			if err != nil {
				return nil, err
			}
			if tok.Token == "" {
				tok.Token = tok.AccessToken
			}
			if rt, err = transport.FromToken(u.reg, u.auth, u.rt, pr, tok); err != nil {
				return nil, err
			}
			if tok.ExpiresIn > 0 {
				// Renewed a little early, so no request carries a token
				// that expires on the way.
				ttl := time.Duration(tok.ExpiresIn) * time.Second
				life = max(ttl*9/10-time.Second, ttl/2)
			}
		default:
			if rt, err = transport.FromToken(u.reg, u.auth, u.rt, pr, nil); err != nil {
				return nil, err
			}
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		now := time.Now()
		for k, a := range u.authed {
			if now.After(a.expires) {
				delete(u.authed, k)
			}
		}
		u.authed[repo] = authedTransport{rt: rt, expires: now.Add(life)}
		return rt, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(http.RoundTripper), nil
}

// pinScheme sends every request with the given scheme.
type pinScheme struct {
	scheme string
	inner  http.RoundTripper
}

func (p pinScheme) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme = p.scheme
	return p.inner.RoundTrip(r)
}

// forget drops repo's transport after the upstream refused it, so the
// next request authenticates afresh.
func (u *upstream) forget(repo string) {
	u.mu.Lock()
	delete(u.authed, repo)
	u.mu.Unlock()
}

// do sends one request for repository repo; path follows /v2/<repo>. Any
// answer but 2xx is returned as an *upstreamError, with its body read.
func (u *upstream) do(ctx context.Context, method, repo, path string, hdr http.Header) (*http.Response, error) {
	rt, err := u.transport(ctx, repo)
	if err != nil {
		return nil, &upstreamError{remote: u.cfg.Remote, err: err}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.base+"/v2/"+repo+path, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, &upstreamError{remote: u.cfg.Remote, err: err}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		u.forget(repo)
	}
	ue := &upstreamError{remote: u.cfg.Remote, status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if method != http.MethodHead {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamError))
		var eb errorBody
		if json.Unmarshal(body, &eb) == nil {
			ue.errors = eb.Errors
		}
	}
	return nil, ue
}

// getJSON GETs a small JSON document (a tag list) into v and returns its
// Link header.
func (u *upstream) getJSON(ctx context.Context, repo, path string, v any) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamCallTimeout)
	defer cancel()
	resp, err := u.do(ctx, http.MethodGet, repo, path, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return "", &upstreamError{remote: u.cfg.Remote, err: fmt.Errorf("reading its answer to GET %s: %w", path, err)}
	}
	return resp.Header.Get("Link"), nil
}

// upstreamError is an upstream that could not be reached (err) or
// answered with a status other than 2xx (status, with the spec errors it
// sent, if any).
type upstreamError struct {
	remote string
	err    error
	// bad: it answered, with content that is not what was asked for (a
	// digest that does not match, a manifest that is not one).
	bad        bool
	status     int
	errors     []errorEntry
	retryAfter string
}

func (e *upstreamError) Error() string {
	if e.err != nil {
		return "upstream " + e.remote + ": " + e.err.Error()
	}
	msg := fmt.Sprintf("upstream %s answered %d %s", e.remote, e.status, http.StatusText(e.status))
	if len(e.errors) > 0 {
		msg += ": " + string(e.errors[0].Code)
		if e.errors[0].Message != "" {
			msg += " " + e.errors[0].Message
		}
	}
	return msg
}

func (e *upstreamError) Unwrap() error { return e.err }

// unavailable reports whether err means the upstream cannot answer now
// (unreachable, timed out, 5xx, 408, 429): the cases where a cached copy
// is served instead. A refusal or a 404 is an answer, and is not.
func upstreamUnavailable(err error) bool {
	var ue *upstreamError
	if !errors.As(err, &ue) {
		return false
	}
	if ue.bad {
		return true
	}
	if ue.err != nil {
		// Ping's and the token exchange's answers come back as
		// *transport.Error; judge them by their status like ours.
		var te *transport.Error
		if errors.As(ue.err, &te) {
			return te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests || te.StatusCode == http.StatusRequestTimeout
		}
		return true
	}
	return ue.status >= 500 || ue.status == http.StatusTooManyRequests || ue.status == http.StatusRequestTimeout
}

// notFound reports whether the upstream answered 404.
func upstreamNotFound(err error) bool {
	var ue *upstreamError
	return errors.As(err, &ue) && ue.status == http.StatusNotFound
}

// statusOf is the HTTP status behind err: the upstream's answer, the
// ping's or token server's, or 0 when nothing answered.
func upstreamStatus(ue *upstreamError) int {
	if ue.status != 0 {
		return ue.status
	}
	var te *transport.Error
	if errors.As(ue.err, &te) {
		return te.StatusCode
	}
	return 0
}

// clientError turns a failure to fetch repo from the upstream into what
// the client is answered: notFoundErr for a 404 (the upstream's own
// NAME_UNKNOWN is kept), DENIED for a refusal, 429 passed on, 503 for an
// upstream that cannot be reached, 502 for anything else it answered.
func proxyClientError(u *upstream, repo string, err error, notFoundErr *Error) error {
	var ue *upstreamError
	if !errors.As(err, &ue) {
		return err
	}
	status := upstreamStatus(ue)
	switch {
	case ue.bad:
		return &Error{Code: CodeUnknown, Status: http.StatusBadGateway, Message: "pull-through cache: " + ue.Error()}
	case status == http.StatusNotFound:
		if len(ue.errors) > 0 && ue.errors[0].Code == CodeNameUnknown {
			return &Error{Code: CodeNameUnknown, Message: "repository name not known to registry", Detail: notFoundErr.Detail}
		}
		return notFoundErr
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &Error{Code: CodeDenied, Message: fmt.Sprintf("upstream %s refused access to %s (%d): check the proxy's credentials for it, or whether the repository exists", u.cfg.Remote, repo, status)}
	case status == http.StatusTooManyRequests:
		e := &Error{Code: CodeTooManyRequests, Message: ue.Error()}
		if ue.retryAfter != "" {
			e.Header = http.Header{"Retry-After": {ue.retryAfter}}
		}
		return e
	case status == 0 || status >= 500 || status == http.StatusRequestTimeout:
		return &Error{Code: codeUnavailable, Status: http.StatusServiceUnavailable, Message: "pull-through cache: " + ue.Error()}
	}
	return &Error{Code: CodeUnknown, Status: http.StatusBadGateway, Message: "pull-through cache: " + ue.Error()}
}

// codeUnavailable is distribution's code for a registry that cannot serve
// now (503); the spec has none, and clients treat any 5xx alike.
const codeUnavailable ErrorCode = "UNAVAILABLE"
