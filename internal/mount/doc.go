// Package mount turns the option strings of a mount (as OCI configs and
// snapshot plans write them: "ro", "nosuid", "rbind", "rslave",
// "size=64m") into the arguments of mount(2): flags, propagation changes
// and filesystem data. The runtime and the snapshotter share this one
// table so an option means the same thing everywhere.
package mount
