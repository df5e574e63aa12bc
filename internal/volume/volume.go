package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/opts"
)

const (
	// DriverLocal is the only driver: volumes are directories under the
	// engine root, as with Docker's "local" driver without mount options.
	DriverLocal = "local"
	// ScopeLocal is every volume's scope (Docker's "local"; "global" is
	// for swarm drivers).
	ScopeLocal = "local"
	// AnonymousLabel marks a volume created without a name, as Docker (23+)
	// marks it. Prune removes only these unless asked for all.
	AnonymousLabel = "com.docker.volume.anonymous"
)

// Volume is one named volume, with the fields `docker volume inspect` shows.
type Volume struct {
	Name       string
	Driver     string
	Mountpoint string // <root>/volumes/<name>/_data, what containers mount
	CreatedAt  time.Time
	Labels     map[string]string
	Options    map[string]string
	Scope      string
}

// Anonymous reports whether the volume was created without a name.
func (v *Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// MarshalJSON writes Docker's API shape: fields in its (alphabetical)
// order, CreatedAt in RFC 3339 to the second and local time, as the local
// driver reports it, and empty maps as null, as dockerd shows them.
func (v Volume) MarshalJSON() ([]byte, error) {
	labels, opts := v.Labels, v.Options
	if len(labels) == 0 {
		labels = nil
	}
	if len(opts) == 0 {
		opts = nil
	}
	return json.Marshal(struct {
		CreatedAt  string
		Driver     string
		Labels     map[string]string
		Mountpoint string
		Name       string
		Options    map[string]string
		Scope      string
	}{v.CreatedAt.Local().Format(time.RFC3339), v.Driver, labels, v.Mountpoint, v.Name, opts, v.Scope})
}

// ValidName checks name against Docker's rule for local volume names
// (opts.IsName, 2 to 255 bytes). It also keeps every name a single path
// element that cannot start with "." (the store's own entries under
// volumes/ do).
func ValidName(name string) error {
	if !opts.IsName(name, 2, 255) {
		return fmt.Errorf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed (2 to 255 of them). If you intended to pass a host directory, use absolute path: %w",
			name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// CheckDriver accepts the drivers berth has: only "local" ("" means local).
func CheckDriver(driver string) error {
	if driver != "" && driver != DriverLocal {
		return fmt.Errorf("volume driver %q not supported: berth has only the %q driver: %w", driver, DriverLocal, errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkOptions refuses every driver option. Docker's local driver knows
// type, device, o and size (mount a filesystem as the volume); berth's
// volumes are plain directories, so those are not implemented yet.
func checkOptions(opts map[string]string) error {
	for k := range opts {
		switch k {
		case "type", "device", "o", "size":
			return fmt.Errorf("volume driver option %q not supported: berth's local volumes are plain directories (no mount options yet): %w", k, errdefs.ErrNotImplemented)
		default:
			return fmt.Errorf("volume driver option %q not supported: the local driver knows only type, device, o and size: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// randomName is a name for an anonymous volume: 64 hex digits, as Docker's.
func randomName() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("name anonymous volume: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
