package container

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
)

// volumeMount resolves a named or anonymous volume.
func (e *Engine) volumeMount(c *Container, m Mount, img *image.Image) (specs.Mount, MountPoint, error) {
	return specs.Mount{}, MountPoint{}, fmt.Errorf("volumes are not wired yet: %w", errdefs.ErrNotImplemented)
}

func (e *Engine) removeAnonymousVolumes(c *Container) error { return nil }
