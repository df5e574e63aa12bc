// Package nsenter moves a freshly re-executed berth process into its
// container's namespaces before the Go runtime starts.
//
// A Go process is multi-threaded from its first instruction, and the kernel
// refuses setns(CLONE_NEWNS) and setns(CLONE_NEWUSER) to a multi-threaded
// process. So, as runc's nsexec does, a C constructor runs before the Go
// runtime: when the environment names an init pipe it reads a small plan from
// the parent (namespaces to join by path, namespaces to create), joins and
// unshares them, lets the parent write the user namespace's id maps, and forks
// once more when a PID namespace needs a first process. Only the final child
// returns into Go, single-threaded and already in place. Every other berth
// invocation pays one getenv.
//
// Importing the package for its side effect is enough:
//
//	import _ "github.com/berth-dev/berth/internal/runtime/nsenter"
package nsenter
