package runtime

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOpts is a config mount's options split the way mount(2) wants them.
type mountOpts struct {
	flags       uintptr   // MS_* for the mount call itself
	propagation []uintptr // MS_SHARED etc., each applied by its own call
	data        []string  // filesystem-specific options, passed through
	bind        bool
	recursive   bool
}

var mountFlagTable = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propagationTable = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// ignoredOptions are accepted for compatibility with configs written for
// other runtimes but have no effect here.
var ignoredOptions = map[string]bool{"tmpcopyup": true, "nocopyup": true, "x-mount.mkdir": true}

func parseMountOptions(options []string) (mountOpts, error) {
	var o mountOpts
	for _, opt := range options {
		switch {
		case opt == "bind":
			o.bind = true
		case opt == "rbind":
			o.bind, o.recursive = true, true
		case ignoredOptions[opt]:
		case opt == "idmap" || opt == "ridmap":
			return o, fmt.Errorf("option %q (id-mapped mounts) is not supported by berth yet", opt)
		default:
			if f, ok := mountFlagTable[opt]; ok {
				if f.clear {
					o.flags &^= f.flag
				} else {
					o.flags |= f.flag
				}
			} else if p, ok := propagationTable[opt]; ok {
				o.propagation = append(o.propagation, p)
			} else if opt == "" {
				return o, fmt.Errorf("empty option")
			} else {
				o.data = append(o.data, opt)
			}
		}
	}
	return o, nil
}

func (o mountOpts) dataString() string { return strings.Join(o.data, ",") }
