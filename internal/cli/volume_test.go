package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// runVolume runs berth with the volume verbs registered (whether or not
// cli.go registers them yet), stdin from in, and returns stdout and
// stderr apart.
func runVolume(t *testing.T, in string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCommand()
	registered := false
	for _, c := range root.Commands() {
		registered = registered || c.Name() == "volume"
	}
	if !registered {
		addVolumeCommands(root)
	}
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(in))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

// TestVolumeVerbs drives the volume verbs as a user would, against a fresh
// --root.
func TestVolumeVerbs(t *testing.T) {
	root := t.TempDir()
	t.Setenv("BERTH_ROOT", root)
	must := func(args ...string) string {
		t.Helper()
		out, errOut, err := runVolume(t, "", args...)
		if err != nil {
			t.Fatalf("berth %v: %v\n%s%s", args, err, out, errOut)
		}
		return out
	}
	if out := must("volume", "create", "--label", "app=web", "--label", "tier", "data"); out != "data\n" {
		t.Errorf("create printed %q", out)
	}
	if out := must("volume", "create", "data"); out != "data\n" {
		t.Errorf("second create printed %q", out)
	}
	anon := strings.TrimSpace(must("volume", "create"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(anon) {
		t.Errorf("anonymous create printed %q", anon)
	}
	must("volume", "create", "-d", "local", "other")

	// Sorted by name: where the random anonymous name falls depends on
	// its first hex digit.
	names := []string{anon, "data", "other"}
	sort.Strings(names)
	want := "DRIVER    VOLUME NAME\n"
	for _, n := range names {
		want += "local     " + n + "\n"
	}
	if out := must("volume", "ls"); out != want {
		t.Errorf("ls:\n%s\nwant\n%s", out, want)
	}
	if out := must("volume", "ls", "--format", "table {{.Name}}\t{{.Scope}}", "--filter", "name=^o"); out != "VOLUME NAME   SCOPE\nother         local\n" {
		t.Errorf("ls --format table: %q", out)
	}
	if out := must("volume", "ls", "-q", "--filter", "label=app=web"); out != "data\n" {
		t.Errorf("ls --filter label: %q", out)
	}
	if out := must("volume", "list", "--filter", "name=oth", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"); out != "other local local\n" {
		t.Errorf("ls --filter name --format: %q", out)
	}
	if out := must("volume", "ls", "-f", "dangling=true", "-q"); strings.Count(out, "\n") != 3 {
		t.Errorf("ls dangling=true: %q", out)
	}
	if out := must("volume", "ls", "--filter", "label=tier", "--format", `{{.Labels}} {{.Label "app"}}`); out != "app=web,tier= web\n" {
		t.Errorf("ls --format Labels: %q", out)
	}

	var ins []map[string]any
	if err := json.Unmarshal([]byte(must("volume", "inspect", "data")), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	mp := filepath.Join(root, "volumes", "data", "_data")
	if ins[0]["Name"] != "data" || ins[0]["Driver"] != "local" || ins[0]["Scope"] != "local" || ins[0]["Mountpoint"] != mp {
		t.Errorf("inspect: %v", ins[0])
	}
	if labels, _ := ins[0]["Labels"].(map[string]any); labels["app"] != "web" || labels["tier"] != "" {
		t.Errorf("inspect labels: %v", ins[0]["Labels"])
	}
	if opts, ok := ins[0]["Options"]; !ok || opts != nil {
		t.Errorf("inspect options: %v, want null as dockerd", opts)
	}
	if ts, _ := ins[0]["CreatedAt"].(string); func() error { _, err := time.Parse(time.RFC3339, ts); return err }() != nil {
		t.Errorf("inspect CreatedAt %q is not RFC 3339", ts)
	}
	if out := must("volume", "inspect", "--format", "{{.Name}} {{.Mountpoint}}", "data", "other"); out != "data "+mp+"\nother "+filepath.Join(root, "volumes", "other", "_data")+"\n" {
		t.Errorf("inspect --format: %q", out)
	}
	out, _, err := runVolume(t, "", "volume", "inspect", "data", "missing")
	if err == nil || !strings.Contains(userMessage(err), "get missing: no such volume") || !strings.Contains(out, `"Name": "data"`) {
		t.Errorf("inspect of one missing: %v\n%s", err, out)
	}

	// Refusals: one line that says what was wrong.
	for _, args := range [][]string{
		{"volume", "create", "-d", "nfs", "x1"},
		{"volume", "create", "-o", "type=tmpfs", "x2"},
		{"volume", "create", "bad/name"},
		{"volume", "create", "--name", "a1", "b1"},
		{"volume", "ls", "--filter", "until=1h"},
	} {
		var ee exitError
		if _, _, err := runVolume(t, "", args...); err == nil || errors.As(err, &ee) || strings.Contains(userMessage(err), "\n") {
			t.Errorf("%v: %v, want one engine error line (exit 125)", args, err)
		}
	}

	// rm: per-name errors on stderr, exit 1, the rest removed.
	volumeInUse = func(r, name string) []string {
		if r == root && name == "other" {
			return []string{"c0ffee"}
		}
		return nil
	}
	t.Cleanup(func() { volumeInUse = func(string, string) []string { return nil } })
	out, errOut, err := runVolume(t, "", "volume", "rm", "data", "missing", "other")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || out != "data\n" ||
		errOut != "Error response from berth: get missing: no such volume\nError response from berth: remove other: volume is in use - [c0ffee]\n" {
		t.Errorf("rm: %v\nstdout %q\nstderr %q", err, out, errOut)
	}
	if out := must("volume", "rm", "-f", "missing"); out != "missing\n" {
		t.Errorf("rm -f missing: %q", out)
	}
	if _, err := os.Stat(mp); !os.IsNotExist(err) {
		t.Errorf("data's directory survives rm: %v", err)
	}
	if out := must("volume", "ls", "-q", "--filter", "dangling=false"); out != "other\n" {
		t.Errorf("ls dangling=false: %q", out)
	}

	// prune: asks first; anonymous only unless -a; in-use volumes stay.
	os.WriteFile(filepath.Join(root, "volumes", anon, "_data", "f"), make([]byte, 1200), 0o644)
	out, _, err = runVolume(t, "n\n", "volume", "prune")
	if err != nil || out != "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] " {
		t.Errorf("prune, answered no: %v %q", err, out)
	}
	if out := must("volume", "ls", "-q"); strings.Count(out, "\n") != 2 {
		t.Errorf("prune answered no removed something: %q", out)
	}
	out, _, err = runVolume(t, "y\n", "volume", "prune")
	if err != nil || !strings.HasSuffix(out, "[y/N] Deleted Volumes:\n"+anon+"\n\nTotal reclaimed space: 1.2kB\n") {
		t.Errorf("prune: %v %q", err, out)
	}
	must("volume", "create", "--label", "keep=1", "kept")
	must("volume", "create", "gone")
	if out := must("volume", "prune", "-f", "-a", "--filter", "label!=keep"); out != "Deleted Volumes:\ngone\n\nTotal reclaimed space: 0B\n" {
		t.Errorf("prune -a --filter label!=keep: %q", out)
	}
	if out := must("volume", "prune", "-f", "--filter", "all=true"); out != "Deleted Volumes:\nkept\n\nTotal reclaimed space: 0B\n" {
		t.Errorf("prune --filter all=true: %q", out)
	}
	if out := must("volume", "ls", "-q"); out != "other\n" {
		t.Errorf("after prunes: %q", out)
	}
}
