package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/runtime/seccomp"
)

func validateResources(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	return cgroups.Validate(r)
}

func validateSeccomp(s *specs.LinuxSeccomp) error { return seccomp.Validate(s) }
