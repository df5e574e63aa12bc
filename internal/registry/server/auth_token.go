package server

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token auth, as Docker's token specification and distribution do it:
// the registry answers 401 with a Bearer challenge naming a realm (the
// token endpoint), a service and the scope the request needs; the client
// gets a JWT from the realm and retries with it. The registry only
// verifies tokens: signature (by kid, or x5c chained to trusted roots),
// iss, aud (= service), exp and nbf with a minute of leeway for clock
// skew, and the "access" claim against what the request needs.

// TokenConfig is berth's own token issuer: it checks Basic credentials
// against auth.htpasswd, grants what auth.acl allows, and signs with Key.
type TokenConfig struct {
	// Realm is the token endpoint's URL as clients must reach it
	// (https://reg.example:5000/token); the registry serves the endpoint
	// at its path.
	Realm string `yaml:"realm"`
	// Service names this registry; it is the tokens' audience.
	Service string `yaml:"service"`
	// Issuer is the tokens' iss claim.
	Issuer string `yaml:"issuer"`
	// Key is a PEM private key: ECDSA P-256 (ES256) or RSA of 2048 bits
	// or more (RS256); Ed25519 (EdDSA) too, which distribution 2.x cannot
	// verify.
	Key string `yaml:"key"`
	// Certificate, optional, is a PEM certificate of Key (then any
	// intermediates), sent in the tokens' x5c header: what distribution
	// verifies against its rootcertbundle. Without it tokens carry only
	// kid, the key's RFC 7638 thumbprint (verifiers holding the key in a
	// JWKS, or distribution 3 holding its certificate).
	Certificate string `yaml:"certificate,omitempty"`
	// Expiry is how long a token lives (default 5m, at least 1m: the
	// token spec's minimum, which clients assume).
	Expiry time.Duration `yaml:"expiry,omitempty"`
}

// ExternalConfig trusts tokens from another issuer (a token service
// shared with other registries, Harbor's core, docker_auth...). Trust is
// RootCertBundle (tokens whose x5c chains to it, or whose kid names one
// of its keys), JWKS or PublicKey (tokens whose kid names a key); at
// least one is needed.
type ExternalConfig struct {
	Realm          string `yaml:"realm"`
	Service        string `yaml:"service"`
	Issuer         string `yaml:"issuer"`
	RootCertBundle string `yaml:"rootCertBundle,omitempty"`
	JWKS           string `yaml:"jwks,omitempty"`
	// PublicKey is a PEM file of public keys or certificates, trusted as
	// keys (kid is matched against their thumbprints and libtrust IDs).
	PublicKey string `yaml:"publicKey,omitempty"`
}

const (
	defaultTokenExpiry = 5 * time.Minute
	minTokenExpiry     = time.Minute
	// tokenLeeway absorbs clock skew between issuer and registry, as
	// distribution's does.
	tokenLeeway = 60 * time.Second
	// maxTokenLen and maxScopes bound the work one request can ask for.
	maxTokenLen = 64 << 10
	maxScopes   = 64
	maxX5C      = 10
)

// resourceActions is one entry of a token's access claim, and one parsed
// scope: {"type":"repository","name":"team/app","actions":["pull"]}.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// parseScope reads one scope, "TYPE:NAME:ACTION[,ACTION...]". A name
// may hold colons (a host with a port), so the type ends at the first
// colon and the actions start after the last, as in distribution.
func parseScope(s string) (resourceActions, error) {
	first, last := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
	if first <= 0 || last <= first+1 || last == len(s)-1 {
		return resourceActions{}, fmt.Errorf("scope %q is not TYPE:NAME:ACTIONS (like repository:team/app:pull,push)", truncate(s))
	}
	ra := resourceActions{Type: s[:first], Name: s[first+1 : last]}
	for _, a := range strings.Split(s[last+1:], ",") {
		if a == "" {
			return resourceActions{}, fmt.Errorf("scope %q has an empty action", truncate(s))
		}
		if !slices.Contains(ra.Actions, a) {
			ra.Actions = append(ra.Actions, a)
		}
	}
	return ra, nil
}

// parseScopes reads the scope query parameters: repeated, and each may
// also hold several scopes separated by spaces (as challenges give them).
func parseScopes(params []string) ([]resourceActions, error) {
	var out []resourceActions
	for _, p := range params {
		for _, s := range strings.Fields(p) {
			if len(out) == maxScopes {
				return nil, fmt.Errorf("more than %d scopes in one token request", maxScopes)
			}
			ra, err := parseScope(s)
			if err != nil {
				return nil, err
			}
			out = append(out, ra)
		}
	}
	return out, nil
}

// scopeParam is what a request needs, as a challenge's scope parameter:
// "repository:a:pull,push repository:b:pull".
func scopeParam(access []Access) string {
	parts := make([]string, 0, len(access))
	for _, a := range access {
		parts = append(parts, a.Type+":"+a.Name+":"+strings.Join(a.Actions, ","))
	}
	return strings.Join(parts, " ")
}

// tokenClaims are a token's claims: the registered ones, and access.
type tokenClaims struct {
	jwt.RegisteredClaims
	Access []resourceActions `json:"access"`
}

// allows says whether the claims grant every action of every access; a
// "*" action in the token grants any, as in distribution.
func (c *tokenClaims) allows(access []Access) bool {
	for _, want := range access {
		for _, act := range want.Actions {
			if !c.has(want.Type, want.Name, act) {
				return false
			}
		}
	}
	return true
}

func (c *tokenClaims) has(typ, name, action string) bool {
	for _, ra := range c.Access {
		if ra.Type == typ && ra.Name == name && (slices.Contains(ra.Actions, action) || slices.Contains(ra.Actions, "*")) {
			return true
		}
	}
	return false
}

// tokenVerifier checks tokens from one issuer for one service.
type tokenVerifier struct {
	issuer  string
	service string
	// roots, when set, verify a token's x5c chain; a token with x5c must
	// then chain to them. Without roots, x5c is ignored and kid decides.
	roots *x509.CertPool
	keys  map[string]crypto.PublicKey // by kid
	now   func() time.Time
}

// newExternalVerifier loads the trust an ExternalConfig names.
func newExternalVerifier(c *ExternalConfig) (*tokenVerifier, error) {
	v := &tokenVerifier{issuer: c.Issuer, service: c.Service, keys: map[string]crypto.PublicKey{}, now: time.Now}
	add := func(pub crypto.PublicKey) {
		for _, id := range keyIDs(pub) {
			v.keys[id] = pub
		}
	}
	if c.RootCertBundle != "" {
		certs, err := loadCertificates(c.RootCertBundle)
		if err != nil {
			return nil, fmt.Errorf("auth.external.rootCertBundle: %w", err)
		}
		v.roots = x509.NewCertPool()
		for _, cert := range certs {
			v.roots.AddCert(cert)
			// As distribution does: a token naming a root's key by kid,
			// without x5c, is signed by that root directly.
			add(cert.PublicKey)
		}
	}
	if c.PublicKey != "" {
		keys, err := loadPublicKeys(c.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("auth.external.publicKey: %w", err)
		}
		for _, k := range keys {
			add(k)
		}
	}
	if c.JWKS != "" {
		data, err := os.ReadFile(c.JWKS)
		if err != nil {
			return nil, fmt.Errorf("auth.external.jwks: %w", err)
		}
		keys, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("auth.external.jwks %s: %w", c.JWKS, err)
		}
		for id, k := range keys {
			v.keys[id] = k
		}
	}
	return v, nil
}

// verify parses raw and checks it; the error says why a token is refused
// (for the log: clients are only told invalid_token).
func (v *tokenVerifier) verify(raw string) (*tokenClaims, error) {
	if len(raw) > maxTokenLen {
		return nil, fmt.Errorf("token of %d bytes is over the limit of %d", len(raw), maxTokenLen)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(verifyMethods),
		jwt.WithIssuer(v.issuer),
		jwt.WithAudience(v.service),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.now),
		// Canonical base64 only: a token has one spelling, so one
		// accepted token cannot be re-spelt into another.
		jwt.WithStrictDecoding(),
	)
	var c tokenClaims
	if _, err := p.ParseWithClaims(raw, &c, v.keyFor); err != nil {
		return nil, err
	}
	return &c, nil
}

// keyFor finds the key a token says it is signed with: its x5c chain's
// leaf when roots are configured (the chain must verify), else the
// trusted key its kid names, as distribution's verifier does.
func (v *tokenVerifier) keyFor(t *jwt.Token) (any, error) {
	if raw, ok := t.Header["x5c"]; ok && v.roots != nil {
		chain, err := parseX5C(raw)
		if err != nil {
			return nil, err
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{
			Roots:         v.roots,
			Intermediates: inter,
			CurrentTime:   v.now(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}); err != nil {
			return nil, fmt.Errorf("x5c certificate is not trusted: %w", err)
		}
		return chain[0].PublicKey, nil
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("token names no signing key (neither kid nor a trusted x5c)")
	}
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("token is signed by an untrusted key (kid %q)", truncate(kid))
}

// parseX5C reads the x5c header: base64 (standard, padded) DER
// certificates, leaf first.
func parseX5C(raw any) ([]*x509.Certificate, error) {
	list, ok := raw.([]any)
	if !ok || len(list) == 0 || len(list) > maxX5C {
		return nil, fmt.Errorf("x5c header is not a list of 1 to %d certificates", maxX5C)
	}
	chain := make([]*x509.Certificate, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("x5c certificate %d is not a string", i+1)
		}
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("x5c certificate %d is not base64: %w", i+1, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("x5c certificate %d: %w", i+1, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// tokenIssuer is berth's token endpoint, GET <realm path>.
type tokenIssuer struct {
	service    string
	issuer     string
	basicRealm string
	expiry     time.Duration
	signer     crypto.Signer
	method     jwt.SigningMethod
	kid        string
	x5c        []string
	users      *htpasswd
	acl        *acl
	log        *slog.Logger
	now        func() time.Time
}

func newTokenIssuer(c *TokenConfig, users *htpasswd, basicRealm string, a *acl, log *slog.Logger) (*tokenIssuer, error) {
	signer, method, err := loadPrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("auth.token.key: %w", err)
	}
	t := &tokenIssuer{
		service: c.Service, issuer: c.Issuer, basicRealm: basicRealm,
		expiry: c.Expiry, signer: signer, method: method,
		kid:   jwkThumbprint(signer.Public(), true),
		users: users, acl: a, log: log, now: time.Now,
	}
	if t.expiry == 0 {
		t.expiry = defaultTokenExpiry
	}
	if t.expiry < minTokenExpiry {
		return nil, fmt.Errorf("auth.token.expiry %s is too short: clients assume tokens live at least %s", c.Expiry, minTokenExpiry)
	}
	if c.Certificate != "" {
		certs, err := loadCertificates(c.Certificate)
		if err != nil {
			return nil, fmt.Errorf("auth.token.certificate: %w", err)
		}
		if !samePublicKey(signer.Public(), certs[0].PublicKey) {
			return nil, fmt.Errorf("auth.token.certificate %s is not for the key %s: its first certificate must certify that key", c.Certificate, c.Key)
		}
		for _, cert := range certs {
			t.x5c = append(t.x5c, base64.StdEncoding.EncodeToString(cert.Raw))
		}
	}
	return t, nil
}

// verifier checks the issuer's own tokens, by kid: the registry knows the
// key, so no certificate is involved.
func (t *tokenIssuer) verifier() *tokenVerifier {
	return &tokenVerifier{
		issuer:  t.issuer,
		service: t.service,
		keys:    map[string]crypto.PublicKey{t.kid: t.signer.Public()},
		now:     t.now,
	}
}

// tokenResponse is the token spec's answer; token and access_token are
// the same, for old and OAuth-minded clients alike.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// ServeHTTP answers GET ?service=&scope=...&account= with a token
// granting the part of the scopes the ACL allows the caller: Basic
// credentials, checked against htpasswd, or none (anonymous). Wrong
// credentials are 401, never a downgrade to anonymous: a client whose
// password is wrong must be told. Refresh tokens and the OAuth2 POST form
// are not offered; clients that try POST (containerd) fall back to GET on
// 405.
func (t *tokenIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeErrors(w, r, &Error{Code: CodeUnsupported, Message: "the token endpoint answers GET only"})
		return
	}
	q := r.URL.Query()
	if s := q.Get("service"); s != "" && s != t.service {
		writeErrors(w, r, &Error{Code: CodeUnsupported, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("this token endpoint issues tokens for service %q, not %q", t.service, truncate(s))})
		return
	}
	scopes, err := parseScopes(q["scope"])
	if err != nil {
		writeErrors(w, r, &Error{Code: CodeUnsupported, Status: http.StatusBadRequest, Message: err.Error()})
		return
	}
	user, ok := basicUser(r, t.users)
	if !ok {
		writeErrors(w, r, &Error{Code: CodeUnauthorized, Message: "incorrect username or password",
			Header: http.Header{"Www-Authenticate": {basicChallenge(t.basicRealm)}}})
		return
	}
	if acct := q.Get("account"); acct != "" && user != "" && acct != user {
		writeErrors(w, r, &Error{Code: CodeUnsupported, Status: http.StatusBadRequest,
			Message: fmt.Sprintf("account %q is not the user of the credentials", truncate(acct))})
		return
	}
	granted := make([]resourceActions, 0, len(scopes))
	for _, s := range scopes {
		if g := t.acl.grant(user, s); len(g.Actions) > 0 {
			granted = append(granted, g)
		}
	}
	now := t.now()
	tok, err := t.sign(user, granted, now)
	if err != nil {
		t.log.Error("registry: signing a token", "err", err)
		writeErrors(w, r, &Error{Code: CodeUnknown, Message: "internal server error"})
		return
	}
	body, _ := json.Marshal(tokenResponse{
		Token: tok, AccessToken: tok,
		ExpiresIn: int(t.expiry / time.Second),
		IssuedAt:  now.UTC().Format(time.RFC3339),
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}

// sign makes a token for user (sub; "" when anonymous) granting access.
func (t *tokenIssuer) sign(user string, access []resourceActions, now time.Time) (string, error) {
	var jti [16]byte
	rand.Read(jti[:])
	if access == nil {
		access = []resourceActions{}
	}
	// MapClaims rather than RegisteredClaims so that aud is a plain
	// string, the form distribution 2.x's verifier reads.
	tok := jwt.NewWithClaims(t.method, jwt.MapClaims{
		"iss":    t.issuer,
		"sub":    user,
		"aud":    t.service,
		"exp":    now.Add(t.expiry).Unix(),
		"nbf":    now.Unix(),
		"iat":    now.Unix(),
		"jti":    hex.EncodeToString(jti[:]),
		"access": access,
	})
	tok.Header["kid"] = t.kid
	if t.x5c != nil {
		tok.Header["x5c"] = t.x5c
	}
	return tok.SignedString(t.signer)
}
