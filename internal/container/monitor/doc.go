// Package monitor is the per-container monitor: the process that owns a
// container's stdio for its whole life, writes its json-file log with
// rotation, serves attach clients on a unix socket, reaps it, records its
// exit through a short-lived `berth monitor-hook` and restarts it per the
// restart policy.
//
// It is C, run from a constructor before the Go runtime starts, for the
// same reason as internal/runtime/nsenter and for one more: with a
// hundred containers there are a hundred monitors, and the berth binary's
// Go runtime and package initialisation cost about 1.8 MB of private
// memory each before doing anything. This monitor costs a few hundred
// kilobytes: fixed buffers (64 KiB read, 16 KiB line per stream, a
// ~130 KiB output buffer, a bounded queue per attach client), so its
// memory does not grow with log volume. A slow disk or a slow attached
// client slows the container down through its pipe; a client that stays
// behind for 2 s (10 s for the `berth run` that started it) is
// disconnected rather than stall the log; on a full disk entries are
// dropped whole (as Docker's json-file does) and logging resumes when
// there is room.
//
// What needs the engine (creating the container from its bundle, writing
// records, removing a --rm container) is done by the Go half of berth,
// which the monitor runs as a child for a few milliseconds at start and
// exit: the monitor stays small and the engine's logic stays in Go, in one
// place.
//
// Importing the package for its side effect is enough:
//
//	import _ "github.com/berth-dev/berth/internal/container/monitor"
package monitor
