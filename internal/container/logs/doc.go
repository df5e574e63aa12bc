// Package logs reads a container's output from the json-file logs its
// monitor writes, the way `docker logs` reads Docker's json-file driver:
// all of it or only the last N entries, between two times, and, when
// following, on across rotations until the container exits.
//
// # On disk
//
// The monitor (a separate process) owns the writing; this package only
// reads. For a container id in directory dir:
//
//	<dir>/
//	  <id>-json.log        the current file; the monitor appends to it, so
//	                       its last line may be incomplete (mid-write)
//	  <id>-json.log.1      the newest rotated file
//	  <id>-json.log.2
//	  ...
//	  <id>-json.log.<M-1>  the oldest (M = max-file); rotated files are
//	                       complete and never written again
//
// Rotation is renames only: .M-2 -> .M-1, ..., .1 -> .2, current -> .1,
// then a fresh current file (with max-file 1 the writer truncates the
// current file instead; a follower sees it shrink and starts over at its
// top). Every line is one entry, exactly Docker's format:
//
//	{"log":"hello\n","stream":"stdout","time":"2026-11-22T07:31:10.123456789Z"}\n
//
// A line of output longer than 16 KiB is split into several entries; only
// the last one's "log" ends in a newline, and the earlier ones are
// printed as they are, concatenated, as docker logs does.
//
// # Reading
//
// Read never holds more than one line in memory (at most 1 MiB; a longer
// line is skipped, as is any line that is not an entry), so a multi-GB
// log costs a few buffers. --tail reads backwards from the end of the
// newest files in chunks. A line without its final newline is never
// judged: in the current file it is the writer's next entry, still
// arriving, and a follower waits for the rest of it.
//
// Following watches the directory with inotify (a 200 ms poll when
// inotify is unavailable). A follower that finds the current file renamed
// under it finishes the old file through the descriptor it holds, then
// goes on with whatever is newer: the rotated files written meanwhile, if
// it fell behind, and the new current file. Nothing is read twice, and
// nothing is lost unless the writer deleted a file before the reader got
// to it.
package logs
