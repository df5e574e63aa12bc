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

// TestPushPullBack: an image imported in berth and pushed to Debian's
// docker-registry is read back by skopeo under the digest berth printed,
// pulled back into a fresh root and run; a second push uploads nothing,
// a push to another repository mounts the blobs, push -a pushes every
// local tag.
func TestPushPullBack(t *testing.T) {
	b := testutil.NewEngine(t, berthBin, func(rootfs string) {
		if err := os.WriteFile(filepath.Join(rootfs, "hello"), []byte("pushed by berth\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	reg := registrytest.Start(t)
	ref := reg.Addr + "/team/bb:1"
	b.Must("tag", "bb", ref)
	out := b.Must("push", ref)
	if !strings.Contains(out, "The push refers to repository ["+reg.Addr+"/team/bb]") || !strings.Contains(out, ": Pushed") {
		t.Errorf("push output:\n%s", out)
	}
	var digest string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[0] == "1:" && f[1] == "digest:" && f[3] == "size:" {
			digest = f[2]
		}
	}
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("push printed no '1: digest: ... size: N' line:\n%s", out)
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		got, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", "docker://"+ref).CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != digest {
			t.Errorf("skopeo inspect: %s (%v), want %s", got, err, digest)
		}
		dir := t.TempDir()
		if got, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+dir+":x").CombinedOutput(); err != nil {
			t.Errorf("skopeo copy (which verifies every blob): %v\n%s", err, got)
		}
	}
	if !strings.Contains(b.Must("image", "inspect", "--format", "{{.RepoDigests}}", ref), reg.Addr+"/team/bb@"+digest) {
		t.Errorf("the pushed repository digest is not recorded")
	}

	b2 := testutil.NewEngine(t, berthBin, nil)
	b2.Must("pull", ref)
	if got := b2.Must("run", "--rm", ref, "cat", "/hello"); strings.TrimSpace(got) != "pushed by berth" {
		t.Errorf("run of the pulled-back image printed %q", got)
	}

	out = b.Must("push", ref)
	if strings.Contains(out, "Pushed") || !strings.Contains(out, "Layer already exists") {
		t.Errorf("second push uploaded again:\n%s", out)
	}
	other := reg.Addr + "/other/bb:1"
	b.Must("tag", "bb", other)
	out = b.Must("push", other)
	if !strings.Contains(out, "Mounted from team/bb") {
		t.Errorf("push to another repository did not mount:\n%s", out)
	}

	b.Must("tag", "bb", reg.Addr+"/team/bb:2")
	out = b.Must("push", "-a", reg.Addr+"/team/bb")
	if !strings.Contains(out, "1: digest: "+digest) || !strings.Contains(out, "2: digest: "+digest) {
		t.Errorf("push -a:\n%s", out)
	}
	_, errOut, code := b.Run("push", reg.Addr+"/team/none:1")
	if code != 1 || !strings.Contains(errOut, "An image does not exist locally with the tag: "+reg.Addr+"/team/none") {
		t.Errorf("push of a missing image: exit %d, %q", code, errOut)
	}
}

// TestLoginCLI: berth login/logout as a user types them, against a
// registry behind token auth; push and pull use what login stored.
func TestLoginCLI(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	b := testutil.NewEngine(t, berthBin, nil)
	reg := registrytest.Start(t, registrytest.WithBasicAuth("alice", "s3cret"), registrytest.WithTokenAuth("berth-test-issuer"))
	ref := reg.Addr + "/team/bb:1"
	b.Must("tag", "bb", ref)

	_, errOut, code := b.Run("push", ref)
	if code != 1 || !strings.Contains(errOut, "berth login") {
		t.Errorf("push before login: exit %d, %q", code, errOut)
	}
	out, errOut, code := b.RunInput(strings.NewReader("wrong\n"), "login", "-u", "alice", "--password-stdin", reg.Addr)
	if code != 1 || !strings.Contains(errOut, "incorrect username or password") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("wrong password: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = b.RunInput(strings.NewReader("s3cret\n"), "login", "-u", "alice", "-p", "x", "--password-stdin", reg.Addr)
	if code != 1 || !strings.Contains(errOut, "mutually exclusive") {
		t.Errorf("-p with --password-stdin: exit %d, %q", code, errOut)
	}
	_, errOut, code = b.RunInput(strings.NewReader("s3cret\n"), "login", "--password-stdin", reg.Addr)
	if code != 1 || !strings.Contains(errOut, "Must provide --username with --password-stdin") {
		t.Errorf("--password-stdin without -u: exit %d, %q", code, errOut)
	}
	out, errOut, code = b.RunInput(strings.NewReader("s3cret\n"), "login", "-u", "alice", "--password-stdin", reg.Addr)
	if code != 0 || strings.TrimSpace(out) != "Login Succeeded" {
		t.Fatalf("login: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	b.Must("push", ref)
	b2 := testutil.NewEngine(t, berthBin, nil)
	b2.Must("pull", ref)
	if got := b.Must("logout", reg.Addr); got != "Removing login credentials for "+reg.Addr {
		t.Errorf("logout printed %q", got)
	}
	if got := b.Must("logout", reg.Addr); got != "Not logged in to "+reg.Addr {
		t.Errorf("second logout printed %q", got)
	}
	if _, _, code := b2.Run("pull", ref); code != 1 {
		t.Errorf("pull after logout: exit %d, want 1", code)
	}
}
