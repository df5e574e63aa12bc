// Package arch holds no code. Its test enforces the layering of
// ../shared/ARCHITECTURE.md on berth's own packages: the runtime knows
// nothing of images, the image side nothing of containers or registries,
// the registry client nothing of the runtime, containers or networks,
// and only the command line knows the command line. A change that
// crosses a line fails the build's tests instead of a review.
package arch
