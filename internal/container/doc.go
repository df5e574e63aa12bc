// Package container is berth's container lifecycle: records, the OCI
// bundle made from an image and the user's options, and the verbs
// (create, start, stop, kill, rm, wait, pause, rename ...) over a
// per-container monitor.
//
// There is no daemon. `start` spawns the container's monitor (package
// monitor, C, detached in its own session), which runs `berth monitor-hook
// start` to create the container with berth's own runtime, then owns its
// stdio, log and exit. Records live in metadata.db and are the one truth
// every berth process reads; the monitor's hooks write a container's
// running and exited states, the CLI writes what users ask. Killing any
// CLI or monitor loses no container: Refresh reconciles a record with the
// runtime's state when a monitor has died.
package container
