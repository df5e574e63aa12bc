package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// go-containerregistry's remote package is a second, independent client:
// push a random image and index, pull them back, list, refer, delete.
func TestGoContainerRegistryRoundTrip(t *testing.T) {
	addr := startServer(t)
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(addr+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	img, err := random.Image(100_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref("ggcr/img:v1"), img, remote.WithJobs(3)); err != nil {
		t.Fatalf("push: %v", err)
	}
	got, err := remote.Image(ref("ggcr/img:v1"))
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	wantD, _ := img.Digest()
	gotD, _ := got.Digest()
	if wantD != gotD {
		t.Fatalf("pulled %s, pushed %s", gotD, wantD)
	}
	layers, _ := got.Layers()
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest as it reads
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer: %v", err)
		}
		rc.Close()
	}

	// An index, pushed to another repository: its blobs are mounted.
	idx, err := random.Index(1000, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref("ggcr/idx:multi"), idx); err != nil {
		t.Fatalf("push index: %v", err)
	}
	gi, err := remote.Index(ref("ggcr/idx:multi"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := must(idx.Digest()), must(gi.Digest()); a != b {
		t.Errorf("index digest %s, want %s", b, a)
	}

	// A referrer: an artifact whose subject is the image.
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, "application/vnd.example.sbom")
	art = mutate.Subject(art, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: wantD, Size: must(img.Size())}).(v1.Image)
	if err := remote.Write(ref("ggcr/img:sbom"), art); err != nil {
		t.Fatalf("push referrer: %v", err)
	}
	dref, _ := name.NewDigest(addr+"/ggcr/img@"+wantD.String(), name.Insecure)
	refs, err := remote.Referrers(dref)
	if err != nil {
		t.Fatalf("referrers: %v", err)
	}
	if im, _ := refs.IndexManifest(); len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != "application/vnd.example.sbom" {
		t.Errorf("referrers: %+v", im)
	}

	tags, err := remote.List(ref("ggcr/img").Context())
	if err != nil || strings.Join(tags, ",") != "sbom,v1" {
		t.Errorf("tags %v, %v", tags, err)
	}
	reg, _ := name.NewRegistry(addr, name.Insecure)
	repos, err := remote.Catalog(context.Background(), reg)
	if err != nil || strings.Join(repos, ",") != "ggcr/idx,ggcr/img" {
		t.Errorf("catalog %v, %v", repos, err)
	}
	if err := remote.Delete(dref); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := remote.Image(ref("ggcr/img:v1")); err == nil {
		t.Error("deleted image still pulls by tag")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// skopeo (containers/image) is a third client, and the one the issue's
// benchmarks use: copy an OCI layout and a docker-archive in, and out.
func TestSkopeoRoundTrip(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (Debian package skopeo)")
	}
	addr := startServer(t)
	dir := t.TempDir()
	// containers/image's oci: transport only sees OCI-typed manifests.
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for i := 0; i < 2; i++ {
		l, err := random.Layer(200_000, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, skopeo, append([]string{"--insecure-policy"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	remoteRef := "docker://" + addr + "/skopeo/img:v1"
	run("copy", "--dest-tls-verify=false", "oci:"+filepath.Join(dir, "oci")+":v1", remoteRef)
	// skopeo keeps an OCI manifest as it is: the registry has the same digest.
	resp, err := http.Head("http://" + addr + "/v2/skopeo/img/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := must(img.Digest()).String(); resp.Header.Get("Docker-Content-Digest") != want {
		t.Errorf("pushed digest %s, want %s", resp.Header.Get("Docker-Content-Digest"), want)
	}
	run("copy", "--src-tls-verify=false", remoteRef, "oci:"+filepath.Join(dir, "back")+":v1")
	back, err := layout.ImageIndexFromPath(filepath.Join(dir, "back"))
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := back.IndexManifest(); len(im.Manifests) != 1 || im.Manifests[0].Digest != must(img.Digest()) {
		t.Errorf("pulled back %+v", im)
	}

	// docker-archive: skopeo converts it to a Docker schema 2 image.
	tag, _ := name.NewTag("example/archive:v1")
	tarPath := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	archRef := "docker://" + addr + "/skopeo/archive:v1"
	run("copy", "--dest-tls-verify=false", "docker-archive:"+tarPath, archRef)
	out := run("inspect", "--tls-verify=false", "--raw", archRef)
	if !strings.Contains(out, MediaTypeDockerManifest) {
		t.Errorf("archive manifest: %s", out)
	}
	run("copy", "--src-tls-verify=false", archRef, "docker-archive:"+filepath.Join(dir, "back.tar")+":example/archive:v1")
	got, err := tarball.ImageFromPath(filepath.Join(dir, "back.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The layers are the same files, whatever compression travelled.
	wantIDs, gotIDs := must(img.ConfigFile()).RootFS.DiffIDs, must(got.ConfigFile()).RootFS.DiffIDs
	if len(wantIDs) != len(gotIDs) || wantIDs[0] != gotIDs[0] || wantIDs[1] != gotIDs[1] {
		t.Errorf("diff IDs %v, want %v", gotIDs, wantIDs)
	}
}
