package registry_test

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/registry/registrytest"
	"github.com/berth-dev/berth/internal/testutil"
)

// berthBin is the berth binary built once by TestMain for the end-to-end
// tests; "" under -short.
var berthBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testutil.MainWithBerth(m, &berthBin))
}

// skopeoPush copies an image saved by b (oci-archive) to the registry
// with skopeo, so the registry holds what another tool wrote.
func skopeoPush(t *testing.T, b *testutil.Berth, local, remote string) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("needs skopeo (apt-get install skopeo)")
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	b.Must("save", "--format", "oci-archive", "-o", archive, local)
	out, err := exec.Command("skopeo", "copy", "--dest-tls-verify=false", "oci-archive:"+archive, "docker://"+remote).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy to %s: %v\n%s", remote, err, out)
	}
}

// TestPullSkopeoPushedRuns: an image skopeo pushed to Debian's
// docker-registry is pulled by berth pull and runs.
func TestPullSkopeoPushedRuns(t *testing.T) {
	b := testutil.NewEngine(t, berthBin, func(rootfs string) {
		if err := os.WriteFile(filepath.Join(rootfs, "hello"), []byte("from the registry\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	reg := registrytest.Start(t)
	ref := reg.Addr + "/test/bb:1"
	skopeoPush(t, b, "bb", ref)
	b.Must("rmi", "bb")

	out := b.Must("pull", ref)
	for _, want := range []string{"1: Pulling from test/bb", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + ref, ref} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if got := b.Must("run", "--rm", ref, "cat", "/hello"); strings.TrimSpace(got) != "from the registry" {
		t.Errorf("run printed %q", got)
	}
	out = b.Must("pull", ref)
	if !strings.Contains(out, "Status: Image is up to date for "+ref) || !strings.Contains(out, "Already exists") {
		t.Errorf("second pull:\n%s", out)
	}
	digest := strings.TrimSpace(b.Must("pull", "-q", ref))
	if !strings.HasPrefix(digest, "sha256:") || strings.Contains(digest, "\n") {
		t.Errorf("pull -q printed %q, want the digest", digest)
	}
	// By digest, into a fresh root: the same image.
	b2 := testutil.NewEngine(t, berthBin, nil)
	b2.Must("pull", reg.Addr+"/test/bb@"+digest)
	if got := b2.Must("run", "--rm", reg.Addr+"/test/bb@"+digest, "cat", "/hello"); strings.TrimSpace(got) != "from the registry" {
		t.Errorf("run by digest printed %q", got)
	}

	// -a pulls every tag.
	skopeoPush(t, b, ref, reg.Addr+"/test/bb:2")
	b3 := testutil.NewEngine(t, berthBin, nil)
	out = b3.Must("pull", "-a", reg.Addr+"/test/bb")
	if !strings.Contains(out, reg.Addr+"/test/bb:1") || !strings.Contains(out, reg.Addr+"/test/bb:2") {
		t.Errorf("pull -a:\n%s", out)
	}
	images := b3.Must("images", "--format", "{{.Repository}}:{{.Tag}}")
	for _, tag := range []string{"1", "2"} {
		if !strings.Contains(images, reg.Addr+"/test/bb:"+tag) {
			t.Errorf("after pull -a, images lacks tag %s:\n%s", tag, images)
		}
	}
}

// TestPullErrorsCLI: a missing image gives one line and exit code 1.
func TestPullErrorsCLI(t *testing.T) {
	b := testutil.NewEngine(t, berthBin, nil)
	reg := registrytest.Start(t)
	_, errOut, code := b.Run("pull", reg.Addr+"/test/none:1")
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "test/none") {
		t.Errorf("pull of a missing image: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = b.Run("pull", "--platform", "linux", reg.Addr+"/test/none:1")
	if code != 1 || !strings.Contains(errOut, "--platform") {
		t.Errorf("bad --platform: exit %d, stderr %q", code, errOut)
	}
}
