package image

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// skopeo runs the reference implementation of containers/image, the
// interop peer for archives (ARCHITECTURE: yardsticks, never dependencies).
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("needs skopeo: apt-get install skopeo")
	}
	cmd := exec.Command(path, append([]string{"--insecure-policy", "--tmpdir", t.TempDir()}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// skopeoImage saves an image made of an import (one gzip layer) and a
// loaded three-layer image with uncompressed layers.
func skopeoFixture(t *testing.T) (*Service, *Image, *Image) {
	s, _ := newService(t)
	imp := importImage(t, s, "imp", "localhost:5000/imp:1")
	ti := newTestImage(t, []string{"busybox:latest"}, "l1", "l2", "l3")
	load(t, s, legacyDockerArchive(t, ti))
	return s, imp, mustServiceGet(t, s, "busybox")
}

func saveTo(t *testing.T, s *Service, format, ref string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Save(context.Background(), f, []string{ref}, format); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadFrom(t *testing.T, p string) (*Service, []*Image) {
	t.Helper()
	s, _ := newService(t)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgs, err := s.Load(context.Background(), f, nil)
	if err != nil {
		t.Fatalf("load %s: %v", p, err)
	}
	return s, imgs
}

func TestSkopeoReadsOurArchives(t *testing.T) {
	s, imp, bb := skopeoFixture(t)
	for _, img := range []*Image{imp, bb} {
		ref := img.RepoTags[0]
		t.Run(Familiar(ref), func(t *testing.T) {
			// docker-archive -> skopeo -> OCI layout dir, and skopeo's view
			// of our archive has our config (image ID) and layers.
			da := saveTo(t, s, FormatDockerArchive, ref)
			var info struct {
				Digest string
				Layers []string
			}
			if err := json.Unmarshal(skopeo(t, "inspect", "docker-archive:"+da), &info); err != nil {
				t.Fatal(err)
			}
			if len(info.Layers) != len(img.Layers) {
				t.Errorf("skopeo sees %d layers, want %d", len(info.Layers), len(img.Layers))
			}
			cfg := skopeo(t, "inspect", "--config", "--raw", "docker-archive:"+da)
			if got := digestOf(cfg); got != img.ID.String() {
				t.Errorf("skopeo reads config %s, want %s", got, img.ID)
			}
			dir := filepath.Join(t.TempDir(), "oci")
			skopeo(t, "copy", "docker-archive:"+da, "oci:"+dir+":copied")

			// oci-archive -> skopeo -> docker-archive -> berth load: same image.
			oa := saveTo(t, s, FormatOCIArchive, ref)
			back := filepath.Join(t.TempDir(), "back.tar")
			skopeo(t, "copy", "oci-archive:"+oa, "docker-archive:"+back+":localhost/back:1")
			_, imgs := loadFrom(t, back)
			if len(imgs) != 1 || imgs[0].ID != img.ID || imgs[0].RepoTags[0] != "localhost/back:1" {
				t.Fatalf("skopeo's docker-archive loads as %+v, want ID %s", imgs[0], img.ID)
			}

			// The OCI dir skopeo wrote, tarred by skopeo as oci-archive with a
			// full name, loads too.
			oa2 := filepath.Join(t.TempDir(), "skopeo-oci.tar")
			skopeo(t, "copy", "oci:"+dir+":copied", "oci-archive:"+oa2+":localhost/again:2")
			_, imgs = loadFrom(t, oa2)
			if len(imgs) != 1 || imgs[0].ID != img.ID || imgs[0].RepoTags[0] != "localhost/again:2" {
				t.Fatalf("skopeo's oci-archive loads as %+v, want ID %s", imgs[0], img.ID)
			}
		})
	}
}

func digestOf(b []byte) string { return digest.FromBytes(b).String() }
