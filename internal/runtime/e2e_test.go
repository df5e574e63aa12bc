package runtime_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/testutil"
)

// berthBin is the berth binary the end-to-end tests drive, built once.
var berthBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		// A helper process (TestConsoleReceiver) needs no binary.
		if os.Geteuid() == 0 && !testing.Short() && os.Getenv("BERTH_CONSOLE_RECEIVER") == "" {
			dir, err := os.MkdirTemp("", "berth-e2e-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			berthBin = filepath.Join(dir, "berth")
			build := exec.Command("go", "build", "-o", berthBin, "github.com/berth-dev/berth/cmd/berth")
			build.Stderr = os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "build berth:", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// env is one test's bundle and state root.
type env struct {
	t      *testing.T
	dir    string
	bundle string
	root   string
	spec   *specs.Spec
}

// newEnv makes a busybox bundle with berth's default config, non-interactive,
// with cgroups under a path unique to the test.
func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequiresRoot(t)
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.BusyboxRootfs(t, bundle)
	spec := runtime.DefaultSpec()
	spec.Process.Terminal = false
	spec.Root.Readonly = false
	spec.Process.Args = []string{"true"}
	e := &env{t: t, dir: dir, bundle: bundle, root: filepath.Join(dir, "state"), spec: spec}
	t.Cleanup(func() {
		// Whatever a test left running is killed and deleted.
		out, _ := exec.Command(berthBin, "runtime", "--root", e.root, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command(berthBin, "runtime", "--root", e.root, "delete", "--force", id).Run()
		}
	})
	return e
}

func (e *env) writeSpec() {
	e.t.Helper()
	data, err := json.MarshalIndent(e.spec, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.bundle, "config.json"), data, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// cgroupPath gives the container a cgroup unique to this test.
func (e *env) cgroupPath(id string) string {
	p := fmt.Sprintf("/berth-test/%s-%d", id, time.Now().UnixNano())
	e.spec.Linux.CgroupsPath = p
	return p
}

type result struct {
	stdout, stderr string
	code           int
}

// berth runs `berth runtime --root <root> args...` in the bundle.
func (e *env) berth(args ...string) result {
	e.t.Helper()
	cmd := exec.Command(berthBin, append([]string{"runtime", "--root", e.root}, args...)...)
	cmd.Dir = e.bundle
	// Files, not pipes: a detached container inherits berth's stdio and
	// would hold a pipe open long after berth exits.
	outF, err := os.CreateTemp(e.dir, "stdout")
	if err != nil {
		e.t.Fatal(err)
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp(e.dir, "stderr")
	if err != nil {
		e.t.Fatal(err)
	}
	defer os.Remove(errF.Name())
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	err = cmd.Run()
	out, _ := os.ReadFile(outF.Name())
	errb, _ := os.ReadFile(errF.Name())
	r := result{stdout: string(out), stderr: string(errb)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("berth %v: %v", args, err)
	}
	return r
}

func (e *env) mustBerth(args ...string) string {
	e.t.Helper()
	r := e.berth(args...)
	if r.code != 0 {
		e.t.Fatalf("berth %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// run runs the container with args as its process and returns its output.
func (e *env) run(args ...string) result {
	e.t.Helper()
	e.spec.Process.Args = args
	e.writeSpec()
	return e.berth("run", fmt.Sprintf("c%d", time.Now().UnixNano()))
}

func (e *env) state(id string) runtime.State {
	e.t.Helper()
	var st runtime.State
	if err := json.Unmarshal([]byte(e.mustBerth("state", id)), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func TestRunIsolation(t *testing.T) {
	e := newEnv(t)
	e.spec.Hostname = "iso-test"
	e.cgroupPath("iso")
	r := e.run("sh", "-c", `echo pid=$$; hostname; ls /sys/class/net; grep CapEff /proc/self/status; echo timer_list=$(cat /proc/timer_list | wc -c); echo firmware=$(ls /sys/firmware | wc -l)`)
	if r.code != 0 {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	want := []string{"pid=1\n", "iso-test\n", "\nlo\n", "CapEff:\t00000000a80425fb\n", "timer_list=0\n", "firmware=0\n"}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
	// The masked paths must hide something that is there on the host.
	if data, _ := os.ReadFile("/proc/timer_list"); len(data) == 0 {
		t.Error("host /proc/timer_list is empty: masking proves nothing")
	}
	if ents, _ := os.ReadDir("/sys/firmware"); len(ents) == 0 {
		t.Error("host /sys/firmware is empty: masking proves nothing")
	}
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	if r := e.run("sh", "-c", "exit 3"); r.code != 3 {
		t.Errorf("exit 3: got %d", r.code)
	}
	r := e.run("no-such-program")
	if r.code != 1 || !strings.Contains(r.stderr, "executable file not found") {
		t.Errorf("missing program: exit %d, stderr %q", r.code, r.stderr)
	}
}
