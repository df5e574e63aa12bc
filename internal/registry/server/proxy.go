package server

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Pull-through cache (issue 6): a Registry with a Proxy mirrors one or
// more upstream registries. A repository whose name starts with an
// upstream's prefix is served from that upstream, through the local store:
//
//	client ── GET /v2/hub/busybox/manifests/latest ──▶ Registry
//	                          route: prefix "hub" ─▶ Docker Hub upstream,
//	                               remote name "library/busybox"
//	tag cached and younger than ttl ─────────────▶ served from the store
//	else HEAD upstream; same digest as cached ────▶ tag refreshed, served
//	     changed or not cached: GET, verify, store ─▶ served
//	     upstream down, 5xx, 408, 429, cached ───────▶ served (warning logged)
//	     upstream down, nothing cached ──────────────▶ 503 UNAVAILABLE / 429
//
// Manifests by digest and blobs never change, so once cached they are
// served without asking upstream. A blob not yet cached is downloaded
// once however many clients ask for it at the same time: the download
// writes a temporary file that every waiting client streams from as it
// grows, and the blob is renamed into blobs/ only after its digest has
// been checked. Until then each client is held one byte short of the end,
// so a blob that fails the check breaks every stream (the connection is
// aborted) and leaves nothing in the store. A Range or conditional request
// for a blob not yet cached waits for the whole blob, then is answered from
// the store.
//
// Decisions:
//
//   - Routing is by the longest matching prefix; an upstream with an empty
//     prefix takes every name no other prefix matches (the registry-mirror
//     case: an engine sends docker.io names as they are, /v2/library/...).
//     For Docker Hub, a one-component remote name gets "library/".
//   - Proxied repositories are read-only, as in distribution's proxy mode:
//     pushes and deletes are answered 405 UNSUPPORTED. Other names remain
//     an ordinary registry. The cache is kept fresh by ttl; what nothing
//     links any more is garbage collection's.
//   - A tag the upstream answers 404 for is removed from the cache too:
//     the mirror mirrors. Manifests stay, for pulls by digest.
//   - The upstream's 401 and 403 become 403 DENIED (the credentials are
//     the proxy's, not the client's; Docker Hub also answers 401 for a
//     repository that does not exist); 404 becomes the spec's *_UNKNOWN;
//     429 is passed on with its Retry-After.
//   - Tag lists of proxied repositories are the upstream's, passed through
//     (with n, last and the Link header rewritten to the local name), or
//     the cached tags when the upstream cannot answer.
//   - Manifests are stored as the upstream sent them, asked for with every
//     manifest and index media type: a tag must point at the same bytes for
//     every client, so a client's Accept is not passed on.
//   - Without an Authorizer, a blob already stored for another repository
//     is linked without asking the upstream, as a mount without from= is.
//     With one, the upstream must confirm that the repository has it.
//   - What the cache stores is tagged and linked as a push would be, in the
//     same critical sections against the garbage collector (LockWrites),
//     so a collection keeps what the cached tags name.
//
// The files: proxy.go (configuration, routing, refusals, tag lists),
// proxy_upstream.go (reaching an upstream: TLS, auth, errors),
// proxy_fetch.go (manifests, and the shared blob downloads).

// ProxyConfig is one upstream registry the Registry caches pulls from.
// The yaml tags are the keys of the registry's configuration file.
type ProxyConfig struct {
	// Prefix routes repository "<prefix>/<rest>" to this upstream as
	// "<rest>". Empty: every name that no other prefix matches.
	Prefix string `yaml:"prefix"`
	// Remote is the upstream's base URL: "https://registry-1.docker.io",
	// "http://127.0.0.1:5000".
	Remote string `yaml:"remote"`
	// Username and Password (or PasswordFile, whose content, trailing
	// newline removed, is the password) are sent as Basic credentials,
	// or exchanged for a token when the upstream asks for Bearer.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"passwordFile"`
	// TTL is how long a cached tag is served without asking the upstream
	// whether it moved. 0 asks every time (a HEAD request, which Docker
	// Hub does not count against its pull limits).
	TTL time.Duration `yaml:"ttl"`
	// Insecure skips verifying the upstream's TLS certificate.
	Insecure bool `yaml:"insecure"`
	// CAFile is a PEM file of CAs to trust for the upstream, in addition
	// to the system's.
	CAFile string `yaml:"caFile"`
}

// Proxy is the pull-through cache's state: the upstreams, their
// authenticated transports, and the downloads in flight. Make one with
// NewProxy and give it to New with WithProxy; it is safe for concurrent
// use.
type Proxy struct {
	upstreams []*upstream // longest prefix first; the catch-all, if any, last

	manifests singleflight.Group // "name@ref": one upstream check at a time

	mu      sync.Mutex
	fetches map[string]*blobFetch // "name@digest": downloads in flight
}

// NewProxy checks the upstreams' configuration and reads their password
// and CA files.
func NewProxy(upstreams []ProxyConfig) (*Proxy, error) {
	p := &Proxy{fetches: map[string]*blobFetch{}}
	seen := map[string]bool{}
	for _, c := range upstreams {
		if c.Prefix != "" {
			if err := ValidateName(c.Prefix); err != nil {
				return nil, fmt.Errorf("proxy prefix %q: %w", c.Prefix, err)
			}
		}
		if seen[c.Prefix] {
			if c.Prefix == "" {
				return nil, fmt.Errorf("proxy: two upstreams without a prefix; only one may take every name: %w", errdefs.ErrInvalidArgument)
			}
			return nil, fmt.Errorf("proxy prefix %q is configured twice: %w", c.Prefix, errdefs.ErrInvalidArgument)
		}
		seen[c.Prefix] = true
		u, err := newUpstream(c)
		if err != nil {
			return nil, err
		}
		p.upstreams = append(p.upstreams, u)
	}
	sort.SliceStable(p.upstreams, func(i, j int) bool {
		return len(p.upstreams[i].cfg.Prefix) > len(p.upstreams[j].cfg.Prefix)
	})
	return p, nil
}

// WithProxy makes the Registry a pull-through cache of p's upstreams for
// the repositories they route (nil: none).
func WithProxy(p *Proxy) Option { return func(r *Registry) { r.proxy = p } }

// checkProxyConfig validates c and returns it with the password read
// from its file and the remote URL parsed.
func checkProxyConfig(c ProxyConfig) (ProxyConfig, *url.URL, error) {
	u, err := url.Parse(c.Remote)
	shown := c.Remote
	if err != nil {
		shown = "(an unparsable URL)" // it may hold credentials
	} else if u.User != nil {
		shown = u.Redacted()
	}
	what := "proxy upstream " + shown
	if c.Prefix != "" {
		what = fmt.Sprintf("proxy upstream %q (%s)", c.Prefix, shown)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return c, nil, fmt.Errorf("%s: remote must be a URL like https://registry-1.docker.io: %w", what, errdefs.ErrInvalidArgument)
	}
	if c.Password != "" && c.PasswordFile != "" {
		return c, nil, fmt.Errorf("%s: give password or passwordFile, not both: %w", what, errdefs.ErrInvalidArgument)
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return c, nil, fmt.Errorf("%s: read password file: %w", what, err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
	}
	if (c.Username == "") != (c.Password == "") {
		return c, nil, fmt.Errorf("%s: username and password go together: %w", what, errdefs.ErrInvalidArgument)
	}
	if c.TTL < 0 {
		return c, nil, fmt.Errorf("%s: negative ttl %s: %w", what, c.TTL, errdefs.ErrInvalidArgument)
	}
	return c, u, nil
}

// route finds the upstream for repository name and the name to ask it
// for; nil when the name is not proxied (or p is nil).
func (p *Proxy) route(name string) (*upstream, string) {
	if p == nil {
		return nil, ""
	}
	for _, u := range p.upstreams {
		rest := name
		if u.cfg.Prefix != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(name, u.cfg.Prefix+"/"); !ok {
				continue
			}
		}
		if u.hub && !strings.Contains(rest, "/") {
			rest = "library/" + rest
		}
		return u, rest
	}
	return nil, ""
}

// refusePush answers pushes and deletes to proxied repositories.
func (p *Proxy) refusePush(name string) error {
	u, _ := p.route(name)
	if u == nil {
		return nil
	}
	return &Error{Code: CodeUnsupported, Message: fmt.Sprintf("repository %s is a read-only pull-through cache of %s: push to the upstream instead", name, u.cfg.Remote)}
}

// serveTags answers GET /v2/<name>/tags/list for a proxied repository with
// the upstream's list; served is false when the local list should answer
// (a name not proxied, or an upstream that cannot answer).
func (p *Proxy) serveTags(g *Registry, w http.ResponseWriter, r *http.Request, name string) (served bool, err error) {
	up, remote := p.route(name)
	if up == nil {
		return false, nil
	}
	q := url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	path := "/tags/list"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	rearm := upstreamWait(g, w)
	link, err := up.getJSON(r.Context(), remote, path, &list)
	rearm()
	if err != nil {
		if upstreamUnavailable(err) {
			g.log.Warn("registry: upstream cannot list tags; answering with the cached ones", "upstream", up.cfg.Remote, "repository", remote, "err", err)
			return false, nil
		}
		return false, proxyClientError(up, remote, err, &Error{Code: CodeNameUnknown, Message: "repository name not known to registry", Detail: map[string]string{"name": name}})
	}
	if next := rewriteTagsLink(link, name); next != "" {
		w.Header().Set("Link", next)
	}
	if list.Tags == nil {
		list.Tags = []string{}
	}
	list.Name = name
	return true, writeJSON(w, r, "application/json", list)
}

// rewriteTagsLink turns the upstream's next-page Link header into one for the
// local name, keeping only the query (n, last) it carries.
func rewriteTagsLink(link, name string) string {
	target, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(link), "<"), ">")
	if !ok || !strings.Contains(rest, `rel="next"`) {
		return ""
	}
	u, err := url.Parse(target)
	if err != nil {
		return ""
	}
	q := url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := u.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	return "</v2/" + name + "/tags/list?" + q.Encode() + `>; rel="next"`
}

// tagCheckedAt is when the cached tag was last confirmed by the upstream:
// the tag file's mtime, which cacheTag sets after each check (SetTag does
// not rewrite an unchanged tag).
func (s *Store) tagCheckedAt(name, tag string) (time.Time, error) {
	p, err := s.tagPath(name, tag)
	if err != nil {
		return time.Time{}, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

func (s *Store) touchTag(name, tag string) error {
	p, err := s.tagPath(name, tag)
	if err != nil {
		return err
	}
	return touch(p)
}
