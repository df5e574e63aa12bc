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

// resolveInRoot returns the host path of the container path p inside root,
// following symlinks as the container will see them: an absolute link target
// starts again at root. A relative link that climbs above root is refused,
// not clamped: a bundle that tries it is hostile or broken, and mounting
// somewhere else than asked would hide that. Components that do not exist
// yet are kept as written.
func resolveInRoot(root, p string) (string, error) {
	var resolved []string // components below root, all existing non-links
	todo := splitPath(filepath.Clean("/" + p))
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(resolved) == 0 {
				return "", fmt.Errorf("%s %w: %w", p, errEscapes, errdefs.ErrInvalidArgument)
			}
			resolved = resolved[:len(resolved)-1]
			continue
		}
		host := filepath.Join(root, filepath.Join(resolved...), c)
		fi, err := os.Lstat(host)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Nothing below a missing directory can be a link: the
				// rest is resolved lexically, still never above root.
				resolved = append(resolved, c)
				for _, r := range todo {
					switch r {
					case "", ".":
					case "..":
						if len(resolved) == 0 {
							return "", fmt.Errorf("%s %w: %w", p, errEscapes, errdefs.ErrInvalidArgument)
						}
						resolved = resolved[:len(resolved)-1]
					default:
						resolved = append(resolved, r)
					}
				}
				return filepath.Join(root, filepath.Join(resolved...)), nil
			}
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = append(resolved, c)
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
			resolved = nil
		}
		todo = append(splitPath(target), todo...)
	}
	return filepath.Join(root, filepath.Join(resolved...)), nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}
