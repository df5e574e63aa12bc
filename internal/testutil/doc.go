// Package testutil gives tests what they share: skips that name the missing
// privilege or kernel feature, and a tiny busybox root filesystem built from
// Debian's busybox-static, so no test needs a registry or the internet.
package testutil
