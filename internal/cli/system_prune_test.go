package cli

import (
	"os"
	"strings"
	"testing"
)

// TestSystemDfAndPrune: df counts containers and volumes for real
// (total, running, what is reclaimable), and system prune removes, in
// Docker's order and words, the stopped containers, unused networks (the
// idle default bridge's kernel side too), with --volumes the unused
// anonymous volumes, and with -a every image no container uses; a
// running container and what it uses stay.
func TestSystemDfAndPrune(t *testing.T) {
	b := newBerth(t)
	running := runDetached(t, b, "--name", "up", "-v", "named:/named", "bb", "sleep", "100")
	stopped := b.Must("create", "--name", "down", "-v", "/anon", "bb", "sh", "-c", "true")
	b.Must("start", "-a", stopped)
	b.Must("network", "create", "idle")
	b.Must("run", "--rm", "bb", "true") // brings the default bridge up
	bridge := b.Must("network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.name"}}`, "bridge")

	df := b.Must("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}")
	if want := "Images 1 1\nContainers 2 1\nLocal Volumes 2 2\nBuild Cache 0 0"; df != want {
		t.Errorf("system df:\n%s\nwant:\n%s", df, want)
	}

	// No -f and no "y": nothing happens.
	out, _, code := b.RunInput(strings.NewReader("n\n"), "system", "prune")
	if code != 0 || !strings.Contains(out, "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all dangling images\n") {
		t.Errorf("system prune without -f: %d %q", code, out)
	}
	if b.Must("ps", "-aq", "--no-trunc", "--filter", "name=down") != stopped {
		t.Fatalf("a refused prune removed the stopped container")
	}

	out = b.Must("system", "prune", "-f", "--volumes")
	for _, want := range []string{"Deleted Containers:\n" + stopped + "\n", "Deleted Networks:\nidle\n", "Deleted Volumes:\n", "Total reclaimed space: "} {
		if !strings.Contains(out, want) {
			t.Errorf("system prune -f --volumes lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "named") || strings.Contains(out, running) {
		t.Errorf("system prune removed what a running container uses:\n%s", out)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err != nil {
		t.Errorf("system prune took down the default bridge %s, which a running container is on", bridge)
	}
	if got := b.Must("ps", "-aq", "--no-trunc"); got != running {
		t.Errorf("containers after prune: %q, want only %s", got, running)
	}

	// -a: the image goes once no container uses it.
	b.Must("rm", "-f", running)
	out = b.Must("system", "prune", "-af")
	if !strings.Contains(out, "Deleted Images:\nuntagged: bb:latest\ndeleted: sha256:") {
		t.Errorf("system prune -af:\n%s", out)
	}
	if imgs := b.Must("images", "-q"); imgs != "" {
		t.Errorf("images left after system prune -a: %q", imgs)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		t.Errorf("the default bridge %s is up with no container on it after system prune", bridge)
	}
	b.Must("volume", "rm", "named")
}

// TestPruneFilters: until= and label filters choose what the prunes take:
// an image and a container created "now" survive until=1h, a labeled
// stopped container goes with label=, stays with label!=.
func TestPruneFilters(t *testing.T) {
	b := newBerth(t)
	b.Must("tag", "bb", "extra:1")
	b.Must("rmi", "bb") // the image keeps one name, extra:1
	keep := b.Must("create", "--label", "keep=yes", "extra:1", "true")
	drop := b.Must("create", "--label", "tier=tmp", "extra:1", "true")

	// Nothing is older than an hour: nothing goes.
	if out := b.Must("system", "prune", "-af", "--filter", "until=1h"); strings.Contains(out, "Deleted") {
		t.Errorf("system prune --filter until=1h removed fresh objects:\n%s", out)
	}
	if out := b.Must("container", "prune", "-f", "--filter", "until=1h"); strings.Contains(out, "Deleted") {
		t.Errorf("container prune --filter until=1h:\n%s", out)
	}
	// label!= keeps the kept one; label= takes only its own.
	out := b.Must("container", "prune", "-f", "--filter", "label!=keep")
	if !strings.Contains(out, drop) || strings.Contains(out, keep) {
		t.Errorf("container prune --filter label!=keep:\n%s", out)
	}
	out = b.Must("system", "prune", "-f", "--filter", "label=keep=yes")
	if !strings.Contains(out, "Deleted Containers:\n"+keep) {
		t.Errorf("system prune --filter label=keep=yes:\n%s", out)
	}
	// Images: until in the future takes the now unused image; bad filters are refused.
	out = b.Must("image", "prune", "-af", "--filter", "until=2999-01-01T00:00:00Z")
	if !strings.Contains(out, "untagged: extra:1") {
		t.Errorf("image prune -a --filter until=2999:\n%s", out)
	}
	for _, args := range [][]string{
		{"image", "prune", "-f", "--filter", "until=soon"},
		{"image", "prune", "-f", "--filter", "name=x"},
		{"system", "prune", "-f", "--volumes", "--filter", "until=1h"},
	} {
		if _, errs, code := b.Run(args...); code != 1 || errs == "" {
			t.Errorf("%v: exit %d %q, want 1 (as docker) and a message", args, code, errs)
		}
	}
}
