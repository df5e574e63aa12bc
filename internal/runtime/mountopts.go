package runtime

import (
	"fmt"
	"strings"

	"github.com/berth-dev/berth/internal/mount"
)

// mountOpts is a config mount's options split the way mount(2) wants them.
type mountOpts struct {
	flags       uintptr   // MS_* for the mount call itself
	propagation []uintptr // MS_SHARED etc., each applied by its own call
	data        []string  // filesystem-specific options, passed through
	bind        bool
	recursive   bool
}

// The option tables are package mount's, shared with the snapshotter.
var (
	mountFlagTable   = mount.Flags
	propagationTable = mount.Propagation
)

// ignoredOptions are accepted for compatibility with configs written for
// other runtimes but have no effect here.
var ignoredOptions = map[string]bool{"tmpcopyup": true, "nocopyup": true, "x-mount.mkdir": true}

func parseMountOptions(options []string) (mountOpts, error) {
	kept := make([]string, 0, len(options))
	for _, opt := range options {
		switch {
		case ignoredOptions[opt]:
		case opt == "idmap" || opt == "ridmap":
			return mountOpts{}, fmt.Errorf("option %q (id-mapped mounts) is not supported by berth yet", opt)
		case opt == "":
			return mountOpts{}, fmt.Errorf("empty option")
		default:
			kept = append(kept, opt)
		}
	}
	p := mount.Parse(kept)
	return mountOpts{flags: p.Flags, propagation: p.Propagation, data: p.Data, bind: p.Bind, recursive: p.Recursive}, nil
}

func (o mountOpts) dataString() string { return strings.Join(o.data, ",") }
