package runtime

import (
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/mount"
)

// RootfsMountsAnnotation names a berth extension: a JSON list of mounts
// (type, source, options) that make the container's root filesystem, for
// example an overlay of image layers. The init stage mounts them on
// root.path inside the container's own mount namespace, so the rootfs
// mount never exists on the host and vanishes with the container: nothing
// to leak if berth dies.
const RootfsMountsAnnotation = "io.berth.rootfs.mounts"

// RootfsMount is one entry of RootfsMountsAnnotation.
type RootfsMount struct {
	Type    string   `json:"type"`
	Source  string   `json:"source"`
	Options []string `json:"options,omitempty"`
}

const rootfsField = "annotations." + RootfsMountsAnnotation

// rootfsMounts parses and checks the annotation; nil when absent.
func rootfsMounts(spec *specs.Spec) ([]RootfsMount, error) {
	raw, ok := spec.Annotations[RootfsMountsAnnotation]
	if !ok {
		return nil, nil
	}
	var ms []RootfsMount
	if err := json.Unmarshal([]byte(raw), &ms); err != nil {
		return nil, invalid(rootfsField, "malformed JSON: %v", err)
	}
	if len(ms) == 0 {
		return nil, invalid(rootfsField, "empty list")
	}
	if !hasNamespace(spec, specs.MountNamespace) {
		return nil, invalid(rootfsField, "needs a mount namespace (add {\"type\":\"mount\"} to linux.namespaces)")
	}
	for i, m := range ms {
		switch m.Type {
		case "overlay", "bind", "rbind", "tmpfs":
		default:
			return nil, invalid(fmt.Sprintf("%s[%d].type", rootfsField, i), "%q is not overlay, bind or tmpfs", m.Type)
		}
		if len(mount.Parse(m.Options).DataString()) >= os.Getpagesize() {
			return nil, invalid(fmt.Sprintf("%s[%d].options", rootfsField, i), "longer than a page: too many layers")
		}
	}
	return ms, nil
}

// mountRootfs stacks the annotation's mounts on rootfs, in order. It runs
// in the container's mount namespace after "/" was made a slave, so
// nothing propagates back to the host.
func mountRootfs(ms []RootfsMount, rootfs string) error {
	for i, m := range ms {
		o := mount.Parse(m.Options)
		fstype, flags := m.Type, o.Flags
		if m.Type == "bind" || m.Type == "rbind" || o.Bind {
			fstype, flags = "", flags|unix.MS_BIND
			if m.Type == "rbind" || o.Recursive {
				flags |= unix.MS_REC
			}
		}
		if err := unix.Mount(m.Source, rootfs, fstype, flags, o.DataString()); err != nil {
			return fmt.Errorf("%s[%d] (%s): %w", rootfsField, i, m.Type, os.NewSyscallError("mount", err))
		}
		for _, p := range o.Propagation {
			if err := unix.Mount("", rootfs, "", p, ""); err != nil {
				return fmt.Errorf("%s[%d]: %w", rootfsField, i, os.NewSyscallError("mount propagation", err))
			}
		}
	}
	return nil
}

// UserAnnotation names a berth extension: the user as `docker run -u` and
// an image's config give it ("name", "name:group", "uid" ...). The init
// stage resolves it after pivot_root from the container's own /etc/passwd
// and /etc/group (as runc does for Docker), and it replaces process.user's
// uid, gid and additionalGids.
const UserAnnotation = "io.berth.user"
