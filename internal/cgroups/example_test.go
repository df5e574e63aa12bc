package cgroups_test

import (
	"fmt"
	"log"
	"os/exec"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/cgroups"
)

// A bad value is refused before anything is created, naming the field.
func ExampleValidate() {
	limit := int64(-5)
	err := cgroups.Validate(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	fmt.Println(err)
	// Output: linux.resources.memory.limit: -5 is negative (use -1 for unlimited): invalid argument
}

// The order a runtime follows: create, limit, then move the process in, so
// it never runs unconstrained; destroy once it has exited.
func ExampleManager() {
	limit, pids := int64(64<<20), int64(100)
	r := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}
	if err := cgroups.Validate(r); err != nil {
		log.Fatal(err)
	}
	m, err := cgroups.New("/berth/example")
	if err != nil {
		log.Fatal(err)
	}
	defer m.Destroy()
	if err := m.Apply(0); err != nil {
		log.Fatal(err)
	}
	if err := m.Set(r); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("/bin/true") // a real runtime starts it stopped
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	if err := m.Apply(cmd.Process.Pid); err != nil {
		log.Print(err) // it may have exited already
	}
	_ = cmd.Wait()
	s, err := m.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Pids.Limit)
}
