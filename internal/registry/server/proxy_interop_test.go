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

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/internal/registry/registrytest"
)

// TestProxyDockerRegistryUpstream: the reference registry (distribution
// 2.8, Debian's docker-registry) as the upstream, behind Basic auth and
// behind token auth, pulled through the proxy by two clients we did not
// write: go-containerregistry and skopeo.
func TestProxyDockerRegistryUpstream(t *testing.T) {
	for _, c := range []struct {
		name      string
		challenge string // what the upstream asks the proxy for
		opts      []registrytest.Option
	}{
		{"basic", "Basic ", []registrytest.Option{registrytest.WithBasicAuth("alice", "s3cret")}},
		{"token", "Bearer ", []registrytest.Option{registrytest.WithBasicAuth("alice", "s3cret"), registrytest.WithTokenAuth("berth-proxy-test")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := registrytest.Start(t, c.opts...)
			// containers/image's oci: transport only sees OCI-typed manifests.
			img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
			for i := 0; i < 2; i++ {
				img = must(mutate.AppendLayers(img, must(random.Layer(300_000, types.OCILayer))))
			}
			upRef := must(name.ParseReference(up.Addr+"/library/app:v1", name.Insecure))
			if err := remote.Write(upRef, img, remote.WithAuth(&authn.Basic{Username: up.Username, Password: up.Password})); err != nil {
				t.Fatalf("push to the upstream: %v", err)
			}
			resp := must(http.Get(up.URL + "/v2/"))
			resp.Body.Close()
			if ch := resp.Header.Get("Www-Authenticate"); resp.StatusCode != 401 || !strings.HasPrefix(ch, c.challenge) {
				t.Fatalf("upstream /v2/: %d %q", resp.StatusCode, ch)
			}
			px, _, _ := newProxyRegistry(t, ProxyConfig{Prefix: "dist", Remote: up.URL, Username: up.Username, Password: up.Password})
			addr := strings.TrimPrefix(px.url, "http://")
			want := must(img.Digest())

			got, err := remote.Image(must(name.ParseReference(addr+"/dist/library/app:v1", name.Insecure)))
			if err != nil {
				t.Fatalf("pull through the proxy: %v", err)
			}
			if d := must(got.Digest()); d != want {
				t.Fatalf("pulled %s, pushed %s", d, want)
			}
			for _, l := range must(got.Layers()) {
				rc := must(l.Compressed()) // verifies the digest as it reads
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Fatalf("layer: %v", err)
				}
				rc.Close()
			}

			skopeo, err := exec.LookPath("skopeo")
			if err != nil {
				t.Skip("skopeo is not installed (Debian package skopeo)")
			}
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// A tag not pulled yet, so skopeo's pull goes to the upstream.
			if err := remote.Tag(must(name.NewTag(up.Addr+"/library/app:v2", name.Insecure)), img, remote.WithAuth(&authn.Basic{Username: up.Username, Password: up.Password})); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, skopeo, "--insecure-policy", "copy", "--src-tls-verify=false",
				"docker://"+addr+"/dist/library/app:v2", "oci:"+filepath.Join(dir, "oci")+":v2")
			cmd.Env = append(os.Environ(), "HOME="+dir, "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("skopeo copy through the proxy: %v\n%s", err, out)
			}
			back := must(layout.ImageIndexFromPath(filepath.Join(dir, "oci")))
			if im := must(back.IndexManifest()); len(im.Manifests) != 1 || im.Manifests[0].Digest != want {
				t.Errorf("skopeo pulled %+v, want %s", im.Manifests, want)
			}
		})
	}
}
