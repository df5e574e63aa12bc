// Package fsutil holds the few file-system steps every store of berth's
// takes the same way: making a rename durable and taking a flock that
// survives signals. One copy, so a fix (EINTR, error wording) lands
// everywhere.
package fsutil
