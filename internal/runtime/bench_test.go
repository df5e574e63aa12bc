package runtime_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/testutil"
)

// BenchmarkRun times `run` of a busybox `true` for berth and, when they are
// installed, runc (crun needs this machine's cgroup workaround: see
// bench/runtime.sh, which also measures memory). Compare with
//
//	go test -run '^$' -bench BenchmarkRun ./internal/runtime/
func BenchmarkRun(b *testing.B) {
	testutil.RequiresRoot(b)
	if berthBin == "" {
		b.Skip("berth binary not built (needs root, not -short)")
	}
	dir := b.TempDir()
	bundle := filepath.Join(dir, "bundle")
	os.MkdirAll(bundle, 0o755)
	testutil.BusyboxRootfs(b, bundle)
	spec := runtime.DefaultSpec()
	spec.Version = "1.0.2" // the oldest version every peer accepts
	spec.Process.Terminal = false
	spec.Process.Args = []string{"true"}
	data, _ := json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)

	peers := []struct{ name, bin string }{{"berth", berthBin}, {"runc", "runc"}}
	for _, p := range peers {
		path, err := exec.LookPath(p.bin)
		if err != nil {
			continue
		}
		args := []string{"--root", filepath.Join(dir, p.name), "run", "bench"}
		if p.name == "berth" {
			args = append([]string{"runtime"}, args...)
		}
		b.Run(p.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(path, args...)
				cmd.Dir = bundle
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s run: %v %s", p.name, err, out)
				}
			}
		})
	}
}
