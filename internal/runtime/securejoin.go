package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/errdefs"
)

// errEscapes marks a path whose symlinks lead out of the root filesystem.
var errEscapes = errors.New("escapes the root filesystem through a symlink")

// component is one path element still to resolve; fromLink marks those
// that a symlink's target brought in.
type component struct {
	name     string
	fromLink bool
}

func components(p string, fromLink bool) []component {
	var out []component
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, component{c, fromLink})
		}
	}
	return out
}

// resolveInRoot returns the host path of the container path p inside root,
// following symlinks as the kernel will inside the container: ".." after a
// link climbs from where the link led, and an absolute link target starts
// again at root. A ".." of the path itself stops at root, as "/.." does. A
// relative link that climbs above root is refused, not clamped: a bundle
// that tries it is hostile or broken, and mounting somewhere else than
// asked would hide that. Components that do not exist yet are kept as
// written.
func resolveInRoot(root, p string) (string, error) {
	var resolved []string // components below root, all existing non-links
	todo := components(p, false)
	up := func(c component) error {
		if len(resolved) == 0 {
			if c.fromLink {
				return fmt.Errorf("%s %w: %w", p, errEscapes, errdefs.ErrInvalidArgument)
			}
			return nil
		}
		resolved = resolved[:len(resolved)-1]
		return nil
	}
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c.name == ".." {
			if err := up(c); err != nil {
				return "", err
			}
			continue
		}
		host := filepath.Join(root, filepath.Join(resolved...), c.name)
		fi, err := os.Lstat(host)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			// Nothing below a missing directory can be a link: the rest
			// is resolved lexically, still never above root.
			resolved = append(resolved, c.name)
			for _, r := range todo {
				if r.name != ".." {
					resolved = append(resolved, r.name)
				} else if err := up(r); err != nil {
					return "", err
				}
			}
			return filepath.Join(root, filepath.Join(resolved...)), nil
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = append(resolved, c.name)
			continue
		}
		hops++
		if hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links: %w", p, errdefs.ErrInvalidArgument)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			// Absolute targets are rooted at the container's "/", where
			// ".." cannot climb further.
			resolved = nil
			target = filepath.Clean(target)
		}
		todo = append(components(target, true), todo...)
	}
	return filepath.Join(root, filepath.Join(resolved...)), nil
}
