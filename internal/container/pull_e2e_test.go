package container_test

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/registry/server"
)

// TestRunPullsMissingImage: run and create pull an image they do not have
// from its registry (berth's own, in this process, on 127.0.0.1), with
// Docker's "Unable to find image" and the pull's progress on stderr, the
// container's output alone on stdout; --pull never refuses and --pull
// always pulls even when the image is here. A registry that cannot be
// reached fails run with 125 and create with 1, as docker's. Every
// reference here names 127.0.0.1: nothing goes further.
func TestRunPullsMissingImage(t *testing.T) {
	b := newBerth(t)
	store, err := server.Open(filepath.Join(t.TempDir(), "reg"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(store, server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/bb:1"
	b.Must("tag", "bb", ref)
	b.Must("push", ref)
	b.Must("rmi", ref)

	if _, errs, code := b.Run("run", "--rm", "--pull", "never", ref, "true"); code != 125 || !strings.Contains(errs, "No such image: "+ref) {
		t.Errorf("run --pull never of a missing image: %d %q", code, errs)
	}
	out, errs, code := b.Run("run", "--rm", ref, "echo", "pulled")
	if code != 0 || out != "pulled\n" || !strings.Contains(errs, "Unable to find image '"+ref+"' locally") ||
		!strings.Contains(errs, "Status: Downloaded newer image for "+ref) {
		t.Errorf("run of a missing image: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if _, errs, code := b.Run("create", "--pull", "always", ref, "true"); code != 0 || !strings.Contains(errs, "Status: Image is up to date for "+ref) || strings.Contains(errs, "Unable to find") {
		t.Errorf("create --pull always: %d %q", code, errs)
	}
	if _, errs, code := b.Run("run", "--rm", "--pull", "sometimes", ref, "true"); code != 125 || !strings.Contains(errs, "invalid pull option") {
		t.Errorf("run --pull sometimes: %d %q", code, errs)
	}
	const unreachable = "127.0.0.1:1/nosuch:1" // port 1: nothing listens
	if _, errs, code := b.Run("run", "--rm", unreachable, "true"); code != 125 || !strings.Contains(errs, "Unable to find image '"+unreachable+"' locally") {
		t.Errorf("run from an unreachable registry: %d %q", code, errs)
	}
	if _, errs, code := b.Run("create", unreachable); code != 1 || errs == "" {
		t.Errorf("create from an unreachable registry: %d %q", code, errs)
	}
	if ids := b.Must("ps", "-aq"); ids != "" {
		b.Must(append([]string{"rm"}, strings.Fields(ids)...)...)
	}
}
