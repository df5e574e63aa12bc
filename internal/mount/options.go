package mount

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Flag is an option that sets (or, with Clear, clears) a mount(2) flag.
type Flag struct {
	Clear bool
	Flag  uintptr
}

// Flags are the options that are mount(2) flags rather than data.
var Flags = map[string]Flag{
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

// Propagation are the options that change a mount's propagation, each
// applied by a mount(2) call of its own after the mount.
var Propagation = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// Options is a list of options split the way mount(2) wants them. Bind
// and Recursive are kept out of Flags: a bind mount ignores every other
// flag on its first call and needs a remount to apply them.
type Options struct {
	Flags       uintptr
	Propagation []uintptr
	Data        []string // filesystem options, in their order
	Bind        bool
	Recursive   bool
}

// Parse splits options; anything that is not a flag, a propagation or
// bind/rbind is filesystem data. Later options override earlier ones, as
// mount(8) does ("ro,rw" is read-write).
func Parse(options []string) Options {
	var o Options
	for _, opt := range options {
		switch opt {
		case "bind":
			o.Bind = true
			continue
		case "rbind":
			o.Bind, o.Recursive = true, true
			continue
		}
		if f, ok := Flags[opt]; ok {
			if f.Clear {
				o.Flags &^= f.Flag
			} else {
				o.Flags |= f.Flag
			}
		} else if p, ok := Propagation[opt]; ok {
			o.Propagation = append(o.Propagation, p)
		} else {
			o.Data = append(o.Data, opt)
		}
	}
	return o
}

// DataString is Data as mount(2)'s data argument.
func (o Options) DataString() string { return strings.Join(o.Data, ",") }
