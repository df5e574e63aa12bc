package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/errdefs"
)

// testImage is an image built in memory for archives: layers as plain tars.
type testImage struct {
	layers [][]byte
	config []byte
	tags   []string
}

func (ti testImage) id() digest.Digest { return digest.FromBytes(ti.config) }

func newTestImage(t testing.TB, tags []string, seeds ...string) testImage {
	t.Helper()
	ti := testImage{tags: tags}
	var diffIDs []digest.Digest
	var hist []v1.History
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range seeds {
		l := rootfsTar(t, s)
		ti.layers = append(ti.layers, l)
		diffIDs = append(diffIDs, digest.FromBytes(l))
		hist = append(hist, v1.History{Created: &created, CreatedBy: "/bin/sh -c #(nop) ADD " + s})
	}
	hist = append(hist, v1.History{Created: &created, CreatedBy: `/bin/sh -c #(nop)  CMD ["sh"]`, EmptyLayer: true})
	cfg := v1.Image{
		Created:  &created,
		Platform: v1.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   v1.ImageConfig{Cmd: []string{"sh"}, Labels: map[string]string{"seeds": strings.Join(seeds, ",")}},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: diffIDs},
		History:  hist,
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ti.config = b
	return ti
}

// legacyDockerArchive writes what docker save wrote before Docker 25:
// <v1id>/layer.tar, <v1id>/json, <v1id>/VERSION, <config hex>.json,
// then manifest.json and repositories last. A layer that occurs twice is
// a symlink to its first copy, as Docker writes it.
func legacyDockerArchive(t testing.TB, imgs ...testImage) []byte {
	t.Helper()
	b := newTarBuilder()
	var manifest []dockerManifestEntry
	written := map[digest.Digest]string{}
	for _, ti := range imgs {
		e := dockerManifestEntry{Config: ti.id().Encoded() + ".json", RepoTags: ti.tags}
		b.file(t, e.Config, ti.config)
		for i, l := range ti.layers {
			v1id := digest.FromString(fmt.Sprintf("%s %d", ti.id(), i)).Encoded()
			name := v1id + "/layer.tar"
			if first, ok := written[digest.FromBytes(l)]; ok {
				b.symlink(t, name, "../"+first)
			} else {
				b.file(t, name, l)
				written[digest.FromBytes(l)] = name
			}
			b.file(t, v1id+"/json", []byte(`{"id":"`+v1id+`"}`))
			b.file(t, v1id+"/VERSION", []byte("1.0"))
			e.Layers = append(e.Layers, name)
		}
		manifest = append(manifest, e)
	}
	mj, _ := json.Marshal(manifest)
	b.file(t, "manifest.json", mj)
	b.file(t, "repositories", []byte(`{}`))
	return b.bytes(t)
}

// ociLayoutArchive writes an OCI layout with gzip layers; index entries
// carry ref names as given (one entry per tag).
func ociLayoutArchive(t testing.TB, refName string, ti testImage) ([]byte, digest.Digest) {
	t.Helper()
	b := newTarBuilder()
	var layers []v1.Descriptor
	for _, l := range ti.layers {
		z := gzipBytes(t, l)
		d := digest.FromBytes(z)
		b.file(t, blobPath(d), z)
		layers = append(layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(z))})
	}
	b.file(t, blobPath(ti.id()), ti.config)
	m, _ := json.Marshal(v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: ti.id(), Size: int64(len(ti.config))}, Layers: layers})
	md := digest.FromBytes(m)
	b.file(t, blobPath(md), m)
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: md, Size: int64(len(m))}
	if refName != "" {
		desc.Annotations = map[string]string{v1.AnnotationRefName: refName}
	}
	idx, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []v1.Descriptor{desc}})
	b.file(t, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	b.file(t, "index.json", idx)
	return b.bytes(t), md
}

func load(t *testing.T, s *Service, archive []byte) []*Image {
	t.Helper()
	var out bytes.Buffer
	imgs, err := s.Load(context.Background(), bytes.NewReader(archive), &out)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Logf("load printed:\n%s", out.String())
	return imgs
}

func TestLoadLegacyDockerArchive(t *testing.T) {
	s, root := newService(t)
	a := newTestImage(t, []string{"busybox:latest", "busybox:1"}, "base", "top")
	b := newTestImage(t, []string{"localhost:5000/other:x"}, "base", "other") // shares the base layer
	var out bytes.Buffer
	imgs, err := s.Load(context.Background(), bytes.NewReader(legacyDockerArchive(t, a, b)), &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].ID != a.id() || imgs[1].ID != b.id() {
		t.Fatalf("loaded %v", imgs)
	}
	want := "Loaded image: busybox:latest\nLoaded image: busybox:1\nLoaded image: localhost:5000/other:x\n"
	if out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	got, err := s.Get("busybox:1")
	if err != nil || got.ID != a.id() {
		t.Fatalf("Get(busybox:1) = %v, %v", got, err)
	}
	if len(got.ChainIDs) != 2 || !s.Snapshots.Has(got.ChainIDs[1]) || got.ChainIDs[0] != got.DiffIDs[0] {
		t.Fatalf("chain IDs %v", got.ChainIDs)
	}
	if got.Layers[0].MediaType != v1.MediaTypeImageLayer || got.Layers[0].Digest != got.DiffIDs[0] {
		t.Fatalf("layer descriptor %+v: an uncompressed layer is stored as is", got.Layers[0])
	}
	if got.Size != layerSize(t, s, got.ChainIDs[0])+layerSize(t, s, got.ChainIDs[1]) {
		t.Errorf("size %d", got.Size)
	}
	// 3 distinct layers; blobs: 3 layers + 2 configs + 2 manifests (the
	// legacy json and VERSION members were dropped again).
	if n := len(entries(t, root+"/snapshots/layers")); n != 3 {
		t.Errorf("%d layers, want 3", n)
	}
	if n := len(entries(t, root+"/content/blobs/sha256")); n != 7 {
		t.Errorf("%d blobs, want 7: %v", n, entries(t, root+"/content/blobs/sha256"))
	}
	hist := got.History()
	if len(hist) != 3 || hist[0].ID != a.id().String() || hist[0].Size != 0 || hist[1].Size != got.LayerSizes[1] || hist[1].Size == 0 || hist[2].ID != "<missing>" {
		t.Errorf("history %+v", hist)
	}
	// Loading again changes nothing and moves no tag.
	before := listing(t, root)
	load(t, s, legacyDockerArchive(t, a, b))
	if d := diffListing(before, listing(t, root)); d != "" {
		t.Fatalf("second load changed the stores:\n%s", d)
	}
}

func TestLoadMovesTags(t *testing.T) {
	s, _ := newService(t)
	old := importImage(t, s, "old", "app:1")
	a := newTestImage(t, []string{"app:1"}, "new")
	var out bytes.Buffer
	if _, err := s.Load(context.Background(), bytes.NewReader(legacyDockerArchive(t, a)), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "renaming the old one with ID "+old.ID.String()) {
		t.Errorf("printed %q", out.String())
	}
	if got, _ := s.Get("app:1"); got == nil || got.ID != a.id() {
		t.Fatal("tag not moved to the loaded image")
	}
	if got, _ := s.Get(old.ID.String()); got == nil || len(got.RepoTags) != 0 {
		t.Fatal("old image should stay, untagged")
	}
}

func TestLoadOCILayout(t *testing.T) {
	for _, tc := range []struct {
		refName string
		tag     string // "" = untagged
	}{
		{"localhost/app:v2", "docker.io/library/app:v2"}, // hmm: localhost is a host only with a port or as the first component
		{"latest", ""},
		{"", ""},
	} {
		t.Run(tc.refName, func(t *testing.T) {
			s, _ := newService(t)
			ti := newTestImage(t, nil, "a", "b")
			archive, md := ociLayoutArchive(t, tc.refName, ti)
			imgs := load(t, s, archive)
			if len(imgs) != 1 || imgs[0].ID != ti.id() || imgs[0].ManifestDigest != md {
				t.Fatalf("loaded %+v", imgs[0])
			}
			img := imgs[0]
			if tc.refName == "localhost/app:v2" {
				if len(img.RepoTags) != 1 || img.RepoTags[0] != "localhost/app:v2" {
					t.Fatalf("tags %v", img.RepoTags)
				}
			} else if len(img.RepoTags) != 0 {
				t.Fatalf("tags %v, want none", img.RepoTags)
			}
			if img.Layers[0].MediaType != v1.MediaTypeImageLayerGzip || len(img.LayerSizes) != 2 || img.LayerSizes[0] != layerSize(t, s, img.ChainIDs[0]) {
				t.Fatalf("record %+v", img)
			}
			// Get by repository@manifest-digest.
			if tc.refName == "localhost/app:v2" {
				if got, err := s.Get("localhost/app@" + md.String()); err != nil || got.ID != ti.id() {
					t.Fatalf("Get by digest: %v, %v", got, err)
				}
			}
		})
	}
}

func TestLoadOCIIndexPicksPlatform(t *testing.T) {
	s, _ := newService(t)
	host := newTestImage(t, nil, "host")
	archive, md := ociLayoutArchive(t, "", host)
	// Rewrite: index.json -> nested index with two platforms; only the
	// host's manifest is present, the other is never read.
	other := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 10, Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}
	if goruntime.GOARCH == "s390x" {
		other.Platform.Architecture = "riscv64"
	}
	size := int64(0)
	tr := tar.NewReader(bytes.NewReader(archive))
	b := newTarBuilder()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		data, _ := io.ReadAll(tr)
		if hdr.Name == blobPath(md) {
			size = int64(len(data))
		}
		if hdr.Name == "index.json" {
			continue
		}
		b.file(t, hdr.Name, data)
	}
	child, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{
		other,
		{MediaType: v1.MediaTypeImageManifest, Digest: md, Size: size, Platform: &v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}},
	}})
	cd := digest.FromBytes(child)
	b.file(t, blobPath(cd), child)
	idx, _ := json.Marshal(v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []v1.Descriptor{
		{MediaType: v1.MediaTypeImageIndex, Digest: cd, Size: int64(len(child)), Annotations: map[string]string{annotationImageName: "docker.io/library/multi:1"}},
	}})
	b.file(t, "index.json", idx)
	imgs := load(t, s, b.bytes(t))
	if len(imgs) != 1 || imgs[0].ID != host.id() || imgs[0].IndexDigest != cd || imgs[0].ManifestDigest != md {
		t.Fatalf("loaded %+v", imgs)
	}
	if got, err := s.Get("multi@" + cd.String()); err != nil || got.ID != host.id() {
		t.Fatalf("Get by index digest: %v %v", got, err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, format := range []string{FormatDockerArchive, FormatOCIArchive} {
		t.Run(format, func(t *testing.T) {
			src, _ := newService(t)
			imported := importImage(t, src, "imp", "localhost:5000/imp:1")
			if err := src.Tag(imported.ID.String(), "localhost:5000/imp:2"); err != nil {
				t.Fatal(err)
			}
			ti := newTestImage(t, []string{"busybox:latest"}, "l1", "l2", "l3")
			load(t, src, legacyDockerArchive(t, ti))
			untagged := importImage(t, src, "untagged", "")

			var buf bytes.Buffer
			refs := []string{"localhost:5000/imp", "busybox", untagged.ID.Encoded()[:12]}
			if err := src.Save(context.Background(), &buf, refs, format); err != nil {
				t.Fatal(err)
			}
			names := tarNames(t, buf.Bytes())
			for _, n := range []string{"index.json", "oci-layout", blobPath(imported.ID)} {
				if !slices.Contains(names, n) {
					t.Errorf("archive lacks %s: %v", n, names)
				}
			}
			if format == FormatDockerArchive && !slices.Contains(names, "manifest.json") {
				t.Errorf("docker-archive lacks manifest.json")
			}
			if format == FormatOCIArchive && slices.Contains(names, "manifest.json") {
				t.Errorf("oci-archive has manifest.json")
			}

			dst, _ := newService(t)
			imgs := load(t, dst, buf.Bytes())
			if len(imgs) != 3 {
				t.Fatalf("loaded %d images", len(imgs))
			}
			for _, want := range []*Image{imported, mustServiceGet(t, src, "busybox"), untagged} {
				got, err := dst.Get(want.ID.String())
				if err != nil {
					t.Fatalf("image %s lost in the round trip: %v", want.ID, err)
				}
				srcRec := mustServiceGet(t, src, want.ID.String())
				if !slices.Equal(got.RepoTags, srcRec.RepoTags) {
					t.Errorf("tags %v, want %v", got.RepoTags, srcRec.RepoTags)
				}
				if got.ManifestDigest != srcRec.ManifestDigest || !slices.Equal(got.ChainIDs, srcRec.ChainIDs) || got.Size != srcRec.Size {
					t.Errorf("record differs:\n got %+v\nwant %+v", got, srcRec)
				}
			}
			// Saving the same images twice gives the same bytes.
			var again bytes.Buffer
			if err := src.Save(context.Background(), &again, refs, format); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Error("two saves differ")
			}
		})
	}
}

func TestSaveErrors(t *testing.T) {
	s, _ := newService(t)
	importImage(t, s, "a", "a")
	for _, tc := range []struct {
		refs   []string
		format string
		class  error
	}{
		{[]string{"nosuch"}, "", errdefs.ErrNotFound},
		{[]string{"a"}, "zip", errdefs.ErrInvalidArgument},
		{nil, "", errdefs.ErrInvalidArgument},
		{[]string{"Bad"}, "", errdefs.ErrInvalidArgument},
	} {
		var buf bytes.Buffer
		err := s.Save(context.Background(), &buf, tc.refs, tc.format)
		if !errors.Is(err, tc.class) {
			t.Errorf("Save(%v, %q) = %v, want %v", tc.refs, tc.format, err, tc.class)
		}
	}
}

func mustServiceGet(t *testing.T, s *Service, ref string) *Image {
	t.Helper()
	img, err := s.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hdr.Name)
	}
}

// TestLoadBadInput feeds broken archives: each must fail with one clear
// error and leave content/, snapshots/ and the records exactly as before,
// including a layer the broken archive shares with an existing image.
func TestLoadBadInput(t *testing.T) {
	s, root := newService(t)
	keep := newTestImage(t, []string{"keep:1", "taken:1"}, "shared")
	load(t, s, legacyDockerArchive(t, keep))
	before := listing(t, root)
	beforeImgs, _ := s.List()

	good := newTestImage(t, []string{"new:1"}, "shared", "fresh1", "fresh2")
	goodArchive := legacyDockerArchive(t, good)

	// Variants of a good archive.
	withManifest := func(m string) []byte {
		b := newTarBuilder()
		b.file(t, good.id().Encoded()+".json", good.config)
		for i, l := range good.layers {
			b.file(t, fmt.Sprintf("l%d.tar", i), l)
		}
		b.file(t, "manifest.json", []byte(m))
		return b.bytes(t)
	}
	layersJSON := `["l0.tar","l1.tar","l2.tar"]`
	cfgName := good.id().Encoded() + ".json"
	badLayer := func() []byte {
		b := newTarBuilder()
		b.file(t, cfgName, good.config)
		b.file(t, "l0.tar", good.layers[0])
		b.file(t, "l1.tar", good.layers[1])
		b.file(t, "l2.tar", rootfsTar(t, "not what the config says"))
		b.file(t, "manifest.json", []byte(`[{"Config":"`+cfgName+`","RepoTags":["new:1"],"Layers":`+layersJSON+`}]`))
		return b.bytes(t)
	}
	garbageLayer := func() []byte {
		garbage := []byte(strings.Repeat("not a tar ", 1000))
		ti := newTestImage(t, []string{"new:1"}, "shared")
		var c v1.Image
		json.Unmarshal(ti.config, &c)
		c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, digest.FromBytes(garbage))
		cb, _ := json.Marshal(c)
		b := newTarBuilder()
		b.file(t, "c.json", cb)
		b.file(t, "l0.tar", ti.layers[0])
		b.file(t, "l1.tar", garbage)
		b.file(t, "manifest.json", []byte(`[{"Config":"c.json","RepoTags":["new:1"],"Layers":["l0.tar","l1.tar"]}]`))
		return b.bytes(t)
	}
	ociBlobMismatch := func() []byte {
		b := newTarBuilder()
		b.file(t, blobPath(digest.FromString("something else")), []byte("this is not it"))
		b.file(t, "index.json", []byte(`{"schemaVersion":2,"manifests":[]}`))
		return b.bytes(t)
	}
	ociMissingManifest := func() []byte {
		archive, md := ociLayoutArchive(t, "x:1", good)
		b := newTarBuilder()
		tr := tar.NewReader(bytes.NewReader(archive))
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			data, _ := io.ReadAll(tr)
			if hdr.Name != blobPath(md) {
				b.file(t, hdr.Name, data)
			}
		}
		return b.bytes(t)
	}
	ociMissingLayer := func() []byte {
		archive, _ := ociLayoutArchive(t, "x:1", good)
		b := newTarBuilder()
		tr := tar.NewReader(bytes.NewReader(archive))
		skipped := false
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			data, _ := io.ReadAll(tr)
			if hdr.Name == blobPath(digest.FromBytes(gzipBytes(t, good.layers[2]))) {
				skipped = true // the last layer, which no image in the store has
				continue
			}
			b.file(t, hdr.Name, data)
		}
		if !skipped {
			t.Fatal("test setup: layer not found")
		}
		return b.bytes(t)
	}

	for _, tc := range []struct {
		name    string
		archive []byte
		says    string // the error must contain this
	}{
		{"empty input", nil, "empty"},
		{"not a tar", []byte(strings.Repeat("x", 3000)), "tar"},
		{"truncated", goodArchive[:len(goodArchive)/2], "truncated"},
		{"truncated gzip", func() []byte { z := gzipBytes(t, goodArchive); return z[:len(z)/2] }(), "truncated"},
		{"neither layout", newTarBuilder().file(t, "hello", []byte("x")).bytes(t), "neither manifest.json"},
		{"manifest.json not JSON", withManifest(`[{"Config":`), "manifest.json is not valid JSON"},
		{"manifest.json empty list", withManifest(`[]`), "lists no images"},
		{"missing config", withManifest(`[{"Config":"nope.json","RepoTags":["new:1"],"Layers":` + layersJSON + `}]`), `"nope.json", which is not a file`},
		{"missing layer", withManifest(`[{"Config":"` + cfgName + `","RepoTags":["new:1"],"Layers":["l0.tar","l1.tar","l9.tar"]}]`), `"l9.tar", which is not a file`},
		{"layer count mismatch", withManifest(`[{"Config":"` + cfgName + `","RepoTags":["new:1"],"Layers":["l0.tar","l1.tar"]}]`), "lists 3 layers"},
		{"config not JSON", withManifest(`[{"Config":"l0.tar","RepoTags":["new:1"],"Layers":[]}]`), "not a valid image config"},
		{"layer does not match diffID", badLayer(), "diff"},
		{"layer is not a tar", garbageLayer(), "layer"},
		{"invalid tag", withManifest(`[{"Config":"` + cfgName + `","RepoTags":["New:1"],"Layers":` + layersJSON + `}]`), "must be lowercase"},
		{"digest as tag", withManifest(`[{"Config":"` + cfgName + `","RepoTags":["new@` + testDigest + `"],"Layers":` + layersJSON + `}]`), "cannot contain a digest"},
		{"duplicate tag", withManifest(`[{"Config":"` + cfgName + `","RepoTags":["taken:2"],"Layers":` + layersJSON + `},{"Config":"` + keep.id().Encoded() + `.json","RepoTags":["taken:2"],"Layers":["l0.tar"]}]`), "which is not a file"},
		{"blob digest mismatch", ociBlobMismatch(), "does not match its digest"},
		{"oci index not JSON", newTarBuilder().file(t, "index.json", []byte("{")).bytes(t), "index.json is not valid JSON"},
		{"oci missing manifest", ociMissingManifest(), "missing from the archive"},
		{"oci missing layer", ociMissingLayer(), "missing from the archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			imgs, err := s.Load(context.Background(), bytes.NewReader(tc.archive), &out)
			if err == nil {
				t.Fatalf("load succeeded: %v", imgs)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error is more than one line: %q", err)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q is not of class invalid argument", err)
			}
			if out.Len() > 0 {
				t.Errorf("failed load printed %q", out.String())
			}
			if d := diffListing(before, listing(t, root)); d != "" {
				t.Fatalf("failed load (%v) changed the stores:\n%s", err, d)
			}
			after, _ := s.List()
			if len(after) != len(beforeImgs) || !slices.Equal(after[0].RepoTags, beforeImgs[0].RepoTags) {
				t.Fatalf("records changed: %v", after)
			}
		})
	}
	// The duplicate-tag case above fails for a missing file first; a
	// clean duplicate needs two complete images.
	t.Run("duplicate tag, complete", func(t *testing.T) {
		x := newTestImage(t, []string{"dup:1"}, "x")
		y := newTestImage(t, []string{"dup:1"}, "y")
		_, err := s.Load(context.Background(), bytes.NewReader(legacyDockerArchive(t, x, y)), nil)
		if err == nil || !strings.Contains(err.Error(), "gives the name dup:1 to two images") || !errdefs.IsInvalidArgument(err) {
			t.Fatalf("err = %v", err)
		}
		if d := diffListing(before, listing(t, root)); d != "" {
			t.Fatalf("failed load changed the stores:\n%s", d)
		}
	})
	// And the good archive loads, sharing the existing layer.
	load(t, s, goodArchive)
}
