package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The test binary doubles as a `berth registry gc` process, so that
// TestGCWhilePushing collects from another process than the one serving,
// as the CLI does beside `berth registry serve`. It is an init function
// because TestMain (crash_test.go) already doubles as a registry process.
func init() {
	root := os.Getenv("BERTH_REGISTRY_TEST_GC")
	if root == "" {
		return
	}
	grace, err1 := time.ParseDuration(os.Getenv("BERTH_REGISTRY_TEST_GC_GRACE"))
	expiry, err2 := time.ParseDuration(os.Getenv("BERTH_REGISTRY_TEST_GC_UPLOADS"))
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "gc process:", err)
		os.Exit(2)
	}
	store, err := Open(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gc process:", err)
		os.Exit(2)
	}
	// A pause between mark and sweep stands for the mark of a large
	// registry, which takes seconds: writes land in between.
	pause, _ := time.ParseDuration(os.Getenv("BERTH_REGISTRY_TEST_GC_PAUSE"))
	rep, err := store.CollectGarbage(context.Background(), WithGracePeriod(grace), WithUntaggedDeletion(true), WithUploadPurge(expiry),
		func(c *gcConfig) { c.afterMark = func() { time.Sleep(pause) } })
	json.NewEncoder(os.Stdout).Encode(rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gc process:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// gcImage pushes a config of its own and the given layers into repo and
// puts an OCI image manifest over them, by tag, or by digest when tag is
// "". It returns the manifest's digest and the blobs it names.
func (tr *testRegistry) gcImage(repo, tag string, layers ...[]byte) (digest.Digest, []digest.Digest) {
	tr.t.Helper()
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"nonce":%q}`, randomHex(8)))
	cd := tr.pushBlob(repo, cfg)
	blobs := []digest.Digest{cd}
	var descs []ocispec.Descriptor
	for _, l := range layers {
		ld := tr.pushBlob(repo, l)
		blobs = append(blobs, ld)
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: ld, Size: int64(len(l))})
	}
	d := tr.gcManifest(repo, tag, map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageManifest,
		"config":        ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
		"layers":        descs,
	})
	return d, blobs
}

// gcManifest puts m into repo, by tag or (tag "") by digest.
func (tr *testRegistry) gcManifest(repo, tag string, m map[string]any) digest.Digest {
	tr.t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		tr.t.Fatal(err)
	}
	d := digest.FromBytes(data)
	ref := tag
	if ref == "" {
		ref = string(d)
	}
	tr.do("PUT", "/v2/"+repo+"/manifests/"+ref, data, "Content-Type", m["mediaType"].(string)).want(tr.t, 201)
	return d
}

// gcIndex puts an OCI index over manifests of repo.
func (tr *testRegistry) gcIndex(repo, tag string, children ...digest.Digest) digest.Digest {
	tr.t.Helper()
	var descs []ocispec.Descriptor
	for _, c := range children {
		size, err := tr.store.StatBlob(c)
		if err != nil {
			tr.t.Fatal(err)
		}
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: c, Size: size})
	}
	return tr.gcManifest(repo, tag, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": descs})
}

// gcReferrer puts an untagged artifact whose subject is manifest subject.
func (tr *testRegistry) gcReferrer(repo string, subject digest.Digest) digest.Digest {
	tr.t.Helper()
	size, err := tr.store.StatBlob(subject)
	if err != nil {
		tr.t.Fatal(err)
	}
	empty := []byte("{}")
	ed := tr.pushBlob(repo, empty)
	return tr.gcManifest(repo, "", map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageManifest,
		"artifactType":  "application/vnd.example.signature",
		"config":        ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ed, Size: 2},
		"layers":        []ocispec.Descriptor{{MediaType: "application/vnd.example.sig", Digest: tr.pushBlob(repo, randomBytes(tr.t, 100)), Size: 100}},
		"subject":       ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: size},
	})
}

// gcPull fetches manifest ref of repo and, recursively, everything it
// names, checking every digest; it returns what it fetched.
func (tr *testRegistry) gcPull(repo, ref string) ([]digest.Digest, error) {
	get := func(kind, ref string) ([]byte, error) {
		resp, err := http.Get(tr.url + "/v2/" + repo + "/" + kind + "/" + ref)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s/%s/%s: %d %s", repo, kind, ref, resp.StatusCode, b)
		}
		return b, nil
	}
	data, err := get("manifests", ref)
	if err != nil {
		return nil, err
	}
	d := digest.FromBytes(data)
	if strings.Contains(ref, ":") && digest.Digest(ref) != d {
		return nil, fmt.Errorf("manifest %s has digest %s", ref, d)
	}
	var m rawManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	got := []digest.Digest{d}
	var blobs []ocispec.Descriptor
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, b := range append(blobs, m.Layers...) {
		bd, err := get("blobs", string(b.Digest))
		if err != nil {
			return nil, err
		}
		if b.Digest.Algorithm().FromBytes(bd) != b.Digest {
			return nil, fmt.Errorf("blob %s of %s does not match its digest", b.Digest, ref)
		}
		got = append(got, b.Digest)
	}
	for _, c := range m.Manifests {
		sub, err := tr.gcPull(repo, string(c.Digest))
		if err != nil {
			return nil, err
		}
		got = append(got, sub...)
	}
	return got, nil
}

// gcAge moves every file and directory under root back in time by d, as
// if d had passed with nothing happening.
func gcAge(t *testing.T, root string, d time.Duration) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		old := fi.ModTime().Add(-d)
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func gcBlobs(t *testing.T, s *Store) map[digest.Digest]int64 {
	t.Helper()
	out := map[digest.Digest]int64{}
	if err := s.WalkBlobs(func(d digest.Digest, size int64) error { out[d] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func gcCollect(t *testing.T, s *Store, opts ...GCOption) (GCReport, []GCItem) {
	t.Helper()
	var items []GCItem
	opts = append(opts, WithGCReport(func(it GCItem) { items = append(items, it) }))
	rep, err := s.CollectGarbage(context.Background(), opts...)
	if err != nil {
		t.Fatalf("collect garbage: %v", err)
	}
	return rep, items
}

// gcTree is every path under root with its size and mtime.
func gcTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err == nil {
			out[p] = fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
		}
		return nil
	})
	return out
}

func sumSizes(sizes map[digest.Digest]int64, ds ...digest.Digest) int64 {
	var n int64
	for _, d := range ds {
		n += sizes[d]
	}
	return n
}

// Blobs and links no manifest names go, with the exact bytes counted;
// what a kept manifest names stays, shared or not, and still pulls.
func TestGCSweepsWhatNothingNames(t *testing.T) {
	tr := newTestRegistry(t)
	shared := randomBytes(t, 5000)
	a, aBlobs := tr.gcImage("a", "v1", shared, randomBytes(t, 3000))
	b, bBlobs := tr.gcImage("a", "v2", shared, randomBytes(t, 4000))
	_, cBlobs := tr.gcImage("b", "v1", shared, randomBytes(t, 2000))
	orphan := tr.pushBlob("a", randomBytes(t, 7000))
	tr.do("DELETE", "/v2/a/manifests/"+string(b), nil).want(t, 202)
	before := gcBlobs(t, tr.store)
	gcAge(t, tr.store.Root(), 2*time.Hour)

	rep, items := gcCollect(t, tr.store)
	// b's manifest, its config and its own layer, and the orphan.
	gone := []digest.Digest{b, bBlobs[0], bBlobs[2], orphan}
	if rep.DeletedBlobs != 4 || rep.DeletedBytes != sumSizes(before, gone...) {
		t.Errorf("deleted %d blobs, %d bytes; want 4, %d", rep.DeletedBlobs, rep.DeletedBytes, sumSizes(before, gone...))
	}
	if rep.DeletedLinks != 3 || rep.DeletedManifests != 0 || rep.DeletedRepositories != 0 {
		t.Errorf("report %+v: want 3 links (b's config and layer, the orphan) and nothing else", rep)
	}
	// a: manifest, config, shared, own layer; b: manifest, config, own layer.
	if rep.Blobs != 7 || rep.Manifests != 2 || rep.Repositories != 2 {
		t.Errorf("marked %d blobs, %d manifests in %d repositories; want 7, 2, 2", rep.Blobs, rep.Manifests, rep.Repositories)
	}
	after := gcBlobs(t, tr.store)
	for _, d := range gone {
		if _, ok := after[d]; ok {
			t.Errorf("blob %s is still stored", d)
		}
	}
	for _, d := range append(append(aBlobs, cBlobs...), a) {
		if _, ok := after[d]; !ok {
			t.Errorf("blob %s was swept, but a kept manifest names it", d)
		}
	}
	var blobItems int
	for _, it := range items {
		if it.Kind == GCBlob {
			blobItems++
		}
	}
	if blobItems != 4 {
		t.Errorf("%d blob items reported, want 4: %+v", blobItems, items)
	}
	if _, err := tr.gcPull("a", "v1"); err != nil {
		t.Error(err)
	}
	if _, err := tr.gcPull("b", "v1"); err != nil {
		t.Error(err)
	}
	tr.do("HEAD", "/v2/a/blobs/"+string(orphan), nil).want(t, 404)
	tr.do("HEAD", "/v2/a/blobs/"+string(bBlobs[2]), nil).want(t, 404)

	again, _ := gcCollect(t, tr.store)
	if again.DeletedBlobs+again.DeletedLinks+again.DeletedManifests+again.DeletedRepositories != 0 {
		t.Errorf("second collection deleted %+v", again)
	}
}

// A dry run reports exactly what the real run then deletes, and touches
// nothing: not a byte, not an mtime.
func TestGCDryRun(t *testing.T) {
	tr := newTestRegistry(t)
	tr.gcImage("dry", "keep", randomBytes(t, 1000))
	gone, _ := tr.gcImage("dry", "", randomBytes(t, 1000))
	tr.pushBlob("dry", randomBytes(t, 500))
	tr.gcImage("empty", "x", randomBytes(t, 100))
	tr.do("DELETE", "/v2/empty/manifests/x", nil).want(t, 202)
	up := tr.do("POST", "/v2/dry/blobs/uploads/", nil).want(t, 202).Header.Get("Location")
	tr.do("PATCH", up, randomBytes(t, 300)).want(t, 202)
	gcAge(t, tr.store.Root(), 48*time.Hour)
	snapshot := gcTree(t, tr.store.Root())

	opts := []GCOption{WithUntaggedDeletion(true), WithUploadPurge(24 * time.Hour)}
	dry, dryItems := gcCollect(t, tr.store, append(opts, WithDryRun(true))...)
	// Deleting a tag leaves its manifest, untagged: two manifests go.
	if !dry.DryRun || dry.DeletedManifests != 2 || dry.DeletedRepositories != 1 || dry.DeletedUploads != 1 || dry.UploadBytes != 300 {
		t.Errorf("dry run %+v: want 2 manifests (%s and empty's), 1 repository, 1 upload of 300 bytes", dry, gone)
	}
	if after := gcTree(t, tr.store.Root()); fmt.Sprint(after) != fmt.Sprint(snapshot) {
		for p, v := range snapshot {
			if after[p] != v {
				t.Errorf("dry run changed %s: %q -> %q", p, v, after[p])
			}
		}
		for p := range after {
			if _, ok := snapshot[p]; !ok {
				t.Errorf("dry run created %s", p)
			}
		}
	}
	real, realItems := gcCollect(t, tr.store, opts...)
	real.DryRun = false
	dry.DryRun = false
	if dry != real {
		t.Errorf("dry run said\n%+v\nthe collection did\n%+v", dry, real)
	}
	if fmt.Sprint(dryItems) != fmt.Sprint(realItems) {
		t.Errorf("dry run listed\n%v\nthe collection deleted\n%v", dryItems, realItems)
	}
}

// Untagged manifests stay unless asked; then they go, but not the
// children of a tagged index nor the referrers of a kept manifest, nor
// one pushed within the grace period. A referrer of a deleted manifest
// goes with it, and so does its referrers entry.
func TestGCUntagged(t *testing.T) {
	tr := newTestRegistry(t)
	tagged, _ := tr.gcImage("u", "v1", randomBytes(t, 1000))
	untagged, uBlobs := tr.gcImage("u", "", randomBytes(t, 1000))
	c1, _ := tr.gcImage("u", "", randomBytes(t, 1000))
	c2, _ := tr.gcImage("u", "", randomBytes(t, 1000))
	idx := tr.gcIndex("u", "multi", c1, c2)
	sig := tr.gcReferrer("u", tagged)
	orphanSig := tr.gcReferrer("u", untagged)
	gcAge(t, tr.store.Root(), 2*time.Hour)
	young, _ := tr.gcImage("u", "", randomBytes(t, 1000))

	rep, _ := gcCollect(t, tr.store)
	if rep.DeletedManifests != 0 || rep.DeletedBlobs != 0 || rep.DeletedLinks != 0 {
		t.Fatalf("without untagged deletion: %+v", rep)
	}
	rep, items := gcCollect(t, tr.store, WithUntaggedDeletion(true))
	var manifests []string
	for _, it := range items {
		if it.Kind == GCManifest {
			manifests = append(manifests, it.Repository+"@"+string(it.Digest))
		}
	}
	sort.Strings(manifests)
	want := []string{"u@" + string(untagged), "u@" + string(orphanSig)}
	sort.Strings(want)
	if fmt.Sprint(manifests) != fmt.Sprint(want) {
		t.Errorf("deleted manifests %v, want %v", manifests, want)
	}
	for _, d := range []digest.Digest{tagged, c1, c2, idx, sig, young} {
		if _, _, err := tr.store.StatManifest("u", d); err != nil {
			t.Errorf("manifest %s: %v", d, err)
		}
	}
	for _, d := range append(uBlobs, untagged, orphanSig) {
		if _, err := tr.store.StatBlob(d); !errdefs.IsNotFound(err) {
			t.Errorf("blob %s of the untagged manifest: %v, want swept", d, err)
		}
	}
	if _, err := tr.gcPull("u", "multi"); err != nil {
		t.Error(err)
	}
	refs, err := tr.store.Referrers("u", tagged)
	if err != nil || len(refs) != 1 || refs[0].Digest != sig {
		t.Errorf("referrers of the tagged image: %v %v", refs, err)
	}
	dir, _ := tr.store.referrersDir("u", untagged)
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("referrers entry of the deleted manifest: %v", err)
	}
}

// A blob two repositories use stays while either does; each
// repository's link goes with its last manifest, and a repository left
// empty goes, with directories it leaves empty, but not a nested one
// still in use.
func TestGCSharedBlobsAndEmptyRepos(t *testing.T) {
	tr := newTestRegistry(t)
	layer := randomBytes(t, 3000)
	m1, blobs := tr.gcImage("r1", "v1", layer)
	x := blobs[1]
	tr.do("POST", "/v2/r2/blobs/uploads/?mount="+string(x)+"&from=r1", nil).want(t, 201)
	m2, _ := tr.gcImage("r2", "v1", layer)
	team, _ := tr.gcImage("team", "v1", randomBytes(t, 100))
	tr.gcImage("team/app", "v1", layer)
	tr.do("DELETE", "/v2/r1/manifests/"+string(m1), nil).want(t, 202)
	tr.do("DELETE", "/v2/team/manifests/"+string(team), nil).want(t, 202)
	gcAge(t, tr.store.Root(), 2*time.Hour)

	rep, _ := gcCollect(t, tr.store)
	if _, err := tr.store.StatBlob(x); err != nil {
		t.Fatalf("shared blob swept while r2 uses it: %v", err)
	}
	if _, err := tr.store.StatRepoBlob("r1", x); !errdefs.IsNotFound(err) {
		t.Errorf("r1's link to the shared blob: %v, want gone", err)
	}
	if rep.DeletedRepositories != 2 {
		t.Errorf("deleted %d repositories, want 2 (r1, team)", rep.DeletedRepositories)
	}
	if names, _ := tr.store.Repositories(); fmt.Sprint(names) != "[r2 team/app]" {
		t.Errorf("repositories %v, want [r2 team/app]", names)
	}
	if _, err := tr.gcPull("team/app", "v1"); err != nil {
		t.Error(err)
	}

	tr.do("DELETE", "/v2/r2/manifests/"+string(m2), nil).want(t, 202)
	tr.do("DELETE", "/v2/team/app/manifests/v1", nil).want(t, 202)
	gcAge(t, tr.store.Root(), 2*time.Hour)
	// Deleting a tag leaves an untagged manifest, which only untagged
	// deletion removes.
	gcCollect(t, tr.store, WithUntaggedDeletion(true))
	if _, err := tr.store.StatBlob(x); !errdefs.IsNotFound(err) {
		t.Errorf("shared blob after its last user went: %v", err)
	}
	if left := gcBlobs(t, tr.store); len(left) != 0 {
		t.Errorf("blobs left: %v", left)
	}
	if entries, _ := os.ReadDir(filepath.Join(tr.store.Root(), reposDir)); len(entries) != 0 {
		t.Errorf("repositories/ still holds %v", entries)
	}
}

// Unreferenced content younger than the grace period is kept (it may be
// a push in progress), and goes once older.
func TestGCGracePeriod(t *testing.T) {
	tr := newTestRegistry(t)
	d := tr.pushBlob("g", randomBytes(t, 1234))
	rep, _ := gcCollect(t, tr.store, WithGracePeriod(time.Hour))
	if rep.DeletedBlobs != 0 || rep.YoungBlobs != 1 || rep.YoungBytes != 1234 {
		t.Fatalf("young blob: %+v", rep)
	}
	gcAge(t, tr.store.Root(), 61*time.Minute)
	rep, _ = gcCollect(t, tr.store, WithGracePeriod(time.Hour))
	if rep.DeletedBlobs != 1 || rep.DeletedLinks != 1 {
		t.Fatalf("old blob: %+v", rep)
	}
	if _, err := tr.store.StatBlob(d); !errdefs.IsNotFound(err) {
		t.Fatalf("blob %s: %v", d, err)
	}
	if _, err := tr.store.CollectGarbage(context.Background(), WithGracePeriod(-time.Second)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("negative grace period: %v", err)
	}
}

// The race the read refresh is for: a client HEADs a blob nothing names
// any more, is told it exists, skips the upload, and pushes a manifest
// naming it. A collection between the two must not sweep it. The same
// for a manifest an index is about to name.
func TestGCReadRefresh(t *testing.T) {
	tr := newTestRegistry(t)
	layer, other := randomBytes(t, 2000), randomBytes(t, 2000)
	old, blobs := tr.gcImage("h", "v1", layer, other)
	child, _ := tr.gcImage("h", "", randomBytes(t, 100))
	tr.do("DELETE", "/v2/h/manifests/"+string(old), nil).want(t, 202)
	gcAge(t, tr.store.Root(), 2*time.Hour)

	tr.do("HEAD", "/v2/h/blobs/"+string(blobs[1]), nil).want(t, 200)
	tr.do("HEAD", "/v2/h/manifests/"+string(child), nil).want(t, 200)
	gcCollect(t, tr.store, WithUntaggedDeletion(true))
	if _, err := tr.store.StatRepoBlob("h", blobs[1]); err != nil {
		t.Fatalf("HEAD then collect: %v", err)
	}
	if _, err := tr.store.StatRepoBlob("h", blobs[2]); !errdefs.IsNotFound(err) {
		t.Errorf("the layer nobody asked for: %v, want swept", err)
	}
	// The client goes on with what HEAD told it.
	cfg := tr.pushBlob("h", []byte(`{"os":"linux"}`))
	tr.gcManifest("h", "v2", map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
		"config": ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfg, Size: 14},
		"layers": []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: blobs[1], Size: 2000}},
	})
	tr.gcIndex("h", "idx", child)
	for _, ref := range []string{"v2", "idx"} {
		if _, err := tr.gcPull("h", ref); err != nil {
			t.Error(err)
		}
	}
}

// Writes between the mark and the sweep: a manifest PUT naming a blob the
// mark found unreferenced, a tag put on an old untagged index (whose
// child's layers nothing touches), a tag put on an old manifest with a
// referrer. The sweep finds them in use and keeps them, and everything
// below them.
func TestGCWritesAfterMark(t *testing.T) {
	tr := newTestRegistry(t)
	layer := randomBytes(t, 2000)
	gone, blobs := tr.gcImage("w", "", layer)
	_ = gone
	child, childBlobs := tr.gcImage("w", "", randomBytes(t, 500))
	idx := tr.gcIndex("w", "", child)
	subject, _ := tr.gcImage("w", "", randomBytes(t, 500))
	sig := tr.gcReferrer("w", subject)
	tr.do("DELETE", "/v2/w/manifests/"+string(gone), nil).want(t, 202)
	gcAge(t, tr.store.Root(), 2*time.Hour)
	idxBytes, _ := os.ReadFile(filepath.Join(tr.store.Root(), blobsDir, "sha256", idx.Encoded()[:2], idx.Encoded()))
	subjBytes, _ := os.ReadFile(filepath.Join(tr.store.Root(), blobsDir, "sha256", subject.Encoded()[:2], subject.Encoded()))

	var marked bool
	rep, _ := gcCollect(t, tr.store, WithUntaggedDeletion(true), func(c *gcConfig) {
		c.afterMark = func() {
			marked = true
			// No HEAD first: the client remembers it pushed that layer.
			cfg := tr.pushBlob("w", []byte(`{"os":"linux"}`))
			tr.gcManifest("w", "blind", map[string]any{
				"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
				"config": ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfg, Size: 14},
				"layers": []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: blobs[1], Size: 2000}},
			})
			tr.do("PUT", "/v2/w/manifests/idx", idxBytes, "Content-Type", ocispec.MediaTypeImageIndex).want(t, 201)
			tr.do("PUT", "/v2/w/manifests/subject", subjBytes, "Content-Type", ocispec.MediaTypeImageManifest).want(t, 201)
		}
	})
	if !marked {
		t.Fatal("the hook did not run")
	}
	if rep.InUse == 0 {
		t.Errorf("report %+v: nothing was found in use again", rep)
	}
	for _, ref := range []string{"blind", "idx", "subject"} {
		if _, err := tr.gcPull("w", ref); err != nil {
			t.Error(err)
		}
	}
	for _, d := range childBlobs {
		if _, err := tr.store.StatRepoBlob("w", d); err != nil {
			t.Errorf("layer of the index's child: %v", err)
		}
	}
	if refs, err := tr.store.Referrers("w", subject); err != nil || len(refs) != 1 || refs[0].Digest != sig {
		t.Errorf("referrers of the re-tagged manifest: %v %v", refs, err)
	}
	if _, err := tr.store.StatBlob(gone); !errdefs.IsNotFound(err) {
		t.Errorf("the deleted manifest's bytes: %v, want swept", err)
	}
}

// While a sweep batch holds the lock, a manifest PUT waits (and then
// succeeds or fails cleanly); pulls go on.
func TestGCSweepHoldsWriters(t *testing.T) {
	tr := newTestRegistry(t)
	live, _ := tr.gcImage("s", "v1", randomBytes(t, 100))
	for i := 0; i < 5; i++ {
		tr.pushBlob("s", randomBytes(t, 100))
	}
	gcAge(t, tr.store.Root(), 2*time.Hour)
	fresh, freshBlobs := tr.gcImage("s", "fresh", randomBytes(t, 100))
	manifest, _ := os.ReadFile(filepath.Join(tr.store.Root(), blobsDir, "sha256", fresh.Encoded()[:2], fresh.Encoded()))

	batches := 0
	gcCollect(t, tr.store, func(c *gcConfig) {
		c.inBatch = func() {
			batches++
			if batches > 1 {
				return
			}
			done := make(chan int, 1)
			go func() {
				req, _ := http.NewRequest("PUT", tr.url+"/v2/s/manifests/again", strings.NewReader(string(manifest)))
				req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			// A pull of something fresh needs no lock.
			resp, err := http.Get(tr.url + "/v2/s/blobs/" + string(freshBlobs[1]))
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("pull during a sweep batch: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
			select {
			case code := <-done:
				t.Errorf("manifest PUT finished (%d) while the sweep held the lock", code)
			case <-time.After(300 * time.Millisecond):
			}
			go func() {
				if code := <-done; code != 201 {
					t.Errorf("manifest PUT after the batch: %d", code)
				}
			}()
		}
	})
	if batches == 0 {
		t.Fatal("no sweep batch ran")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if d, err := tr.store.ResolveTag("s", "again"); err == nil && d == fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiting PUT never landed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := tr.gcPull("s", string(live)); err != nil {
		t.Error(err)
	}
}

// One collection at a time per store; a dry run may look meanwhile.
func TestGCOneAtATime(t *testing.T) {
	tr := newTestRegistry(t)
	tr.pushBlob("one", randomBytes(t, 10))
	var second, dry error
	gcCollect(t, tr.store, func(c *gcConfig) {
		c.afterMark = func() {
			other, _ := Open(tr.store.Root())
			_, second = other.CollectGarbage(context.Background())
			_, dry = other.CollectGarbage(context.Background(), WithDryRun(true))
		}
	})
	if !errdefs.IsConflict(second) || !strings.Contains(second.Error(), "another garbage collection is running") {
		t.Errorf("second collection: %v", second)
	}
	if dry != nil {
		t.Errorf("dry run during a collection: %v", dry)
	}
}

// A manifest the mark cannot read stops the collection before anything
// is deleted, with a message that says which and what to do.
func TestGCUnreadableManifest(t *testing.T) {
	tr := newTestRegistry(t)
	m, _ := tr.gcImage("bad", "v1", randomBytes(t, 100))
	orphan := tr.pushBlob("bad", randomBytes(t, 100))
	gcAge(t, tr.store.Root(), 2*time.Hour)
	p, _ := tr.store.blobPath(m)
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("not json"), 0o444); err != nil {
		t.Fatal(err)
	}
	_, err := tr.store.CollectGarbage(context.Background())
	if err == nil || !strings.Contains(err.Error(), string(m)) || !strings.Contains(err.Error(), "DELETE /v2/bad/manifests/") {
		t.Fatalf("collect over a corrupt manifest: %v", err)
	}
	if _, err := tr.store.StatBlob(orphan); err != nil {
		t.Errorf("something was deleted: %v", err)
	}
}

// gcPushed is one manifest a client pushed and did not delete: what must
// pull whole, and stay, after any number of collections.
type gcPushed struct {
	repo, tag string
	digest    digest.Digest
	revs      []digest.Digest // the manifest and an index's children
	blobs     []digest.Digest // configs and layers
}

// gcClient pushes rounds of overlapping images with go-containerregistry
// (HEAD, skip what exists, upload the rest, manifest) and with raw HTTP
// (a manifest PUT with no HEAD first, cross-repository mounts), deletes
// some, and leaves garbage behind: untagged manifests, orphan blobs,
// abandoned upload sessions.
type gcClient struct {
	id       int
	base     string
	addr     string
	pool     []v1.Layer
	opts     []remote.Option
	live     []*gcPushed
	untagged []gcUntagged
	// pushed[repo] are the pool layers this client pushed there once.
	pushed map[string]map[int]bool
	// blindRetries counts manifest PUTs answered MANIFEST_BLOB_UNKNOWN
	// because a collection had swept a blob the client remembered.
	blindRetries int
}

type gcUntagged struct {
	repo string
	img  v1.Image
}

func (c *gcClient) ref(repo, tagOrDigest string) (name.Reference, error) {
	sep := ":"
	if strings.Contains(tagOrDigest, ":") {
		sep = "@"
	}
	return name.ParseReference(c.addr+"/"+repo+sep+tagOrDigest, name.Insecure)
}

// image is an OCI image over some pool layers and one of its own.
func (c *gcClient) image(picks ...int) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var layers []v1.Layer
	for _, i := range picks {
		layers = append(layers, c.pool[i])
	}
	own := make([]byte, 1000+len(picks)*100)
	rand.Read(own)
	layers = append(layers, static.NewLayer(own, types.OCILayer))
	return mutate.AppendLayers(img, layers...)
}

func gcImageInfo(repo, tag string, img v1.Image) (*gcPushed, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	p := &gcPushed{repo: repo, tag: tag, digest: digest.Digest(d.String()), revs: []digest.Digest{digest.Digest(d.String())}}
	p.blobs = append(p.blobs, digest.Digest(m.Config.Digest.String()))
	for _, l := range m.Layers {
		p.blobs = append(p.blobs, digest.Digest(l.Digest.String()))
	}
	return p, nil
}

func (c *gcClient) picks(n int) []int {
	return mrand.Perm(len(c.pool))[:n]
}

func (c *gcClient) remember(repo string, picks []int) {
	if c.pushed[repo] == nil {
		c.pushed[repo] = map[int]bool{}
	}
	for _, i := range picks {
		c.pushed[repo][i] = true
	}
}

func (c *gcClient) round(k int) error {
	repo := fmt.Sprintf("c%d/app", c.id)
	if mrand.Intn(3) == 0 {
		repo = "shared/app"
	}
	tag := fmt.Sprintf("c%d-r%d", c.id, k)
	switch k % 6 {
	case 0, 1, 3:
		picks := c.picks(2)
		img, err := c.image(picks...)
		if err != nil {
			return err
		}
		ref, _ := c.ref(repo, tag)
		if err := remote.Write(ref, img, c.opts...); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		c.remember(repo, picks)
		p, err := gcImageInfo(repo, tag, img)
		if err != nil {
			return err
		}
		c.live = append(c.live, p)
	case 2:
		// An index over a new image and, when there is one, an old
		// untagged image of this repository: the collector may have
		// swept it (go-containerregistry then pushes it again) or not
		// (then HEAD refreshes it and the PUT touches it).
		picks := c.picks(2)
		img, err := c.image(picks...)
		if err != nil {
			return err
		}
		children := []v1.Image{img}
		for i, u := range c.untagged {
			if u.repo == repo {
				children = append(children, u.img)
				c.untagged = append(c.untagged[:i], c.untagged[i+1:]...)
				break
			}
		}
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		p := &gcPushed{repo: repo, tag: tag}
		for _, ch := range children {
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: ch})
			info, err := gcImageInfo(repo, tag, ch)
			if err != nil {
				return err
			}
			p.revs = append(p.revs, info.revs...)
			p.blobs = append(p.blobs, info.blobs...)
		}
		ref, _ := c.ref(repo, tag)
		if err := remote.WriteIndex(ref, idx, c.opts...); err != nil {
			return fmt.Errorf("push index %s: %w", ref, err)
		}
		c.remember(repo, picks)
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		p.digest = digest.Digest(d.String())
		p.revs = append(p.revs, p.digest)
		c.live = append(c.live, p)
	case 4:
		picks := c.picks(2)
		img, err := c.image(picks...)
		if err != nil {
			return err
		}
		d, _ := img.Digest()
		ref, _ := c.ref(repo, d.String())
		if err := remote.Write(ref, img, c.opts...); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		c.remember(repo, picks)
		c.untagged = append(c.untagged, gcUntagged{repo, img})
	case 5:
		if err := c.blind(repo, tag); err != nil {
			return err
		}
	}
	if k%2 == 1 && len(c.live) > 2 {
		old := c.live[0]
		c.live = c.live[1:]
		ref, _ := c.ref(old.repo, string(old.digest))
		if err := remote.Delete(ref, c.opts...); err != nil {
			return fmt.Errorf("delete %s: %w", ref, err)
		}
	}
	if k%5 == 1 {
		// Garbage: a blob no manifest will name, a session never finished.
		junk := make([]byte, 2000)
		rand.Read(junk)
		if _, err := c.http("POST", "/v2/"+repo+"/blobs/uploads/?digest="+string(digest.FromBytes(junk)), junk, 201); err != nil {
			return err
		}
		resp, err := c.http("POST", "/v2/"+repo+"/blobs/uploads/", nil, 202)
		if err != nil {
			return err
		}
		if _, err := c.http("PATCH", resp.Header.Get("Location"), junk[:500], 202); err != nil {
			return err
		}
	}
	return nil
}

// blind pushes, with raw HTTP, a manifest over pool layers the client
// pushed to this repository before (or mounts from another client's
// repository), without asking whether they are still there: the
// registry must answer MANIFEST_BLOB_UNKNOWN if a collection swept one,
// never accept it and lose it afterwards.
func (c *gcClient) blind(repo, tag string) error {
	var picks []int
	for i := range c.pushed[repo] { // in random order
		if len(picks) < 2 {
			picks = append(picks, i)
		}
	}
	if len(picks) < 2 {
		extra := c.picks(2 - len(picks))
		from := fmt.Sprintf("c%d/app", (c.id+1)%4)
		for _, i := range extra {
			d, _ := c.pool[i].Digest()
			resp, err := c.http("POST", "/v2/"+repo+"/blobs/uploads/?mount="+d.String()+"&from="+from, nil, 0)
			if err != nil {
				return err
			}
			switch resp.StatusCode {
			case 201:
			case 202: // not there to mount: a session instead, which we drop
				if _, err := c.http("DELETE", resp.Header.Get("Location"), nil, 204); err != nil {
					return err
				}
			default:
				return fmt.Errorf("mount: %d", resp.StatusCode)
			}
		}
		picks = append(picks, extra...)
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","client":%d,"tag":%q}`, c.id, tag))
	cd := digest.FromBytes(cfg)
	if _, err := c.http("POST", "/v2/"+repo+"/blobs/uploads/?digest="+string(cd), cfg, 201); err != nil {
		return err
	}
	p := &gcPushed{repo: repo, tag: tag, blobs: []digest.Digest{cd}}
	layers := []ocispec.Descriptor{}
	for _, i := range picks {
		d, _ := c.pool[i].Digest()
		size, _ := c.pool[i].Size()
		layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.Digest(d.String()), Size: size})
		p.blobs = append(p.blobs, digest.Digest(d.String()))
	}
	data, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
		"config": ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
		"layers": layers,
	})
	p.digest = digest.FromBytes(data)
	p.revs = []digest.Digest{p.digest}
	for attempt := 0; ; attempt++ {
		resp, err := c.http("PUT", "/v2/"+repo+"/manifests/"+tag, data, 0, "Content-Type", ocispec.MediaTypeImageManifest)
		if err != nil {
			return err
		}
		if resp.StatusCode == 201 {
			break
		}
		var body errorBody
		if resp.StatusCode != 400 || json.Unmarshal(resp.body, &body) != nil || attempt > 0 {
			return fmt.Errorf("blind manifest PUT: %d %s", resp.StatusCode, resp.body)
		}
		// Swept meanwhile: upload what is missing, as a client would.
		c.blindRetries++
		for _, e := range body.Errors {
			if e.Code != CodeManifestBlobUnknown {
				return fmt.Errorf("blind manifest PUT: %s", resp.body)
			}
			for _, i := range picks {
				d, _ := c.pool[i].Digest()
				if dm, ok := e.Detail.(map[string]any); ok && dm["digest"] == d.String() {
					rc, _ := c.pool[i].Compressed()
					b, _ := io.ReadAll(rc)
					rc.Close()
					if _, err := c.http("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b, 201); err != nil {
						return err
					}
				}
			}
		}
	}
	c.remember(repo, picks)
	c.live = append(c.live, p)
	return nil
}

// http sends one request; want 0 accepts any status.
func (c *gcClient) http(method, path string, body []byte, want int, hdr ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	url := path
	if !strings.HasPrefix(url, "http") {
		url = c.base + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := gcHTTP.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	if want != 0 && resp.StatusCode != want {
		return response{}, fmt.Errorf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	return response{resp, b}, nil
}

// gcHTTP bounds the test clients' requests: a registry stuck behind a
// lock fails the test with a message instead of hanging it.
var gcHTTP = &http.Client{Timeout: time.Minute}

// gcProcess runs one collection in another process over root. One that
// takes over a minute is stuck: SIGQUIT makes it print its goroutines.
func gcProcess(root string, grace, uploads, pause time.Duration) (GCReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(),
		"BERTH_REGISTRY_TEST_GC="+root,
		"BERTH_REGISTRY_TEST_GC_PAUSE="+pause.String(),
		"BERTH_REGISTRY_TEST_GC_GRACE="+grace.String(),
		"BERTH_REGISTRY_TEST_GC_UPLOADS="+uploads.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var rep GCReport
	if err != nil {
		return rep, fmt.Errorf("gc process: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return rep, fmt.Errorf("gc process printed %q: %v", out, err)
	}
	return rep, nil
}

// gcSyncLog collects the server's log lines.
type gcSyncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *gcSyncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *gcSyncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The test: collections in another process, one after another,
// while four clients push distinct and overlapping images over many
// rounds, reuse layers the collector finds unreferenced, delete, and
// leave garbage. No push fails, every manifest pushed pulls whole, and
// once the pushes stop and the grace period has passed, one more
// collection leaves exactly what the live tags name: all the garbage
// made before and during the run is gone.
func TestGCWhilePushing(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 15 seconds")
	}
	const (
		clients = 4
		rounds  = 24
		// Pushes here take milliseconds; the grace period only has to
		// cover one, and lets garbage of the first rounds age into reach
		// of the collections while the last rounds run.
		grace   = 2 * time.Second
		uploads = 3 * time.Second
	)
	root := t.TempDir()
	store, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	// Reads refresh what they find at once, well inside the grace period
	// (production: a minute, inside an hour).
	store.refreshAfter = 100 * time.Millisecond
	var log gcSyncLog
	srv := httptest.NewServer(New(store, WithLogger(slog.New(slog.NewTextHandler(&log, nil)))))
	t.Cleanup(srv.Close)
	tr := &testRegistry{t: t, url: srv.URL, store: store}
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithJobs(3),
		// No retries: a failure caused by the collector must show.
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(func(error) bool { return false }),
	}
	pool := make([]v1.Layer, 16)
	for i := range pool {
		b := make([]byte, 3000+i*500)
		rand.Read(b)
		pool[i] = static.NewLayer(b, types.OCILayer)
	}
	cs := make([]*gcClient, clients)
	for i := range cs {
		cs[i] = &gcClient{id: i, base: srv.URL, addr: addr, pool: pool, opts: opts, pushed: map[string]map[int]bool{}}
	}

	// Garbage made before: in every repository, an image over the whole
	// pool (deleted), an untagged image, an orphan blob; aged an hour.
	garbage := map[digest.Digest]bool{}
	for _, repo := range []string{"c0/app", "c1/app", "c2/app", "c3/app", "shared/app", "seed/only"} {
		all := make([]int, len(pool))
		for i := range all {
			all[i] = i
		}
		c := cs[0]
		for _, tag := range []string{"seed", ""} {
			img, err := c.image(all...)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := gcImageInfo(repo, tag, img)
			ref, _ := c.ref(repo, string(info.digest))
			if tag != "" {
				ref, _ = c.ref(repo, tag)
			}
			if err := remote.Write(ref, img, opts...); err != nil {
				t.Fatal(err)
			}
			garbage[info.digest] = true
			for _, b := range info.blobs[:1] {
				garbage[b] = true // the config; the image's own layer is last
			}
			garbage[info.blobs[len(info.blobs)-1]] = true
			if tag != "" {
				tr.do("DELETE", "/v2/"+repo+"/manifests/"+string(info.digest), nil).want(t, 202)
			}
		}
		garbage[tr.pushBlob(repo, randomBytes(t, 4000))] = true
	}
	gcAge(t, root, time.Hour)

	stop := make(chan struct{})
	type gcTotals struct {
		runs, blobs, links, manifests, inUse int
		err                                  error
	}
	totals := make(chan gcTotals, 1)
	go func() {
		var tot gcTotals
		defer func() { totals <- tot }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rep, err := gcProcess(root, grace, uploads, 300*time.Millisecond)
			if err != nil {
				tot.err = err
				return
			}
			tot.runs++
			tot.blobs += rep.DeletedBlobs
			tot.links += rep.DeletedLinks
			tot.manifests += rep.DeletedManifests
			tot.inUse += rep.InUse
		}
	}()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < rounds; k++ {
				if err := c.round(k); err != nil {
					errs <- fmt.Errorf("client %d, round %d: %w", c.id, k, err)
					return
				}
				time.Sleep(time.Duration(60+mrand.Intn(100)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	tot := <-totals
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if tot.err != nil {
		t.Fatal(tot.err)
	}
	retries := 0
	for _, c := range cs {
		retries += c.blindRetries
	}
	t.Logf("%d collections during the pushes: %d blobs, %d links, %d manifests deleted; %d found in use again; %d blind manifest PUTs had to upload again",
		tot.runs, tot.blobs, tot.links, tot.manifests, tot.inUse, retries)
	if tot.runs < 3 || tot.blobs == 0 {
		t.Errorf("the collections ran %d times and deleted %d blobs during the pushes: the test did not test", tot.runs, tot.blobs)
	}

	// Everything pushed and not deleted pulls whole.
	var all []*gcPushed
	for _, c := range cs {
		all = append(all, c.live...)
	}
	for _, p := range all {
		if _, err := tr.gcPull(p.repo, p.tag); err != nil {
			t.Errorf("pull %s:%s after the collections: %v", p.repo, p.tag, err)
		}
	}

	// Once nothing has moved for the grace period, one more collection
	// leaves exactly what the tags name.
	time.Sleep(grace + timestampSlack + 500*time.Millisecond)
	final, err := gcProcess(root, grace, uploads, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("final collection: %+v", final)
	wantBlobs := map[digest.Digest]bool{}
	wantRevs, wantLinks := map[string]map[digest.Digest]bool{}, map[string]map[digest.Digest]bool{}
	wantTags := map[string][]string{}
	for _, p := range all {
		if wantRevs[p.repo] == nil {
			wantRevs[p.repo], wantLinks[p.repo] = map[digest.Digest]bool{}, map[digest.Digest]bool{}
		}
		wantTags[p.repo] = append(wantTags[p.repo], p.tag)
		for _, d := range p.revs {
			wantRevs[p.repo][d] = true
			wantBlobs[d] = true
		}
		for _, d := range p.blobs {
			wantLinks[p.repo][d] = true
			wantBlobs[d] = true
		}
	}
	have := gcBlobs(t, store)
	for d := range wantBlobs {
		if _, ok := have[d]; !ok {
			t.Errorf("blob %s is lost", d)
		}
	}
	for d := range have {
		if !wantBlobs[d] {
			t.Errorf("blob %s is garbage, and still there (made before the run: %v)", d, garbage[d])
		}
	}
	repos, _ := store.Repositories()
	var wantRepos []string
	for r := range wantRevs {
		wantRepos = append(wantRepos, r)
	}
	sort.Strings(wantRepos)
	if fmt.Sprint(repos) != fmt.Sprint(wantRepos) {
		t.Errorf("repositories %v, want %v", repos, wantRepos)
	}
	for _, r := range wantRepos {
		revs, links := map[digest.Digest]bool{}, map[digest.Digest]bool{}
		store.WalkManifests(r, func(d digest.Digest) error { revs[d] = true; return nil })
		store.WalkRepoBlobs(r, func(d digest.Digest) error { links[d] = true; return nil })
		if fmt.Sprint(revs) != fmt.Sprint(wantRevs[r]) {
			t.Errorf("%s: manifests %v, want %v", r, revs, wantRevs[r])
		}
		if fmt.Sprint(links) != fmt.Sprint(wantLinks[r]) {
			t.Errorf("%s: links %v, want %v", r, links, wantLinks[r])
		}
		tags, _ := store.Tags(r)
		sort.Strings(wantTags[r])
		if fmt.Sprint(tags) != fmt.Sprint(wantTags[r]) {
			t.Errorf("%s: tags %v, want %v", r, tags, wantTags[r])
		}
	}
	if left, _ := os.ReadDir(filepath.Join(root, uploadsDir)); len(left) != 0 {
		t.Errorf("%d upload sessions left", len(left))
	}
	for _, p := range all {
		if _, err := tr.gcPull(p.repo, p.tag); err != nil {
			t.Errorf("pull %s:%s after the final collection: %v", p.repo, p.tag, err)
		}
	}
	if again, err := gcProcess(root, grace, uploads, 0); err != nil || again.DeletedBlobs+again.DeletedLinks+again.DeletedManifests+again.DeletedRepositories != 0 {
		t.Errorf("a collection after the final one: %+v %v", again, err)
	}
	if l := log.String(); strings.Contains(l, "level=ERROR") {
		t.Errorf("the registry logged errors:\n%s", l)
	}
}

// skopeo (containers/image) after a collection: what was kept copies out
// whole, what was collected is gone, and pushing it again works.
func TestGCSkopeoRoundTrip(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (Debian package skopeo)")
	}
	tr := newTestRegistry(t)
	addr := strings.TrimPrefix(tr.url, "http://")
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, skopeo, append([]string{"--insecure-policy"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) {
		t.Helper()
		if out, err := run(args...); err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	shared := must1(random.Layer(50_000, types.OCILayer))
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	imgs := map[string]v1.Image{}
	for _, tag := range []string{"v1", "v2"} {
		img, err := mutate.AppendLayers(base, shared, must1(random.Layer(30_000, types.OCILayer)))
		if err != nil {
			t.Fatal(err)
		}
		imgs[tag] = img
		if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
			t.Fatal(err)
		}
		must("copy", "--dest-tls-verify=false", "oci:"+filepath.Join(dir, "oci")+":"+tag, "docker://"+addr+"/skopeo/gc:"+tag)
	}
	v2 := must1(imgs["v2"].Digest())
	v2m := must1(imgs["v2"].Manifest())
	// skopeo keeps an OCI image as it is: the registry has the same digest.
	if got := tr.do("HEAD", "/v2/skopeo/gc/manifests/v2", nil).want(t, 200).Header.Get("Docker-Content-Digest"); got != v2.String() {
		t.Fatalf("v2 pushed as %s, built as %s", got, v2)
	}
	tr.do("DELETE", "/v2/skopeo/gc/manifests/"+v2.String(), nil).want(t, 202)
	before := gcBlobs(t, tr.store)
	// Nothing is pushing: no grace period needed, beyond the second that
	// file times may lag.
	gcAge(t, tr.store.Root(), 2*timestampSlack)
	rep, _ := gcCollect(t, tr.store, WithGracePeriod(0), WithUntaggedDeletion(true))
	gone := []digest.Digest{digest.Digest(v2.String()), digest.Digest(v2m.Config.Digest.String()), digest.Digest(v2m.Layers[1].Digest.String())}
	if rep.DeletedBlobs != 3 || rep.DeletedBytes != sumSizes(before, gone...) {
		t.Errorf("collected %d blobs, %d bytes; want 3 (v2's manifest, config, own layer), %d bytes", rep.DeletedBlobs, rep.DeletedBytes, sumSizes(before, gone...))
	}

	must("copy", "--src-tls-verify=false", "docker://"+addr+"/skopeo/gc:v1", "oci:"+filepath.Join(dir, "back")+":v1")
	back, err := layout.ImageIndexFromPath(filepath.Join(dir, "back"))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := back.IndexManifest(); len(im.Manifests) != 1 || im.Manifests[0].Digest != must1(imgs["v1"].Digest()) {
		t.Errorf("v1 copied back as %+v", im)
	}
	bimg, err := back.Image(must1(imgs["v1"].Digest()))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(bimg); err != nil {
		t.Errorf("v1 copied back: %v", err)
	}
	if out, err := run("copy", "--src-tls-verify=false", "docker://"+addr+"/skopeo/gc@"+v2.String(), "oci:"+filepath.Join(dir, "gone")); err == nil {
		t.Errorf("collected v2 still copies out:\n%s", out)
	}
	// Pushed again, v2 is whole again (its shared layer was kept, the rest
	// is uploaded anew).
	must("copy", "--dest-tls-verify=false", "oci:"+filepath.Join(dir, "oci")+":v2", "docker://"+addr+"/skopeo/gc:v2")
	if _, err := tr.gcPull("skopeo/gc", "v2"); err != nil {
		t.Error(err)
	}
}

func must1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
