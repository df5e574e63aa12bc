package registry

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
)

// newTransport is the HTTP transport under go-containerregistry's auth
// and retry layers. It bounds manifest responses to MaxManifestSize, so a
// hostile registry cannot make us buffer up to remote's own 100 MiB limit.
func newTransport(insecure bool) http.RoundTripper {
	base := remote.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it
	}
	return &limitTransport{base: base}
}

type limitTransport struct{ base http.RoundTripper }

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > MaxManifestSize {
		resp.Body.Close()
		resp.Body = io.NopCloser(errReader{tooLarge(resp.ContentLength)})
		return resp, nil
	}
	lb := &limitBody{rc: resp.Body, left: MaxManifestSize}
	// A manifest asked for by digest is checked here, where the error can
	// carry berth's class, before go-containerregistry checks it again.
	ref := req.URL.Path[strings.LastIndex(req.URL.Path, "/manifests/")+len("/manifests/"):]
	if d, err := digest.Parse(ref); err == nil && resp.StatusCode == http.StatusOK {
		lb.want, lb.hash = d, d.Algorithm().Digester()
	}
	resp.Body = lb
	return resp, nil
}

func tooLarge(n int64) error {
	if n < 0 {
		return fmt.Errorf("manifest is larger than %d bytes: refusing: %w", MaxManifestSize, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("manifest is %d bytes, larger than %d: refusing: %w", n, MaxManifestSize, errdefs.ErrInvalidArgument)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// limitBody fails once more than left bytes have been read.
// With want set it also fails at the end unless the body has that digest.
type limitBody struct {
	rc   io.ReadCloser
	left int64
	want digest.Digest
	hash digest.Digester
}

func (b *limitBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, tooLarge(-1)
	}
	if b.hash != nil {
		b.hash.Hash().Write(p[:n])
		if err == io.EOF {
			if got := b.hash.Digest(); got != b.want {
				return n, fmt.Errorf("the registry sent a manifest with digest %s when asked for %s: refusing: %w", got, b.want, errdefs.ErrInvalidArgument)
			}
		}
	}
	return n, err
}

func (b *limitBody) Close() error { return b.rc.Close() }

// classify gives registry errors berth's classes, keeping the message.
func classify(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	switch terr.StatusCode {
	case http.StatusNotFound:
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%v (does the repository exist, and are you logged in? try berth login): %w", err, errdefs.ErrFailedPrecondition)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return fmt.Errorf("%v: %w", err, errdefs.ErrUnavailable)
	}
	return err
}
