package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestUnpackTrustedDigest: a caller-verified digest replaces the second
// hash of an uncompressed stream, and is ignored for compressed input,
// whose diffID is not the blob's digest.
func TestUnpackTrustedDigest(t *testing.T) {
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi"))
	tw.Close()
	real := digest.FromBytes(plain.Bytes())
	marker := digest.FromString("what the caller verified")

	got, _, err := Unpack(context.Background(), t.TempDir(), bytes.NewReader(plain.Bytes()), WithTrustedDigest(marker))
	if err != nil || got != marker {
		t.Errorf("plain input: %s, %v; want the trusted digest %s", got, err, marker)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	got, _, err = Unpack(context.Background(), t.TempDir(), bytes.NewReader(gz.Bytes()), WithTrustedDigest(marker))
	if err != nil || got != real {
		t.Errorf("gzip input: %s, %v; want the computed diffID %s", got, err, real)
	}
}
