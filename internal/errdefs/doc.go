// Package errdefs holds the classes of error every berth package wraps its
// failures in, so callers (the CLI's exit codes, later the API's HTTP codes)
// decide by class with errors.Is and never by comparing message text.
package errdefs
