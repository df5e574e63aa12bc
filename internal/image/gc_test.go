package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
)

// TestRemoveAllLeavesNothing imports 20 images, removes them all, and
// expects no blob and no layer to be left.
func TestRemoveAllLeavesNothing(t *testing.T) {
	s, root := newService(t)
	ctx := context.Background()
	var imgs []*Image
	for i := range 20 {
		imgs = append(imgs, importImage(t, s, fmt.Sprint(i%15), fmt.Sprintf("img%d", i))) // some share layers
	}
	if err := s.Tag("img0", "other/repo:x"); err != nil {
		t.Fatal(err)
	}
	for i, img := range imgs {
		ref := fmt.Sprintf("img%d", i)
		if i%2 == 1 || i == 0 {
			ref = img.ID.Encoded()[:12] // by ID
		}
		items, err := s.Remove(ctx, ref, i == 0, nil) // img0 spans two repositories: force
		if err != nil {
			t.Fatalf("remove %s: %v", ref, err)
		}
		if !slices.ContainsFunc(items, func(it RemoveItem) bool { return it.Deleted == img.ID.String() }) {
			t.Errorf("remove %s: %+v lacks Deleted %s", ref, items, img.ID)
		}
	}
	if left := entries(t, filepath.Join(root, "content/blobs/sha256")); len(left) != 0 {
		t.Errorf("blobs left: %v", left)
	}
	if left := entries(t, filepath.Join(root, "snapshots/layers")); len(left) != 0 {
		t.Errorf("layers left: %v", left)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("images left: %d", len(list))
	}
	res, err := s.GC(ctx, nil)
	if err != nil || res.BlobsRemoved != 0 || res.LayersRemoved != 0 {
		t.Fatalf("GC after removing all: %+v, %v", res, err)
	}
}

func TestGC(t *testing.T) {
	s, root := newService(t)
	ctx := context.Background()
	keep := importImage(t, s, "keep", "keep")
	held := importImage(t, s, "held", "held")
	gone := importImage(t, s, "gone", "gone")
	// Delete records behind the service's back: GC must find the leftovers.
	for _, img := range []*Image{held, gone} {
		if err := s.Meta.Delete(img.ID.String()); err != nil {
			t.Fatal(err)
		}
	}
	// A stray blob.
	if _, _, err := s.Content.Put(bytes.NewReader([]byte("stray")), "", -1); err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(ctx, func() ([]digest.Digest, error) { return []digest.Digest{held.TopChainID()}, nil })
	if err != nil {
		t.Fatal(err)
	}
	// gone: manifest, config, layer; held: manifest, config, layer blob
	// (its layer stays: a container holds it); the stray blob.
	if res.BlobsRemoved != 7 || res.LayersRemoved != 1 {
		t.Errorf("GC removed %+v, want 7 blobs and 1 layer", res)
	}
	if !s.Snapshots.Has(held.TopChainID()) || s.Snapshots.Has(gone.TopChainID()) || !s.Snapshots.Has(keep.TopChainID()) {
		t.Error("wrong layers removed")
	}
	if _, err := s.Get("keep"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{keep.ID, keep.ManifestDigest, keep.Layers[0].Digest} {
		if _, err := s.Content.Stat(d); err != nil {
			t.Errorf("kept image's blob %s: %v", d, err)
		}
	}
	if n := len(entries(t, filepath.Join(root, "content/blobs/sha256"))); n != 3 {
		t.Errorf("%d blobs left, want 3", n)
	}
	// Without the root the held layer goes too.
	if res, err := s.GC(ctx, nil); err != nil || res.LayersRemoved != 1 {
		t.Errorf("second GC: %+v, %v", res, err)
	}
	if roots := func() ([]digest.Digest, error) { return nil, os.ErrPermission }; true {
		if _, err := s.GC(ctx, roots); err == nil {
			t.Error("GC ignored a failing roots callback")
		}
	}
}

func TestRemoveSemantics(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	img := importImage(t, s, "a", "a:1")
	if err := s.Tag("a:1", "a:2"); err != nil {
		t.Fatal(err)
	}
	used := func(id digest.Digest) bool { return id == img.ID }

	// Untagging one of two names keeps the image, even when it is in use.
	items, err := s.Remove(ctx, "a:1", false, used)
	if err != nil || len(items) != 1 || items[0].Untagged != "a:1" {
		t.Fatalf("rmi a:1 = %+v, %v", items, err)
	}
	// The last name of an image in use: refused without force.
	if _, err := s.Remove(ctx, "a:2", false, used); !errdefs.IsConflict(err) {
		t.Fatalf("rmi of the last name of a used image = %v, want conflict", err)
	}
	// By ID, in use: refused without force.
	if _, err := s.Remove(ctx, img.ID.String(), false, used); !errdefs.IsConflict(err) {
		t.Fatalf("rmi by ID of a used image = %v, want conflict", err)
	}
	// Two repositories by ID: refused without force.
	if err := s.Tag("a:2", "b:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctx, img.ID.Encoded()[:6], false, nil); !errdefs.IsConflict(err) {
		t.Fatalf("rmi by ID with two repositories = %v, want conflict", err)
	}
	// Forced while in use: record gone, layer kept for the container.
	items, err = s.Remove(ctx, img.ID.String(), true, used)
	if err != nil {
		t.Fatal(err)
	}
	want := []RemoveItem{{Untagged: "a:2"}, {Untagged: "b:1"}, {Deleted: img.ID.String()}}
	if !slices.Equal(items, want) {
		t.Fatalf("items %+v, want %+v", items, want)
	}
	if !s.Snapshots.Has(img.TopChainID()) {
		t.Fatal("forced removal of a used image removed its layer")
	}
	if _, err := s.Remove(ctx, "a:2", false, nil); !errdefs.IsNotFound(err) {
		t.Fatalf("rmi of a removed image = %v, want not found", err)
	}
	// Same repository, two tags, by ID: allowed.
	c := importImage(t, s, "c", "c:1")
	if err := s.Tag("c:1", "c:2"); err != nil {
		t.Fatal(err)
	}
	items, err = s.Remove(ctx, c.ID.String(), false, nil)
	if err != nil || len(items) != 4 || items[3].Deleted != c.TopChainID().String() {
		t.Fatalf("rmi by ID, one repository = %+v, %v", items, err)
	}
}

func TestPruneAndDiskUsage(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	tagged := importImage(t, s, "t", "t")
	dangling := importImage(t, s, "d", "")
	used := importImage(t, s, "u", "u")
	inUse := func(id digest.Digest) bool { return id == used.ID }

	du, err := s.DiskUsage(inUse)
	if err != nil {
		t.Fatal(err)
	}
	total := tagged.Size + dangling.Size + used.Size
	if du.Images != 3 || du.Active != 1 || du.Size != total || du.Reclaimable != total-used.Size || len(du.PerImage) != 3 {
		t.Fatalf("disk usage %+v (sizes %d %d %d)", du, tagged.Size, dangling.Size, used.Size)
	}

	rep, err := s.Prune(ctx, false, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 2 || rep.Items[0].Deleted != dangling.ID.String() || rep.SpaceReclaimed <= dangling.Size {
		t.Fatalf("prune dangling: %+v", rep)
	}
	rep, err = s.Prune(ctx, true, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 3 || rep.Items[0].Untagged != "t:latest" {
		t.Fatalf("prune all: %+v", rep)
	}
	list, _ := s.List()
	if len(list) != 1 || list[0].ID != used.ID {
		t.Fatalf("left after prune -a: %v", list)
	}
}

// TestGCAfterDeleteLeavesNothing drops 20 records behind GC's back: a
// full collection must find every blob and layer unreferenced.
func TestGCAfterDeleteLeavesNothing(t *testing.T) {
	s, root := newService(t)
	for i := range 20 {
		img := importImage(t, s, fmt.Sprint(i%15), "")
		if err := s.Meta.Delete(img.ID.String()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.GC(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.LayersRemoved != 15 || res.BlobsRemoved != 15+20+20 {
		t.Errorf("GC %+v, want 15 layers and 55 blobs", res)
	}
	if left := entries(t, filepath.Join(root, "content/blobs/sha256")); len(left) != 0 {
		t.Errorf("blobs left: %v", left)
	}
	if left := entries(t, filepath.Join(root, "snapshots/layers")); len(left) != 0 {
		t.Errorf("layers left: %v", left)
	}
}

// TestConcurrentLoadAndGC loads and removes images while GC runs in a
// loop: gc.lock must keep GC from taking blobs or layers a load has
// written but not yet recorded.
func TestConcurrentLoadAndGC(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	archives := [][]byte{
		legacyDockerArchive(t, newTestImage(t, []string{"a:1"}, "base", "a")),
		legacyDockerArchive(t, newTestImage(t, []string{"b:1"}, "base", "b")),
	}
	stop := make(chan struct{})
	gcDone := make(chan error)
	go func() {
		for {
			select {
			case <-stop:
				gcDone <- nil
				return
			default:
			}
			if _, err := s.GC(ctx, nil); err != nil {
				gcDone <- err
				return
			}
		}
	}()
	errs := make(chan error, 2)
	for w := range 2 {
		go func() {
			for i := range 15 {
				arch := archives[(w+i)%2]
				if _, err := s.Load(ctx, bytes.NewReader(arch), nil); err != nil {
					errs <- fmt.Errorf("load: %w", err)
					return
				}
				if i%3 == 2 {
					// Either worker may have removed it already.
					if _, err := s.Remove(ctx, []string{"a:1", "b:1"}[(w+i)%2], false, nil); err != nil && !errdefs.IsNotFound(err) {
						errs <- fmt.Errorf("remove: %w", err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	imgs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if err := s.verifyPresent(img); err != nil {
			t.Errorf("image %v: %v", img.RepoTags, err)
		}
	}
}
