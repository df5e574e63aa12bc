// Package version holds berth's version, set at link time.
package version

// Version is overridden with -ldflags "-X github.com/berth-dev/berth/internal/version.Version=...".
var Version = "0.1.0-dev"

// GitCommit is the commit the binary was built from, set at link time.
var GitCommit = "unknown"
