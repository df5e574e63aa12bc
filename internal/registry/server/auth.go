package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// AuthConfig is the auth: section of the registry's configuration. With
// none of it the registry is open (listen on loopback, or behind something
// that authenticates). Three modes, by which keys are set:
//
//	# Basic: the registry checks htpasswd users itself.
//	auth:
//	  htpasswd: {path: /etc/berth/registry.htpasswd, realm: "berth registry"}
//	  acl: [...]
//
//	# Token, berth's own issuer: the registry serves the token endpoint
//	# (at the realm's path) and accepts only the tokens it signs.
//	auth:
//	  htpasswd: {path: /etc/berth/registry.htpasswd}
//	  token:
//	    realm: https://reg.example:5000/token   # what clients are told
//	    service: reg.example                    # the tokens' audience
//	    issuer: berth-registry
//	    key: /etc/berth/registry-token.key      # PEM, ECDSA P-256 or RSA
//	    certificate: /etc/berth/registry-token.crt  # optional, sent as x5c
//	    expiry: 5m
//	  acl: [...]
//
//	# External: tokens from another issuer, which decides who may do what.
//	auth:
//	  external:
//	    realm: https://auth.example/token
//	    service: reg.example
//	    issuer: auth.example
//	    rootCertBundle: /etc/berth/token-ca.pem  # and/or jwks:, publicKey:
//
// acl rules grant actions (pull, push, delete, catalog, or *) on
// repository patterns to a user, "*" (any authenticated user) or
// "anonymous" (everyone):
//
//	acl:
//	  - {user: alice, repos: ["team/*"], actions: [pull, push, delete]}
//	  - {user: "*", repos: ["*"], actions: [pull]}
//	  - {user: anonymous, repos: ["public/*"], actions: [pull]}
//	  - {user: admin, actions: [catalog]}
//
// Without acl rules every authenticated user may do everything (as
// distribution's htpasswd auth) and anonymous requests nothing.
type AuthConfig struct {
	Htpasswd *HtpasswdConfig `yaml:"htpasswd,omitempty"`
	Token    *TokenConfig    `yaml:"token,omitempty"`
	External *ExternalConfig `yaml:"external,omitempty"`
	ACL      []ACLRule       `yaml:"acl,omitempty"`
}

// Enabled says whether the section asks for any authentication.
func (c *AuthConfig) Enabled() bool {
	return c != nil && (c.Htpasswd != nil || c.Token != nil || c.External != nil || len(c.ACL) > 0)
}

// FilePaths are the section's file names, for a config loader to make
// relative ones absolute.
func (c *AuthConfig) FilePaths() []*string {
	var ps []*string
	if c == nil {
		return nil
	}
	if c.Htpasswd != nil {
		ps = append(ps, &c.Htpasswd.Path)
	}
	if c.Token != nil {
		ps = append(ps, &c.Token.Key, &c.Token.Certificate)
	}
	if c.External != nil {
		ps = append(ps, &c.External.RootCertBundle, &c.External.JWKS, &c.External.PublicKey)
	}
	return ps
}

// TokenPath is the path berth's own token endpoint is served at (the
// realm's path), or "" without one.
func (c *AuthConfig) TokenPath() string {
	if c == nil || c.Token == nil {
		return ""
	}
	u, err := url.Parse(c.Token.Realm)
	if err != nil {
		return ""
	}
	return u.Path
}

// AuthOption configures NewAuth.
type AuthOption func(*authOptions)

type authOptions struct {
	log *slog.Logger
}

// WithAuthLogger is where refused tokens (at debug level), htpasswd
// reloads and signing faults are logged (default slog.Default).
func WithAuthLogger(l *slog.Logger) AuthOption { return func(o *authOptions) { o.log = l } }

// NewAuth loads what cfg names (htpasswd file, keys, certificates) and
// returns the Authorizer for server.WithAuthorizer, and berth's token
// endpoint when cfg.Token is set (serve it at cfg.TokenPath() on the
// registry's listener, or wherever the realm points). Both are nil when
// cfg enables nothing. Errors name the key to fix.
func NewAuth(cfg AuthConfig, opts ...AuthOption) (Authorizer, http.Handler, error) {
	o := authOptions{log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	if !cfg.Enabled() {
		return nil, nil, nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("registry config: "+format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	if cfg.External != nil {
		if cfg.Htpasswd != nil || cfg.Token != nil || len(cfg.ACL) > 0 {
			return nil, nil, bad("auth.external cannot be combined with htpasswd, token or acl: the external issuer decides who may do what")
		}
		e := cfg.External
		if err := checkBearerParams("auth.external", e.Realm, e.Service, e.Issuer); err != nil {
			return nil, nil, err
		}
		if e.RootCertBundle == "" && e.JWKS == "" && e.PublicKey == "" {
			return nil, nil, bad("auth.external needs rootCertBundle, jwks or publicKey: what the issuer's tokens are verified with")
		}
		v, err := newExternalVerifier(e)
		if err != nil {
			return nil, nil, bad("%v", err)
		}
		return &bearerAuth{realm: e.Realm, service: e.Service, verifier: v, log: o.log}, nil, nil
	}
	if cfg.Htpasswd == nil {
		return nil, nil, bad("auth.htpasswd is needed for acl and token: the users come from it")
	}
	if cfg.Htpasswd.Path == "" {
		return nil, nil, bad("auth.htpasswd.path is empty: name the htpasswd file (made with htpasswd -cB FILE USER)")
	}
	realm := cfg.Htpasswd.Realm
	if realm == "" {
		realm = defaultRealm
	}
	if !validParam(realm) {
		return nil, nil, bad("auth.htpasswd.realm %q may not hold quotes, backslashes or control characters", realm)
	}
	users, err := loadHtpasswd(cfg.Htpasswd.Path, o.log)
	if err != nil {
		return nil, nil, bad("%v", err)
	}
	rules, err := newACL(cfg.ACL)
	if err != nil {
		return nil, nil, bad("%v", err)
	}
	if cfg.Token == nil {
		return &basicAuth{realm: realm, users: users, acl: rules}, nil, nil
	}
	t := cfg.Token
	if err := checkBearerParams("auth.token", t.Realm, t.Service, t.Issuer); err != nil {
		return nil, nil, err
	}
	// The registry serves the endpoint at the realm's path, beside /v2/.
	if p := cfg.TokenPath(); p == "" || p == "/" || p == "/v2" || strings.HasPrefix(p, "/v2/") {
		return nil, nil, bad("auth.token.realm %q needs a path of its own for the token endpoint, outside /v2/ (like /token)", t.Realm)
	}
	if t.Key == "" {
		return nil, nil, bad("auth.token.key is empty: name a PEM private key (openssl ecparam -genkey -name prime256v1 -noout -out FILE)")
	}
	iss, err := newTokenIssuer(t, users, realm, rules, o.log)
	if err != nil {
		return nil, nil, bad("%v", err)
	}
	return &bearerAuth{realm: t.Realm, service: t.Service, verifier: iss.verifier(), log: o.log}, iss, nil
}

// checkBearerParams checks what a Bearer challenge and token claims are
// made of.
func checkBearerParams(section, realm, service, issuer string) error {
	u, err := url.Parse(realm)
	if realm == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("registry config: %s.realm %q must be the token endpoint's absolute URL, like https://reg.example:5000/token: %w", section, realm, errdefs.ErrInvalidArgument)
	}
	if service == "" || issuer == "" {
		return fmt.Errorf("registry config: %s needs service (the tokens' audience) and issuer (their iss): %w", section, errdefs.ErrInvalidArgument)
	}
	for _, kv := range [][2]string{{"realm", realm}, {"service", service}, {"issuer", issuer}} {
		if k, v := kv[0], kv[1]; !validParam(v) {
			return fmt.Errorf("registry config: %s.%s %q may not hold quotes, backslashes or control characters: %w", section, k, v, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// validParam: challenge parameters are quoted strings; refusing what
// would need escaping keeps every client's parser happy.
func validParam(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == '"' || c == '\\' || c == 0x7f {
			return false
		}
	}
	return true
}

func basicChallenge(realm string) string { return `Basic realm="` + realm + `"` }

// accessDetail is the detail distribution sends with UNAUTHORIZED: what
// the request needed.
func accessDetail(access []Access) any {
	type rec struct{ Type, Name, Action string }
	var out []rec
	for _, a := range access {
		for _, act := range a.Actions {
			out = append(out, rec{a.Type, a.Name, act})
		}
	}
	return out
}

// basicAuth checks htpasswd credentials on every request and asks the
// ACL. It answers:
//
//   - no credentials, and the request is more than anonymous rules allow
//     (GET /v2/ always is: it is how clients find out how to log in):
//     401 UNAUTHORIZED with the Basic challenge;
//   - wrong credentials: the same 401, whatever the request;
//   - good credentials, access not granted: 403 DENIED, since sending
//     them again cannot help (distribution's htpasswd auth has no ACL; this
//     is what registries with one, and the spec's DENIED, do).
//
// Nothing here reads storage, so a repository that does not exist gets
// the same answer as one that does.
type basicAuth struct {
	realm string
	users *htpasswd
	acl   *acl
}

var _ Authorizer = (*basicAuth)(nil)

func (b *basicAuth) Authorize(r *http.Request, access []Access) error {
	user, ok := basicUser(r, b.users)
	if !ok {
		return b.challenge(access, "incorrect username or password")
	}
	if user == "" && (len(access) == 0 || !b.acl.allows("", access)) {
		return b.challenge(access, "authentication required")
	}
	if user != "" {
		WithUser(r.Context(), user) // for the access log
	}
	if b.acl.allows(user, access) {
		return nil
	}
	return &Error{Code: CodeDenied, Message: "requested access to the resource is denied", Detail: accessDetail(access)}
}

// basicUser is who a request's Basic credentials prove it is: "" for
// none, ok false for credentials that are wrong or not Basic. An empty
// user and password count as none: containers/image (skopeo, podman)
// sends "Basic Og==" when it has no credentials.
func basicUser(r *http.Request, users *htpasswd) (user string, ok bool) {
	if r.Header.Get("Authorization") == "" {
		return "", true
	}
	u, pass, isBasic := r.BasicAuth()
	switch {
	case !isBasic:
		return "", false
	case u == "" && pass == "":
		return "", true
	case !users.check(u, pass):
		// At info, with the address: what fail2ban and friends read.
		users.log.Info("registry: authentication failed", "user", truncate(u), "remote", r.RemoteAddr)
		return "", false
	}
	return u, true
}

func (b *basicAuth) challenge(access []Access, msg string) *Error {
	return &Error{Code: CodeUnauthorized, Message: msg, Detail: accessDetail(access),
		Header: http.Header{"Www-Authenticate": {basicChallenge(b.realm)}}}
}

// bearerAuth accepts tokens from one issuer, as distribution's token auth
// does, and answers every refusal with 401 and a Bearer challenge naming
// the scope needed: error="invalid_token" for a token that does not
// verify, error="insufficient_scope" for one that does but grants too
// little. A 401, not 403, for the latter: the client asked the issuer for
// the scopes it knew of, and a new token for the scope in the challenge
// may well be granted. An authenticated user who has no right gets a
// token without it, and the same 401; a missing repository is never
// consulted.
type bearerAuth struct {
	realm    string
	service  string
	verifier *tokenVerifier
	log      *slog.Logger
}

var _ Authorizer = (*bearerAuth)(nil)

func (b *bearerAuth) Authorize(r *http.Request, access []Access) error {
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") || raw == "" {
		return b.challenge(access, "", "authentication required")
	}
	claims, err := b.verifier.verify(strings.TrimSpace(raw))
	if err != nil {
		b.log.Debug("registry: token refused", "err", err, "remote", r.RemoteAddr)
		return b.challenge(access, "invalid_token", "invalid token")
	}
	if claims.Subject != "" {
		WithUser(r.Context(), claims.Subject) // for the access log
	}
	if !claims.allows(access) {
		return b.challenge(access, "insufficient_scope", "insufficient scope: the token does not grant the access this request needs")
	}
	return nil
}

func (b *bearerAuth) challenge(access []Access, errParam, msg string) *Error {
	v := `Bearer realm="` + b.realm + `",service="` + b.service + `"`
	if s := scopeParam(access); s != "" {
		v += `,scope="` + s + `"`
	}
	if errParam != "" {
		v += `,error="` + errParam + `"`
	}
	return &Error{Code: CodeUnauthorized, Message: msg, Detail: accessDetail(access),
		Header: http.Header{"Www-Authenticate": {v}}}
}
