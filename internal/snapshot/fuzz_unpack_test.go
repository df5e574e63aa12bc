package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
)

// FuzzUnpack unpacks each input twice: as the layer stream itself, which
// exercises the tar, gzip and zstd readers, and as a script of entries
// (scriptTar) written into a valid tar, which exercises path handling
// with names, link targets and types a mutated tar header would rarely
// reach past its checksum. Whatever the input, nothing panics, nothing
// outside the layer directory changes, every error wraps
// ErrInvalidArgument, and an accepted plain stream hashes to its diffID.
// Seeds, valid and hostile, are in testdata/fuzz/FuzzUnpack.
func FuzzUnpack(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x02s|/\n\x01s/" + escapeCanary + "||data\n\x03h|s/" + escapeCanary))
	f.Add([]byte("\x00a/b\n\x01a/b/c||x\n\x02a|../outside\n\x01a/b/d||pwned\n\x06a/.wh.b\n\x06.wh..wh..opq"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzUnpackOne(t, data)
		if script := scriptTar(data); script != nil {
			fuzzUnpackOne(t, script)
		}
	})
}

func fuzzUnpackOne(t *testing.T, data []byte) {
	s := newUnpackSandbox(t)
	d, n, err := Unpack(context.Background(), s.layer, bytes.NewReader(data),
		WithMaxSize(32<<20), WithMaxEntries(4096))
	s.check(t)
	if err != nil {
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("error %q does not wrap ErrInvalidArgument", err)
		}
		if !strings.HasPrefix(err.Error(), "layer") {
			t.Fatalf("error %q does not start with what it was doing", err)
		}
		return
	}
	compressed := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b ||
		len(data) >= 4 && bytes.Equal(data[:4], []byte{0x28, 0xb5, 0x2f, 0xfd})
	if !compressed && (d != digest.FromBytes(data) || n != int64(len(data))) {
		t.Fatalf("diffID %s size %d; want %s %d", d, n, digest.FromBytes(data), len(data))
	}
}

// scriptTar reads data as lines of entries, "<type byte><name>|<link>|<data>",
// and writes them as a PAX tar; nil when no line makes an entry. The type
// byte modulo 8 picks directory, file, symlink, hardlink, fifo, char
// device, whiteout (a file) or block device.
func scriptTar(data []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := 0
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) < 2 {
			continue
		}
		fields := strings.SplitN(string(line[1:]), "|", 3)
		for len(fields) < 3 {
			fields = append(fields, "")
		}
		h := &tar.Header{Name: fields[0], Linkname: fields[1], Mode: 0o644, Format: tar.FormatPAX, Uid: int(line[0] >> 3)}
		body := []byte(fields[2])
		switch line[0] % 8 {
		case 0:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755|int64(line[0]&0o70)<<6
		case 1:
			h.Typeflag = tar.TypeReg
		case 2:
			h.Typeflag = tar.TypeSymlink
		case 3:
			h.Typeflag = tar.TypeLink
		case 4:
			h.Typeflag = tar.TypeFifo
		case 5:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		case 6:
			h.Typeflag = tar.TypeReg
			i := strings.LastIndexByte(h.Name, '/') + 1
			h.Name = h.Name[:i] + ".wh." + h.Name[i:]
		case 7:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, 7, 0
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if strings.HasPrefix(fields[1], "xattr:") {
			h.PAXRecords = map[string]string{"SCHILY.xattr." + strings.TrimPrefix(fields[1], "xattr:"): fields[2]}
		}
		if tw.WriteHeader(h) != nil {
			return nil // the writer is unusable after a failed header
		}
		if h.Size > 0 {
			tw.Write(body)
		}
		entries++
	}
	if entries == 0 || tw.Close() != nil {
		return nil
	}
	return buf.Bytes()
}
