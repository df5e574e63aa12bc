package opts

import (
	"encoding/csv"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/mount"
)

// The mount types.
const (
	TypeBind   = "bind"
	TypeVolume = "volume"
	TypeTmpfs  = "tmpfs"
)

// Mount is one mount asked for with -v, --mount or --tmpfs: what to mount
// where, before any volume exists or any path is looked at.
type Mount struct {
	Type string // TypeBind, TypeVolume or TypeTmpfs

	// Source is the host path of a bind (absolute, cleaned), the name of a
	// volume ("" for an anonymous volume), and empty for a tmpfs.
	Source string
	Target string // absolute and cleaned, never "/"

	ReadOnly bool

	// Propagation is the bind's mount propagation: rprivate unless the
	// user chose private, shared, rshared, slave or rslave. Empty for the
	// other types.
	Propagation string
	// CreateSource makes a missing bind source directory instead of
	// failing: Docker does that for -v, and for --mount only with
	// bind-create-src.
	CreateSource bool
	// NonRecursive binds only the source mount, not the mounts below it
	// (--mount bind-recursive=disabled).
	NonRecursive bool

	// NoCopy stops a new volume from being filled with the image's content
	// at Target (-v ...:nocopy, --mount volume-nocopy).
	NoCopy bool

	// TmpfsSize (bytes, 0 for the kernel's default) and TmpfsMode (0 for
	// the default 1777) come from --mount tmpfs-size and tmpfs-mode.
	TmpfsSize int64
	TmpfsMode uint32
	// Options are the --tmpfs options as typed ("rw", "size=64m",
	// "mode=1777"), checked against the options Docker allows. Size and
	// mode given this way stay here, in mount(8) syntax, and TmpfsSize and
	// TmpfsMode stay 0. TmpfsOptions merges both forms.
	Options []string
}

// Modes of -v: Docker's Linux parser accepts one of each group.
var (
	rwModes          = map[string]bool{"rw": true, "ro": true}
	labelModes       = map[string]bool{"z": true, "Z": true} // SELinux relabelling; berth has no SELinux support, so they do nothing
	propagationModes = map[string]bool{"private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true, "rslave": true}
	copyModes        = map[string]bool{"nocopy": true}
	consistencyModes = map[string]bool{"consistent": true, "cached": true, "delegated": true} // Docker Desktop file sharing hints, meaningless on Linux
	modeGroups       = []map[string]bool{rwModes, labelModes, propagationModes, copyModes, consistencyModes}
)

// validMode reports whether mode is a -v option list Docker accepts: each
// option known, at most one from each group.
func validMode(mode string) bool {
	if mode == "" {
		return true
	}
	count := make([]int, len(modeGroups))
	for _, o := range strings.Split(mode, ",") {
		known := false
		for i, g := range modeGroups {
			if g[o] {
				count[i]++
				known = true
				if count[i] > 1 {
					return false
				}
			}
		}
		if !known {
			return false
		}
	}
	return true
}

// ParseVolume parses -v/--volume, with the rules of Docker's client and
// Linux daemon together:
//
//	/host/path:/ctr[:opts]   bind mount of an absolute host path
//	./rel/path:/ctr[:opts]   bind mount, made absolute against the working directory
//	name:/ctr[:opts]         named volume, name matching [a-zA-Z0-9][a-zA-Z0-9_.-]+
//	/ctr                     anonymous volume
//
// opts is a comma-separated list with at most one of each: ro or rw;
// z or Z (accepted, ignored); nocopy (volumes only); a propagation,
// private, rprivate, shared, rshared, slave or rslave (binds only); and
// consistent, cached or delegated (accepted, ignored). A missing bind
// source is created, as Docker does for -v.
func ParseVolume(spec string) (Mount, error) {
	fail := func(why string) (Mount, error) {
		return Mount{}, fmt.Errorf("invalid volume specification %q: %s: %w", spec, why, errdefs.ErrInvalidArgument)
	}
	arr := strings.SplitN(spec, ":", 4)
	if arr[0] == "" {
		return fail("write [SOURCE:]TARGET[:OPTIONS], such as /host/dir:/data:ro or myvolume:/data")
	}
	var src, dst, mode string
	switch len(arr) {
	case 1:
		dst = arr[0]
	case 2:
		if validMode(arr[1]) {
			// "/data:ro": a volume needs a source before it takes options.
			return fail("options need a source, write SOURCE:TARGET:OPTIONS, or name the target alone for an anonymous volume")
		}
		src, dst = arr[0], arr[1]
	case 3:
		src, dst, mode = arr[0], arr[1], arr[2]
	default:
		return fail("too many colons, write [SOURCE:]TARGET[:OPTIONS]")
	}
	if !validMode(mode) {
		return fail(fmt.Sprintf("invalid mode %q: use a comma-separated list with at most one of ro|rw, z|Z, nocopy, a propagation (private, rprivate, shared, rshared, slave, rslave)", mode))
	}

	m := Mount{Type: TypeVolume, Source: src}
	if src != "" && !path.IsAbs(src) && strings.HasPrefix(src, ".") {
		// Docker's client makes "./dir" and "../dir" absolute; "~" is not
		// expanded and fails below as a volume name.
		if abs, err := filepath.Abs(src); err == nil {
			m.Source = abs
		}
	}
	if path.IsAbs(m.Source) {
		m.Type = TypeBind
	}
	var propagation string
	nocopy := false
	for _, o := range strings.Split(mode, ",") {
		switch {
		case o == "ro":
			m.ReadOnly = true
		case propagationModes[o]:
			propagation = o
		case o == "nocopy":
			nocopy = true
		}
	}

	if err := checkTarget(dst); err != nil {
		return fail(err.Error())
	}
	m.Target = path.Clean(dst)
	switch m.Type {
	case TypeBind:
		if nocopy {
			return fail("nocopy applies to volumes, not to bind mounts")
		}
		m.Source = path.Clean(m.Source)
		m.Propagation = "rprivate"
		if propagation != "" {
			m.Propagation = propagation
		}
		m.CreateSource = true
	case TypeVolume:
		if propagation != "" {
			return fail(fmt.Sprintf("propagation %q applies to bind mounts, not to volumes", propagation))
		}
		if m.Source != "" {
			if err := checkVolumeName(m.Source); err != nil {
				return fail(err.Error())
			}
		}
		m.NoCopy = nocopy
	}
	return m, nil
}

// checkTarget is Docker's check of a mount destination.
func checkTarget(dst string) error {
	switch {
	case dst == "":
		return fmt.Errorf("target is required")
	case path.Clean(dst) == "/":
		return fmt.Errorf("destination can't be '/'")
	case !path.IsAbs(dst):
		return fmt.Errorf("invalid mount path: %q mount path must be absolute", dst)
	}
	return nil
}

// checkVolumeName is the check of Docker's local volume driver.
func checkVolumeName(name string) error {
	if len(name) == 1 {
		return fmt.Errorf("volume name %q is too short, names should be at least two alphanumeric characters", name)
	}
	if !IsName(name, 2, 0) {
		return fmt.Errorf(`%q includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`, name)
	}
	return nil
}

// ParseMount parses --mount, a CSV list of KEY=VALUE fields (read with
// encoding/csv, so a value holding a comma is quoted):
//
//	type=bind|volume|tmpfs           default volume
//	source=, src=                    host path (bind; "./x" is made absolute) or volume name
//	target=, dst=, destination=      path in the container (required)
//	readonly, ro[=true|false|1|0]
//	bind-propagation=                private, rprivate, shared, rshared, slave, rslave
//	bind-recursive=enabled|disabled
//	bind-create-src[=BOOL]           create a missing source, which otherwise is an error
//	volume-nocopy[=BOOL]
//	volume-driver=local
//	volume-opt=, volume-label=       accepted and ignored: they only configure a volume the
//	                                 driver creates, and berth's local volumes take none
//	tmpfs-size=                      a size as ParseMemory reads it
//	tmpfs-mode=                      octal permission bits
//	consistency=                     accepted and ignored (Docker Desktop only)
//
// Keys are case-insensitive. Options of one type may not be used with
// another (bind-* with type=volume...). The image and cluster types,
// volume-subpath, other volume drivers and bind-recursive=writable|readonly
// are refused with errdefs.ErrNotImplemented.
func ParseMount(spec string) (Mount, error) {
	fail := func(class error, format string, args ...any) (Mount, error) {
		return Mount{}, fmt.Errorf("invalid --mount %q: %s: %w", spec, fmt.Sprintf(format, args...), class)
	}
	value := strings.TrimSpace(spec)
	if value == "" {
		return fail(errdefs.ErrInvalidArgument, "value is empty")
	}
	fields, err := csv.NewReader(strings.NewReader(value)).Read()
	if err != nil {
		return fail(errdefs.ErrInvalidArgument, "not a comma-separated list of KEY=VALUE: %v", err)
	}

	m := Mount{Type: TypeVolume}
	var sawBind, sawVolume, sawTmpfs, createSrc bool
	for _, field := range fields {
		key, val, hasValue := strings.Cut(field, "=")
		if strings.TrimSpace(key) != key {
			return fail(errdefs.ErrInvalidArgument, "invalid option %q in %q: option should not have whitespace", strings.TrimSpace(key), field)
		}
		if hasValue {
			if v := strings.TrimSpace(val); v == "" {
				return fail(errdefs.ErrInvalidArgument, "invalid value for %q: value is empty", key)
			} else if v != val {
				return fail(errdefs.ErrInvalidArgument, "invalid value for %q in %q: value should not have whitespace", key, field)
			}
		}
		key = strings.ToLower(key)
		if !hasValue {
			switch key {
			case "readonly", "ro", "volume-nocopy", "bind-nonrecursive", "bind-create-src":
			default:
				return fail(errdefs.ErrInvalidArgument, "invalid field %q must be a key=value pair", field)
			}
		}

		switch key {
		case "type":
			m.Type = strings.ToLower(val)
		case "source", "src":
			m.Source = val
			if !path.IsAbs(val) && strings.HasPrefix(val, ".") {
				if abs, err := filepath.Abs(val); err == nil {
					m.Source = abs
				}
			}
		case "target", "dst", "destination":
			m.Target = val
		case "readonly", "ro":
			if m.ReadOnly, err = parseBool(key, val, hasValue); err != nil {
				return fail(errdefs.ErrInvalidArgument, "%v", err)
			}
		case "consistency":
		case "bind-propagation":
			sawBind = true
			m.Propagation = strings.ToLower(val)
			if !propagationModes[m.Propagation] {
				return fail(errdefs.ErrInvalidArgument, "invalid propagation mode %q: use private, rprivate, shared, rshared, slave or rslave", val)
			}
		case "bind-nonrecursive":
			return fail(errdefs.ErrInvalidArgument, "bind-nonrecursive is deprecated, use bind-recursive=disabled instead")
		case "bind-recursive":
			switch val {
			case "enabled":
			case "disabled":
				sawBind, m.NonRecursive = true, true
			case "writable", "readonly":
				return fail(errdefs.ErrNotImplemented, "bind-recursive=%s is not supported by berth, use enabled or disabled", val)
			default:
				return fail(errdefs.ErrInvalidArgument, `invalid value for %s: %s (must be "enabled", "disabled", "writable", or "readonly")`, key, val)
			}
		case "bind-create-src":
			sawBind = true
			if createSrc, err = parseBool(key, val, hasValue); err != nil {
				return fail(errdefs.ErrInvalidArgument, "%v", err)
			}
		case "volume-nocopy":
			sawVolume = true
			if m.NoCopy, err = parseBool(key, val, hasValue); err != nil {
				return fail(errdefs.ErrInvalidArgument, "%v", err)
			}
		case "volume-driver":
			sawVolume = true
			if val != "local" {
				return fail(errdefs.ErrNotImplemented, "volume driver %q is not supported by berth, only local is", val)
			}
		case "volume-opt", "volume-label":
			// Options and labels of a volume the driver creates: berth's
			// local driver has no options, and volume labels are set with
			// `volume create`. Docker too ignores both when the volume exists.
			sawVolume = true
		case "volume-subpath":
			return fail(errdefs.ErrNotImplemented, "volume-subpath is not supported by berth")
		case "image-subpath":
			return fail(errdefs.ErrNotImplemented, "image mounts are not supported by berth")
		case "tmpfs-size":
			sawTmpfs = true
			if m.TmpfsSize, err = ParseMemory(val); err != nil {
				return fail(errdefs.ErrInvalidArgument, "invalid value for tmpfs-size: %s, write a size such as 64m", val)
			}
		case "tmpfs-mode":
			sawTmpfs = true
			mode, err := strconv.ParseUint(val, 8, 32)
			if err != nil || mode > 0o7777 {
				return fail(errdefs.ErrInvalidArgument, "invalid value for tmpfs-mode: %s, write octal permission bits such as 1777", val)
			}
			m.TmpfsMode = uint32(mode)
		default:
			return fail(errdefs.ErrInvalidArgument, "unknown option %q in %q", key, field)
		}
	}

	switch m.Type {
	case TypeBind, TypeVolume, TypeTmpfs:
	case "image", "cluster", "npipe":
		return fail(errdefs.ErrNotImplemented, "mount type %q is not supported by berth, use bind, volume or tmpfs", m.Type)
	default:
		return fail(errdefs.ErrInvalidArgument, "unknown mount type %q, use bind, volume or tmpfs", m.Type)
	}
	for _, mix := range []struct {
		saw  bool
		typ  string
		name string
	}{{sawBind, TypeBind, "bind-*"}, {sawVolume, TypeVolume, "volume-*"}, {sawTmpfs, TypeTmpfs, "tmpfs-*"}} {
		if mix.saw && m.Type != mix.typ {
			return fail(errdefs.ErrInvalidArgument, "cannot mix '%s' options with mount type '%s'", mix.name, m.Type)
		}
	}
	if err := checkTarget(m.Target); err != nil {
		return fail(errdefs.ErrInvalidArgument, "%v, add target=/path/in/container", err)
	}
	m.Target = path.Clean(m.Target)

	switch m.Type {
	case TypeBind:
		if m.Source == "" {
			return fail(errdefs.ErrInvalidArgument, "source is required for a bind mount, add source=/host/path")
		}
		if !path.IsAbs(m.Source) {
			return fail(errdefs.ErrInvalidArgument, "invalid mount path: %q mount path must be absolute, or start with ./ for a path relative to the current directory", m.Source)
		}
		m.Source = path.Clean(m.Source)
		if m.Propagation == "" {
			m.Propagation = "rprivate"
		}
		m.CreateSource = createSrc
	case TypeVolume:
		if m.Source != "" {
			if err := checkVolumeName(m.Source); err != nil {
				return fail(errdefs.ErrInvalidArgument, "%v", err)
			}
		}
	case TypeTmpfs:
		if m.Source != "" {
			return fail(errdefs.ErrInvalidArgument, "a tmpfs mount takes no source, remove source=")
		}
	}
	return m, nil
}

// parseBool is Docker's parseBoolValue: a bare key is true, and only
// 1, true, 0 and false are values.
func parseBool(key, val string, hasValue bool) (bool, error) {
	if !hasValue {
		return true, nil
	}
	switch val {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf(`invalid value for %q: invalid boolean value (%q): must be one of "true", "1", "false", or "0" (default "true")`, key, val)
}

// tmpfsData are the filesystem options Docker lets through for a tmpfs
// (moby/sys/mount's validFlags); anything else must be a mount flag.
var tmpfsData = map[string]bool{"size": true, "mode": true, "uid": true, "gid": true, "nr_inodes": true, "nr_blocks": true, "mpol": true}

// ParseTmpfs parses --tmpfs TARGET[:OPTIONS], such as
// "/run:rw,size=64m,mode=1777". OPTIONS is a comma-separated list of
// mount flags (ro, rw, exec, noexec, suid, nodev, a propagation...) and
// the tmpfs options size, mode, uid, gid, nr_inodes, nr_blocks and mpol;
// they are kept verbatim in Options. ReadOnly tells whether the last of
// ro and rw was ro.
func ParseTmpfs(spec string) (Mount, error) {
	dst, data, _ := strings.Cut(spec, ":")
	if err := checkTarget(dst); err != nil {
		return Mount{}, fmt.Errorf("invalid --tmpfs %q: %v, write TARGET[:OPTIONS] such as /run:size=64m: %w", spec, err, errdefs.ErrInvalidArgument)
	}
	m := Mount{Type: TypeTmpfs, Target: path.Clean(dst)}
	if data == "" {
		return m, nil
	}
	for _, o := range strings.Split(data, ",") {
		if _, ok := tmpfsOptionKey(o); !ok {
			return Mount{}, fmt.Errorf("invalid --tmpfs %q: invalid tmpfs option %q, use mount flags such as ro or noexec and size, mode, uid, gid, nr_inodes, nr_blocks or mpol: %w",
				spec, o, errdefs.ErrInvalidArgument)
		}
		switch o {
		case "ro":
			m.ReadOnly = true
		case "rw":
			m.ReadOnly = false
		}
		m.Options = append(m.Options, o)
	}
	return m, nil
}

// tmpfsOptionKey names what an option sets, so a later option replaces
// an earlier one that sets the same thing: ro and rw share a key, all
// propagations share one, and each data option is its own.
func tmpfsOptionKey(o string) (string, bool) {
	if f, ok := mount.Flags[o]; ok {
		if f.Flag == 0 { // "defaults"
			return "", true
		}
		return "flag:" + strconv.FormatUint(uint64(f.Flag), 10), true
	}
	if _, ok := mount.Propagation[o]; ok {
		return "propagation", true
	}
	if k, _, ok := strings.Cut(o, "="); ok && tmpfsData[k] {
		return "data:" + k, true
	}
	return "", false
}

// TmpfsOptions returns the mount options of a tmpfs Mount the way Docker
// builds them: noexec, nosuid, nodev and rprivate first, then ro,
// TmpfsMode and TmpfsSize, then Options, and of options that set the same
// thing only the last is kept (moby/sys/mount MergeTmpfsOptions). It is
// only meaningful for TypeTmpfs.
func (m Mount) TmpfsOptions() []string {
	opts := []string{"noexec", "nosuid", "nodev", "rprivate"}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	if m.TmpfsMode != 0 {
		opts = append(opts, fmt.Sprintf("mode=%o", m.TmpfsMode))
	}
	if m.TmpfsSize != 0 {
		opts = append(opts, "size="+tmpfsSize(m.TmpfsSize))
	}
	opts = append(opts, m.Options...)

	seen := map[string]bool{}
	var merged []string
	for i := len(opts) - 1; i >= 0; i-- {
		key, ok := tmpfsOptionKey(opts[i])
		if !ok {
			// Not from ParseTmpfs; kept, once, for mount(2) to judge.
			key = "other:" + opts[i]
		}
		if key != "" && !seen[key] {
			seen[key] = true
			merged = append(merged, opts[i])
		}
	}
	// merged was built backwards.
	for i, j := 0, len(merged)-1; i < j; i, j = i+1, j-1 {
		merged[i], merged[j] = merged[j], merged[i]
	}
	return merged
}

// tmpfsSize writes a byte count with the largest binary unit that divides
// it, as Docker's ConvertTmpfsOptions does.
func tmpfsSize(n int64) string {
	for _, u := range []struct {
		suffix string
		div    int64
	}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
		if n%u.div == 0 {
			return strconv.FormatInt(n/u.div, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
