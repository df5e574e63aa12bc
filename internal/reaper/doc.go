// Package reaper is berth-init, the minimal PID 1 that `run --init` puts in
// front of a container's command: it forwards signals to the command and
// reaps the orphans that a shell or an application server never waits for.
//
// The engine bind-mounts the static berth binary read-only at
// /sbin/berth-init and runs ["/sbin/berth-init", "--", cmd...]. A Go process
// costs a few megabytes and several threads for the whole life of the
// container, so, as tini and docker-init do, the init is a small C loop; it
// runs from a constructor before the Go runtime starts, the way
// internal/runtime/nsenter does, and never returns into Go. Every other
// berth invocation pays one string compare on argv[0].
//
// Behaviour (tini's): block every catchable signal, fork; the child takes a
// process group of its own, makes it the terminal's foreground group when
// stdin is a tty, restores the signal mask and execs the command (exit 127
// when it is not found, 126 when it cannot be run). The parent forwards each
// signal it receives to the child, except SIGCHLD, on which it reaps every
// exited process. When the child exits, berth-init exits with its status, or
// 128+signal if a signal killed it. Outside PID 1 it becomes a child
// subreaper so orphans still come to it.
//
// Importing the package for its side effect is enough:
//
//	import _ "github.com/berth-dev/berth/internal/reaper"
package reaper
