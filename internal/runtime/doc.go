// Package runtime is berth's OCI runtime: it turns a bundle (config.json and
// a root filesystem) into an isolated process, and keeps the container's
// state so later calls can start, signal, inspect, join and delete it.
//
// The work is split across three processes, as in runc:
//
//	berth runtime create (parent)        berth init (child, re-executed binary)
//	  validate config, make cgroup  ---->  C stage (package nsenter): setns,
//	  write id maps, run createRuntime     unshare, fork into the pid namespace
//	  hooks, record state, exit            Go stage (init.go): mounts, devices,
//	                                       pivot_root, hostname, sysctl, caps,
//	berth runtime start  ---- fifo ---->   rlimits, seccomp; waits on exec.fifo,
//	                                       then execve of the user's process
//
// Everything the init stage does to the kernel is first computed as plain
// data (a mount plan, a capability set) by functions the unit tests check
// without root; small files apply those plans.
//
// State lives under a root directory (default /run/berth/runtime):
//
//	<root>/<id>/state.json   the container record, written temp+fsync+rename
//	<root>/<id>/exec.fifo    exists between create and start
//	<root>/<id>/.lock        flock held while a verb changes the container
package runtime
