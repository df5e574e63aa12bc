// Package snapshot turns image layers into container root filesystems: it
// unpacks layer tars safely (Unpack), keeps each unpacked layer once, keyed
// by its chain ID and shared by every image that has it (Store.Apply), and
// prepares writable snapshots on top of a chain of layers, returned as
// mount plans (Store.Prepare) that MountAt applies.
//
// # On disk
//
// Open(root) with root = <berth root>/snapshots owns this tree:
//
//	<root>/
//	  .lock                     flock: Apply's commit, Remove, Prepare, RemoveActive;
//	                            an OFD byte lock per chain ID serialises unpacks
//	  driver                    cached driver detection: "overlay" or "copy"
//	  layers/<chainid-hex>/     one unpacked layer, shared by every image with it
//	    diff/                   the layer's files (a diff, never a merged tree)
//	    link                    its short name: l/<link> is the lowerdir
//	    meta.json               chainID, diffID, parent, size, created, whiteouts
//	  l/<link> -> ../layers/<chainid-hex>/diff
//	                            26-character names keep overlay's option string
//	                            under a page (overlay2's trick)
//	  active/<key>/             a writable snapshot (a container's rootfs)
//	    meta.json               key, driver, chain ID, lowers (top first)
//	    upper/ work/            overlay driver: the mount's upperdir and workdir
//	    lower/                  overlay driver, empty chain only: an empty lowerdir
//	    rootfs/                 copy driver: the materialised tree, bind-mounted
//	  tmp/<random>/             unpacks in progress, removals under way; each is
//	                            flocked by its owner, and Open sweeps the unlocked
//
// A layer appears in layers/ only whole: it is unpacked in tmp/, its
// diffID checked, synced, and renamed into place. A kill -9 leaves at most
// a directory in tmp/ (swept by the next Open) or a layer without its l/
// link (recreated by the next Prepare).
//
// # Drivers
//
// The overlay driver mounts overlayfs with the chain's diff directories as
// lowerdirs. Open detects once whether overlay works under root (a real
// mount of tiny directories, with a whiteout, in tmp/) and caches the
// answer in the driver file; where it does not (root on overlayfs, a
// kernel without it), the copy driver is used. A probe refused for want
// of privilege (EPERM) is not cached, so a later Open as root probes
// again. WithDriver forces a driver and probes nothing.
//
// The copy driver stores layers as diffs too, so layers/ has one format;
// its whiteouts stay plain ".wh." files (Unpack's WithOverlayWhiteouts
// false), since a filesystem where overlay cannot mount may not take
// overlay's 0/0 devices or trusted.* xattrs either. Prepare materialises
// the merged tree by copying the layers bottom-up into active/<key>/rootfs,
// applying whiteouts (either form) as deletions, and returns a bind mount.
// Storing diffs rather than merged trees costs a full copy per Prepare
// (which a merged-tree layout also pays, to make the container's writable
// copy) and saves storing every layer's whole parent tree again.
//
// A layer records its whiteout form in meta.json; the overlay driver
// refuses a chain holding a layer unpacked by the copy driver rather than
// show deleted files.
//
// # Mount plans
//
// A Mount is a serialised mount(2). Overlay plans name absolute l/ paths;
// when that option string would not fit in a page (the kernel's limit on
// mount data), MountAt rewrites the paths relative to their common
// directory and mounts from a thread whose working directory is there, as
// Docker does. Prepare refuses a chain too long even for that (about 125
// layers) with an error that says so.
package snapshot
