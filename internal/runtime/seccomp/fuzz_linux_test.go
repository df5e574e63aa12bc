package seccomp

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
)

// FuzzCompile feeds linux.seccomp JSON to the compiler for every
// architecture with tables. A config is either refused with a classified
// error or compiles to a program the kernel would accept (at most 4096
// instructions, every jump inside it, ending in a return) that agrees with
// the model on every probe.
func FuzzCompile(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cfg specs.LinuxSeccomp
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return
		}
		for _, goarch := range goarches() {
			fl, err := compile(&cfg, goarch)
			if err != nil {
				if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) {
					t.Fatalf("%s: unclassified error: %v", goarch, err)
				}
				continue
			}
			if err := verify(fl.prog); err != nil {
				t.Fatalf("%s: invalid program: %v\n%s", goarch, err, disasm(fl.prog))
			}
			agree(t, &cfg, goarch, 2)
		}
	})
}
