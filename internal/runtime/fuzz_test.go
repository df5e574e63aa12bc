package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

// FuzzParseSpec feeds config.json bytes to ParseSpec and every config it
// accepts to Validate, then every config Validate accepts to the planners
// Create runs on it. Whatever the config holds (nulls in place of any
// object, empty or huge lists, hostile paths), nothing panics, every error
// carries an errdefs class and starts with the config field at fault, and
// the namespace plan reaches the C stage intact.
//
// Validate only reads the filesystem (stat, lstat, readlink of paths the
// config names, and the host's cgroup mounts), so one bundle serves every
// input. Seeds are in testdata/fuzz/FuzzParseSpec.
func FuzzParseSpec(f *testing.F) {
	if def, err := json.Marshal(DefaultSpec()); err == nil {
		f.Add(def)
	}
	bundle := f.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		f.Fatal(err)
	}
	// Top-level config fields Validate may name first.
	fields := []string{"ociVersion", "root", "process", "linux", "mounts", "hostname", "domainname", "hooks"}
	named := func(msg string) bool {
		for _, f := range fields {
			if rest, ok := strings.CutPrefix(msg, f); ok && rest != "" && strings.ContainsRune(".[:", rune(rest[0])) {
				return true
			}
		}
		return false
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := ParseSpec(data)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "config.json: ") {
				t.Fatalf("ParseSpec error %q: want config.json: ... wrapping ErrInvalidArgument", err)
			}
			return
		}
		if spec == nil {
			t.Fatal("ParseSpec returned neither a spec nor an error")
		}
		if err := Validate(spec, bundle); err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrFailedPrecondition) &&
				!errors.Is(err, errdefs.ErrNotImplemented) {
				t.Fatalf("Validate error %q has no errdefs class", err)
			}
			if !named(err.Error()) {
				t.Fatalf("Validate error %q does not start with a config field", err)
			}
			return
		}

		// What Create does with a valid config before any kernel object
		// exists.
		plan := planNamespaces(spec.Linux.Namespaces)
		if got, err := decodeNSPlan(plan.encode()); err != nil || !reflect.DeepEqual(got, plan) {
			t.Fatalf("namespace plan %+v reads back as %+v (%v)", plan, got, err)
		}
		for i, m := range spec.Mounts {
			if _, err := parseMountOptions(m.Options); err != nil {
				t.Fatalf("mounts[%d].options passed Validate but not parseMountOptions: %v", i, err)
			}
		}
		_ = planCaps(spec.Process.Capabilities)
		_ = withDeviceRules(spec)
		_, _ = hostRoot(spec)
	})
}
