package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestImport(t *testing.T) {
	rootfs := rootfsTar(t, "one")
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"plain", rootfs},
		{"gzip", gzipBytes(t, rootfs)},
		{"zstd", zstdBytes(t, rootfs)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newService(t)
			ctx := context.Background()
			img, err := s.Import(ctx, bytes.NewReader(tc.input), "localhost:5000/imported:v1", ImportOpts{
				Message: "from a test",
				Config:  v1.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := digest.FromBytes(rootfs); img.DiffIDs[0] != want {
				t.Fatalf("diffID %s, want %s (the uncompressed input)", img.DiffIDs[0], want)
			}
			if want := layerSize(t, s, img.ChainIDs[0]); img.Size != want || want == 0 {
				t.Errorf("size %d, want %d (the unpacked layer's)", img.Size, want)
			}
			for _, ref := range []string{"localhost:5000/imported:v1", img.ID.String(), img.ID.Encoded(), img.ID.Encoded()[:12], img.ID.Encoded()[:3]} {
				got, err := s.Get(ref)
				if err != nil {
					t.Fatalf("Get(%q): %v", ref, err)
				}
				if got.ID != img.ID {
					t.Fatalf("Get(%q) = %s, want %s", ref, got.ID, img.ID)
				}
			}
			// The stored blobs are what the record says.
			cfgRaw, err := s.readBlob(img.ID)
			if err != nil {
				t.Fatal(err)
			}
			if digest.FromBytes(cfgRaw) != img.ID {
				t.Fatal("config blob does not hash to the image ID")
			}
			var m v1.Manifest
			raw, err := s.readBlob(img.ManifestDigest)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			if m.MediaType != v1.MediaTypeImageManifest || m.Config.Digest != img.ID || len(m.Layers) != 1 || m.Layers[0].MediaType != v1.MediaTypeImageLayerGzip {
				t.Fatalf("manifest %s", raw)
			}
			if !s.Snapshots.Has(img.ChainIDs[0]) || img.ChainIDs[0] != img.DiffIDs[0] {
				t.Fatalf("layer %s not unpacked", img.ChainIDs[0])
			}

			ins, err := s.Inspect("localhost:5000/imported:v1")
			if err != nil {
				t.Fatal(err)
			}
			if ins.ID != img.ID.String() || ins.Comment != "from a test" || ins.Os != "linux" || ins.Architecture == "" ||
				len(ins.RepoTags) != 1 || ins.RepoTags[0] != "localhost:5000/imported:v1" || ins.RootFS.Type != "layers" ||
				len(ins.RootFS.Layers) != 1 || ins.Config.Cmd[0] != "/bin/sh" || ins.Metadata.LastTagTime.IsZero() || ins.Created == "" {
				b, _ := json.MarshalIndent(ins, "", "  ")
				t.Fatalf("inspect:\n%s", b)
			}
			b, _ := json.Marshal(ins)
			for _, key := range []string{`"Id":"sha256:`, `"RepoDigests":[]`, `"Parent":""`, `"Config":{`, `"Metadata":{"LastTagTime":`} {
				if !strings.Contains(string(b), key) {
					t.Errorf("inspect JSON lacks %s: %s", key, b)
				}
			}
			hist, err := s.History(img.ID.Encoded()[:8])
			if err != nil {
				t.Fatal(err)
			}
			if len(hist) != 1 || hist[0].ID != img.ID.String() || hist[0].Comment != "from a test" || hist[0].Size != img.Size {
				t.Fatalf("history %+v", hist)
			}
		})
	}
}

func TestImportSameContentTwice(t *testing.T) {
	s, root := newService(t)
	a := importImage(t, s, "x", "a")
	before := listing(t, root)
	b := importImage(t, s, "x", "b")
	// Different created times make different configs, but the layer is shared.
	if a.ChainIDs[0] != b.ChainIDs[0] || a.Layers[0].Digest != b.Layers[0].Digest {
		t.Fatalf("layers not shared: %v %v", a.Layers, b.Layers)
	}
	if n := len(entries(t, root+"/snapshots/layers")); n != 1 {
		t.Fatalf("%d layers, want 1 shared", n)
	}
	_ = before
}

func TestImportBadInput(t *testing.T) {
	s, root := newService(t)
	importImage(t, s, "keep", "keep") // something already there
	before := listing(t, root)
	rootfs := rootfsTar(t, "bad")
	for _, tc := range []struct {
		name, ref string
		input     []byte
		class     error
	}{
		{"empty", "x", nil, errdefs.ErrInvalidArgument},
		{"not a tar", "x", []byte(strings.Repeat("hello world ", 100)), errdefs.ErrInvalidArgument},
		{"truncated gzip", "x", gzipBytes(t, rootfs)[:200], errdefs.ErrInvalidArgument},
		{"bad ref", "Bad:Ref", rootfs, errdefs.ErrInvalidArgument},
		{"digest ref", "x@" + testDigest, rootfs, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Import(context.Background(), bytes.NewReader(tc.input), tc.ref, ImportOpts{})
			if err == nil {
				t.Fatal("import succeeded")
			}
			if !errors.Is(err, tc.class) {
				t.Errorf("error %q is not of class %v", err, tc.class)
			}
			if d := diffListing(before, listing(t, root)); d != "" {
				t.Fatalf("failed import changed the stores (%v):\n%s", err, d)
			}
			imgs, _ := s.List()
			if len(imgs) != 1 {
				t.Fatalf("%d images after a failed import", len(imgs))
			}
		})
	}
}
