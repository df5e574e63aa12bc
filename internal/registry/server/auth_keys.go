package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Key material for tokens: the issuer's private key and certificate, and
// the public keys, certificate bundles and JWKS a verifier trusts. Every
// loader names the file and says what it expected to find.

// minRSABits refuses keys that are too weak to sign or be trusted.
const minRSABits = 2048

// loadPrivateKey reads a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"); ECDSA P-256/384/521,
// RSA of 2048 bits or more, or Ed25519.
func loadPrivateKey(path string) (crypto.Signer, jwt.SigningMethod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, nil, fmt.Errorf("%s holds no PEM private key (make one with: openssl ecparam -genkey -name prime256v1 -noout -out %s)", path, path)
		}
		if _, legacy := b.Headers["Proc-Type"]; legacy || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, nil, fmt.Errorf("%s is encrypted; the registry needs it decrypted (openssl pkey -in %s -out KEY)", path, path)
		}
		var key any
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s block: %w", path, b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %T keys cannot sign tokens: use ECDSA P-256 or RSA", path, key)
		}
		m, err := signingMethod(signer.Public())
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		return signer, m, nil
	}
}

// signingMethod is the JWS algorithm a key signs with.
func signingMethod(pub crypto.PublicKey) (jwt.SigningMethod, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwt.SigningMethodES256, nil
		case elliptic.P384():
			return jwt.SigningMethodES384, nil
		case elliptic.P521():
			return jwt.SigningMethodES512, nil
		}
		return nil, fmt.Errorf("ECDSA curve %s is not one JWT knows: use P-256", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too weak: use %d bits or more", k.N.BitLen(), minRSABits)
		}
		return jwt.SigningMethodRS256, nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA, nil
	}
	return nil, fmt.Errorf("%T keys cannot sign tokens: use ECDSA P-256 or RSA", pub)
}

// verifyMethods are the algorithms a verifier accepts. HMAC and "none"
// are not among them: a verifier holds public keys only.
var verifyMethods = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}

// loadCertificates reads every CERTIFICATE block of a PEM file.
func loadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return certs, nil
}

// loadPublicKeys reads PUBLIC KEY (PKIX) and CERTIFICATE blocks; from a
// certificate only its key is taken (it is trusted as a key, not as a CA).
func loadPublicKeys(path string) ([]crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []crypto.PublicKey
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var k crypto.PublicKey
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(b.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s block: %w", path, b.Type, err)
		}
		if _, err := signingMethod(k); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no PEM public key or certificate", path)
	}
	return keys, nil
}

// keyIDs are the IDs other issuers may put in "kid" for pub: the RFC
// 7638 JWK thumbprint (what JWKS issuers and distribution 3 use; the
// latter without the left-padding of EC coordinates the RFC asks for, so
// both spellings), and the libtrust key ID of distribution 2.x.
func keyIDs(pub crypto.PublicKey) []string {
	var ids []string
	for _, id := range []string{jwkThumbprint(pub, true), jwkThumbprint(pub, false), libtrustKeyID(pub)} {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// jwkThumbprint is RFC 7638's SHA-256 thumbprint of pub, base64url.
// padEC left-pads EC coordinates to the curve size, as RFC 7518 requires.
func jwkThumbprint(pub crypto.PublicKey, padEC bool) string {
	b64 := base64.RawURLEncoding.EncodeToString
	var doc string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		doc = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(big.NewInt(int64(k.E)).Bytes()), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		x, y, err := ecCoordinates(k)
		if err != nil {
			return ""
		}
		if !padEC {
			x, y = new(big.Int).SetBytes(x).Bytes(), new(big.Int).SetBytes(y).Bytes()
		}
		doc = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, k.Curve.Params().Name, b64(x), b64(y))
	case ed25519.PublicKey:
		doc = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":"%s"}`, b64(k))
	default:
		return ""
	}
	sum := sha256.Sum256([]byte(doc))
	return b64(sum[:])
}

// ecCoordinates are X and Y, each padded to the curve's size.
func ecCoordinates(k *ecdsa.PublicKey) (x, y []byte, err error) {
	p, err := k.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, nil, err
	}
	n := (len(p) - 1) / 2
	return p[1 : 1+n], p[1+n:], nil
}

// libtrustKeyID is docker/libtrust's key ID, which distribution 2.x
// matches "kid" against: SHA-256 of the DER public key, truncated to 240
// bits, base32 in colon-separated groups of four.
func libtrustKeyID(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	s := strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:30]), "=")
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:min(i+4, len(s))])
	}
	return strings.Join(groups, ":")
}

// jwk is one key of a JWKS (RFC 7517), the members we use.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// parseJWKS reads a JSON Web Key Set: EC (P-256/384/521), RSA and OKP
// (Ed25519) public keys, by kid. Keys marked "use":"enc" are skipped; a
// key without kid is known by its thumbprints only.
func parseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS (%v): expected {\"keys\":[...]}", err)
	}
	out := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i+1, k.Kid, err)
		}
		if k.Kid != "" {
			out[k.Kid] = pub
		}
		for _, id := range keyIDs(pub) {
			if _, taken := out[id]; !taken {
				out[id] = pub
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no signing key in the JWKS")
	}
	return out, nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	dec := func(field, s string) ([]byte, error) {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("member %q is not base64url", field)
		}
		return b, nil
	}
	switch k.Kty {
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("EC curve %q is not supported: use P-256, P-384 or P-521", k.Crv)
		}
		x, err := dec("x", k.X)
		if err != nil {
			return nil, err
		}
		y, err := dec("y", k.Y)
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) > size || len(y) > size {
			return nil, fmt.Errorf("EC coordinates longer than the curve %s", k.Crv)
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		copy(point[1+size-len(x):1+size], x)
		copy(point[1+2*size-len(y):], y)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		return pub, nil
	case "RSA":
		n, err := dec("n", k.N)
		if err != nil {
			return nil, err
		}
		e, err := dec("e", k.E)
		if err != nil {
			return nil, err
		}
		if len(e) > 4 {
			return nil, errors.New("RSA exponent too large")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("RSA exponent %d is invalid", pub.E)
		}
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too weak: %d bits or more are trusted", pub.N.BitLen(), minRSABits)
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q is not supported: use Ed25519", k.Crv)
		}
		x, err := dec("x", k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key of %d bytes, want %d", len(x), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("key type %q is not supported: use EC, RSA or OKP", k.Kty)
}

// samePublicKey compares two public keys of any supported kind.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
