// Command berth is a daemonless, Docker-compatible container engine.
package main

import (
	"os"
	goruntime "runtime"

	"github.com/berth-dev/berth/internal/cli"
	_ "github.com/berth-dev/berth/internal/container/monitor"
	_ "github.com/berth-dev/berth/internal/reaper"
	"github.com/berth-dev/berth/internal/runtime"
	_ "github.com/berth-dev/berth/internal/runtime/nsenter"
)

func init() {
	// The container's init stage changes per-thread state (capabilities,
	// seccomp, no_new_privs) and must execve from the same thread: pin
	// the main goroutine before anything else runs.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		goruntime.GOMAXPROCS(1)
		goruntime.LockOSThread()
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.Init()
		os.Exit(1)
	}
	os.Exit(cli.Execute(os.Args[1:]))
}
