package cli

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

// busyboxTar writes a rootfs tarball of the test busybox and returns its path.
func busyboxTar(t *testing.T) string {
	t.Helper()
	root := testutil.BusyboxRootfs(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "rootfs.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(root, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	f.Close()
	return out
}

// TestImageVerbs drives the image verbs as a user would, through the
// command line, against a fresh --root.
func TestImageVerbs(t *testing.T) {
	testutil.RequiresRoot(t)
	root := t.TempDir()
	t.Setenv("BERTH_ROOT", root)
	tarball := busyboxTar(t)
	must := func(args ...string) string {
		t.Helper()
		out, err := run(t, args...)
		if err != nil {
			t.Fatalf("berth %v: %v\n%s", args, err, out)
		}
		return out
	}
	id := strings.TrimSpace(must("import", "-m", "from busybox-static", "--change", `CMD ["sh"]`, tarball, "busybox:test"))
	if !strings.HasPrefix(id, "sha256:") || len(id) != 71 {
		t.Fatalf("import printed %q, want an image ID", id)
	}
	out := must("images")
	if !strings.HasPrefix(out, "REPOSITORY   TAG    IMAGE ID       CREATED") || !strings.Contains(out, "busybox      test   "+id[7:19]) {
		t.Errorf("images:\n%s", out)
	}
	must("tag", "busybox:test", "localhost:5000/team/bb:v1")
	if out := must("images", "-q"); strings.TrimSpace(out) != id[7:19] {
		t.Errorf("images -q: %q", out)
	}
	if out := must("images", "--filter", "reference=localhost:5000/*/*", "--format", "{{.Repository}}:{{.Tag}}"); strings.TrimSpace(out) != "localhost:5000/team/bb:v1" {
		t.Errorf("images --filter reference: %q", out)
	}
	if out := must("images", "--filter", "dangling=true", "-q"); out != "" {
		t.Errorf("dangling: %q", out)
	}
	var inspect []map[string]any
	if err := json.Unmarshal([]byte(must("image", "inspect", "busybox:test")), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	for _, k := range []string{"Id", "RepoTags", "RepoDigests", "Created", "Config", "Architecture", "Os", "Size", "RootFS", "Metadata"} {
		if _, ok := inspect[0][k]; !ok {
			t.Errorf("image inspect lacks %s", k)
		}
	}
	if inspect[0]["Id"] != id {
		t.Errorf("inspect Id %v, want %s", inspect[0]["Id"], id)
	}
	if out := must("image", "inspect", "--format", "{{.Id}} {{.Config.Cmd}}", id[7:19]); strings.TrimSpace(out) != id+" [sh]" {
		t.Errorf("inspect --format: %q", out)
	}
	if out := must("history", "busybox:test"); !strings.Contains(out, "from busybox-static") {
		t.Errorf("history:\n%s", out)
	}
	if out := must("info", "--format", "{{.Images}}"); strings.TrimSpace(out) != "1" {
		t.Errorf("info Images: %q", out)
	}
	if out := must("system", "df"); !strings.Contains(out, "Images          1") {
		t.Errorf("system df:\n%s", out)
	}

	// save, then load into a second root: the same image.
	archive := filepath.Join(t.TempDir(), "bb.tar")
	must("save", "-o", archive, "busybox:test")
	t.Setenv("BERTH_ROOT", t.TempDir())
	if out := must("load", "-q", "-i", archive); out != "" {
		t.Errorf("load -q printed %q", out)
	}
	if out := must("images", "-q", "--no-trunc"); strings.TrimSpace(out) != id {
		t.Errorf("loaded image %q, want %s", out, id)
	}
	t.Setenv("BERTH_ROOT", root)

	// Bad input: one clear error, store unchanged.
	if _, err := run(t, "tag", "busybox:test", "Bad:Name"); err == nil {
		t.Error("tag to an invalid name succeeded")
	}
	if _, err := run(t, "load", "-i", tarball); err == nil {
		t.Error("load of a rootfs tarball (no manifest) succeeded")
	}

	// rmi: untag, then delete and collect everything.
	if out := must("rmi", "localhost:5000/team/bb:v1"); strings.TrimSpace(out) != "Untagged: localhost:5000/team/bb:v1" {
		t.Errorf("rmi of one tag: %q", out)
	}
	if out := must("rmi", "busybox:test"); !strings.Contains(out, "Deleted: "+id) {
		t.Errorf("rmi: %q", out)
	}
	if out := must("image", "prune", "-a", "-f"); !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("prune: %q", out)
	}
	for _, dir := range []string{"content/blobs/sha256", "snapshots/layers"} {
		entries, _ := os.ReadDir(filepath.Join(root, dir))
		if len(entries) != 0 {
			t.Errorf("%s not empty after rmi: %d entries", dir, len(entries))
		}
	}
}
