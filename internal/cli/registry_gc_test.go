package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/registry/server"
)

// gcFixture is a registry storage with one image to keep (app:v1) and
// garbage: a deleted image's manifest, config and layer, and an orphan
// blob, all two hours old.
type gcFixture struct {
	dir     string
	url     string
	keep    []digest.Digest
	garbage []digest.Digest
}

func newGCFixture(t *testing.T) *gcFixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "reg")
	store, err := server.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(store))
	t.Cleanup(srv.Close)
	fx := &gcFixture{dir: dir, url: srv.URL}
	req := func(method, path string, body []byte, want int, hdr ...string) *http.Response {
		t.Helper()
		r, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
		}
		return resp
	}
	blob := func(data []byte) digest.Digest {
		d := digest.FromBytes(data)
		req("POST", "/v2/app/blobs/uploads/?digest="+string(d), data, 201)
		return d
	}
	image := func(tag, nonce string) []digest.Digest {
		cfg := []byte(fmt.Sprintf(`{"os":"linux","nonce":%q}`, nonce))
		layer := bytes.Repeat([]byte(nonce), 1000)
		cd, ld := blob(cfg), blob(layer)
		m, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
			"config": ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))},
			"layers": []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: ld, Size: int64(len(layer))}},
		})
		req("PUT", "/v2/app/manifests/"+tag, m, 201, "Content-Type", ocispec.MediaTypeImageManifest)
		return []digest.Digest{digest.FromBytes(m), cd, ld}
	}
	fx.keep = image("v1", "keep")
	fx.garbage = image("v2", "gone")
	req("DELETE", "/v2/app/manifests/"+string(fx.garbage[0]), nil, 202)
	fx.garbage = append(fx.garbage, blob([]byte("orphan")))
	old := time.Now().Add(-2 * time.Hour)
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			os.Chtimes(p, old, old)
		}
		return err
	})
	return fx
}

func (fx *gcFixture) stored(d digest.Digest) bool {
	_, err := os.Stat(filepath.Join(fx.dir, "blobs", "sha256", d.Encoded()[:2], d.Encoded()))
	return err == nil
}

// rootWithGC is berth's root command with `registry gc`, whether or not
// cli.go wires it in yet.
func rootWithGC() *cobra.Command {
	root := newRootCommand()
	if c, _, err := root.Find([]string{"registry", "gc"}); err != nil || c.Name() != "gc" {
		addRegistryGCCommands(root)
	}
	return root
}

func runGC(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := rootWithGC()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"registry", "gc"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestRegistryGC(t *testing.T) {
	fx := newGCFixture(t)

	out, err := runGC(t, "--root", fx.dir, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, d := range fx.garbage {
		if !strings.Contains(out, "blob eligible for deletion: "+string(d)) {
			t.Errorf("dry run does not list %s:\n%s", d, out)
		}
		if !fx.stored(d) {
			t.Errorf("dry run deleted %s", d)
		}
	}
	if !strings.Contains(out, "3 blobs marked, 4 blobs and 0 manifests eligible for deletion") || !strings.Contains(out, "nothing was deleted") {
		t.Errorf("dry run summary:\n%s", out)
	}

	out, err = runGC(t, "--root", fx.dir)
	if err != nil {
		t.Fatalf("gc: %v\n%s", err, out)
	}
	for _, d := range fx.garbage {
		if !strings.Contains(out, "blob deleted: "+string(d)) || fx.stored(d) {
			t.Errorf("%s not deleted:\n%s", d, out)
		}
	}
	for _, d := range fx.keep {
		if !fx.stored(d) {
			t.Errorf("kept image's blob %s was deleted", d)
		}
	}
	if !strings.Contains(out, "3 blobs marked, 4 blobs and 0 manifests deleted") || !strings.Contains(out, "Total reclaimed space: ") {
		t.Errorf("summary:\n%s", out)
	}
	resp, err := http.Get(fx.url + "/v2/app/blobs/" + string(fx.keep[2]))
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("pull of the kept image's layer: %v %v", resp, err)
	}
	resp.Body.Close()

	out, err = runGC(t, "--root", fx.dir, "-q")
	if err != nil || !strings.Contains(out, "0 blobs and 0 manifests deleted") || strings.Contains(out, "blob deleted") {
		t.Errorf("second run, quiet: %v\n%s", err, out)
	}
}

// The grace period keeps what a push in progress may need; --config
// gives the root as `registry serve` reads it.
func TestRegistryGCGraceAndConfig(t *testing.T) {
	fx := newGCFixture(t)
	conf := filepath.Join(t.TempDir(), "registry.yml")
	if err := os.WriteFile(conf, []byte("root: "+fx.dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runGC(t, "--config", conf, "--grace", "3h")
	if err != nil {
		t.Fatalf("gc: %v\n%s", err, out)
	}
	if !strings.Contains(out, "kept 4 blobs") || !fx.stored(fx.garbage[3]) {
		t.Errorf("grace period of 3h over garbage of 2h:\n%s", out)
	}
	out, err = runGC(t, "--config", conf, "--grace", "1h", "-q")
	if err != nil || fx.stored(fx.garbage[3]) || !strings.Contains(out, "4 blobs and 0 manifests deleted") {
		t.Errorf("grace period of 1h: %v\n%s", err, out)
	}
}

func TestRegistryGCUsage(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--root DIR"},
		{[]string{"--root", missing}, "not a registry's storage directory"},
		{[]string{"--root", t.TempDir(), "--grace", "-1m"}, "is negative"},
	} {
		_, err := runGC(t, tc.args...)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gc %v: %v, want invalid argument mentioning %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("gc created the storage directory it was wrongly given")
	}
}
