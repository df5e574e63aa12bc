// Package opts parses the command-line forms of container options, with
// Docker's syntax. Each parser takes the string a user typed after a
// `docker run` flag (--memory, --cpus, --ulimit, -e, --env-file, -l,
// --restart, -v, --mount, --tmpfs, --log-opt) and returns plain data, so
// the CLI, a compose file loader and an API server agree on what an option
// means, and unit tests check every corner without a container.
//
// The rules are the union of what Docker's client and daemon check: a
// string Docker accepts parses here to the same value, and a string either
// of them refuses is refused here, with a message that names the option
// and says how to write it. Errors wrap errdefs.ErrInvalidArgument, or
// errdefs.ErrNotImplemented for Docker features berth does not have.
//
// Nothing here touches the filesystem or the process. The two exceptions
// are documented where they happen: a "./" bind source is made absolute
// against the working directory, as Docker's CLI does, and a bare "-e KEY"
// is looked up through the function the caller passes.
package opts
