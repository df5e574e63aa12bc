package image

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestDockerInterop exchanges archives with a real Docker engine: ours
// through docker load and docker run, Docker's through our Load. It needs
// a dockerd to talk to, which a unit test should not start: run one with
// its own roots and point BERTH_TEST_DOCKER_HOST at it, e.g.
//
//	dockerd --data-root /tmp/dk/root --exec-root /tmp/dk/exec \
//	  -H unix:///tmp/dk/docker.sock --bridge=none --iptables=false &
//	BERTH_TEST_DOCKER_HOST=unix:///tmp/dk/docker.sock go test -run Docker ./internal/image
func TestDockerInterop(t *testing.T) {
	host := os.Getenv("BERTH_TEST_DOCKER_HOST")
	if host == "" {
		t.Skip("set BERTH_TEST_DOCKER_HOST to a dockerd's socket to run")
	}
	docker := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+host)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	s, _ := newService(t)
	ctx := context.Background()
	rootfs := dirTar(t, testutil.BusyboxRootfs(t, t.TempDir()))
	img, err := s.Import(ctx, bytes.NewReader(rootfs), "localhost/berth-interop:1", ImportOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("docker", "-H", host, "rmi", "-f", "localhost/berth-interop:1", "localhost/berth-interop:2").Run()
	})

	// Ours into Docker: same ID, and it runs.
	for _, format := range []string{FormatDockerArchive} {
		archive := filepath.Join(t.TempDir(), "save.tar")
		out, err := os.Create(archive)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, out, []string{"localhost/berth-interop:1"}, format); err != nil {
			t.Fatal(err)
		}
		out.Close()
		t.Log(docker("load", "-i", archive))
		if id := docker("image", "inspect", "-f", "{{.Id}}", "localhost/berth-interop:1"); id != img.ID.String() {
			t.Fatalf("docker sees ID %s, want %s", id, img.ID)
		}
		if got := docker("run", "--rm", "--network", "none", "localhost/berth-interop:1", "/bin/echo", "hello from berth"); got != "hello from berth" {
			t.Fatalf("docker run printed %q", got)
		}
	}

	// Docker's into ours: same ID.
	docker("tag", "localhost/berth-interop:1", "localhost/berth-interop:2")
	archive := filepath.Join(t.TempDir(), "docker-save.tar")
	docker("save", "-o", archive, "localhost/berth-interop:2")
	dst, imgs := loadFrom(t, archive)
	if len(imgs) != 1 || imgs[0].ID != img.ID || imgs[0].RepoTags[0] != "localhost/berth-interop:2" {
		t.Fatalf("Docker's archive loads as %+v", imgs)
	}
	if !dst.Snapshots.Has(imgs[0].TopChainID()) {
		t.Fatal("layer not unpacked")
	}
}
