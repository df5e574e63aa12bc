package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// volumeMount resolves a named or anonymous volume (creating it), fills a
// fresh one with the image's content at the target unless nocopy, and
// returns the bind mount. Called inside Volumes.Hold, with the record
// written in the same hold, so a concurrent `volume rm` cannot slip in.
func (e *Engine) volumeMount(c *Container, m Mount, img *image.Image) (specs.Mount, MountPoint, error) {
	v, err := e.Volumes.Create(m.Source, nil, nil)
	if err != nil {
		return specs.Mount{}, MountPoint{}, err
	}
	if !m.NoCopy {
		if src := e.imagePath(c.ID, m.Target); src != "" {
			if err := e.Volumes.CopyUp(v.Name, src); err != nil {
				return specs.Mount{}, MountPoint{}, err
			}
		}
	}
	opts := []string{"rbind", "rprivate"}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	mp := MountPoint{Type: "volume", Name: v.Name, Source: v.Mountpoint, Destination: m.Target, Driver: v.Driver,
		Mode: modeOf(m), RW: !m.ReadOnly, Propagation: ""}
	if mp.Mode == "" {
		mp.Mode = "z"
	}
	return specs.Mount{Destination: m.Target, Type: "bind", Source: v.Mountpoint, Options: opts}, mp, nil
}

// imagePath finds the image's directory at target in the container's
// layers, top layer first, without mounting anything. A directory whose
// content is spread over several layers copies from the topmost one that
// has it: the common case of a VOLUME over files one layer made.
func (e *Engine) imagePath(id, target string) string {
	plan, err := e.Images.Snapshots.Mounts(id)
	if err != nil || len(plan) != 1 {
		return ""
	}
	var dirs []string
	for _, o := range plan[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			dirs = strings.Split(v, ":")
		}
	}
	if plan[0].Type == "bind" {
		dirs = []string{plan[0].Source}
	}
	for _, d := range dirs {
		// Layer paths may be short links (they keep overlay's mount
		// options small); resolve the layer itself, then refuse a path
		// through a symlink inside it: that would resolve on the host.
		base, err := filepath.EvalSymlinks(d)
		if err != nil {
			continue
		}
		p := filepath.Join(base, target)
		if real, err := filepath.EvalSymlinks(p); err != nil || real != p {
			continue
		}
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			return p
		}
	}
	return ""
}

// removeAnonymousVolumes removes the container's anonymous volumes that no
// other container uses (rm -v, and run --rm as Docker does).
func (e *Engine) removeAnonymousVolumes(c *Container) error {
	for _, m := range c.Mounts {
		if m.Type != "volume" {
			continue
		}
		v, err := e.Volumes.Get(m.Name)
		if err != nil || !v.Anonymous() {
			continue
		}
		err = e.Volumes.Remove(m.Name, true, func(name string) []string { return e.VolumeUsers(name, c.ID) })
		if err != nil && !errors.Is(err, errdefs.ErrConflict) {
			return err
		}
	}
	return nil
}

// VolumeUsers lists the containers (other than except) that mount volume name.
func (e *Engine) VolumeUsers(name, except string) []string {
	cs, err := e.List()
	if err != nil {
		return []string{"(unknown: " + err.Error() + ")"} // refuse, to be safe
	}
	var ids []string
	for _, c := range cs {
		if c.ID == except {
			continue
		}
		for _, m := range c.Mounts {
			if m.Type == "volume" && m.Name == name {
				ids = append(ids, c.ID)
				break
			}
		}
	}
	return ids
}
