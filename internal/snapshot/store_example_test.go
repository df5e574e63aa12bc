package snapshot_test

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/snapshot"
)

func ExampleChainID() {
	base := digest.FromString("base layer tar")
	app := digest.FromString("app layer tar")
	c0 := snapshot.ChainID("", base) // a bottom layer's chain ID is its diffID
	c1 := snapshot.ChainID(c0, app)  // sha256(c0 + " " + app)
	fmt.Println(c0 == base, c1 == digest.FromString(c0.String()+" "+app.String()))
	// Output: true true
}

// A container's root filesystem from an image's layers: unpack each layer
// once (Apply is a no-op for layers already there), prepare a writable
// snapshot on the top one, mount it, and tear it down.
func ExampleStore() {
	ctx := context.Background()
	var diffIDs []digest.Digest // from the image config, bottom first
	var layers []io.Reader      // the layer tars, same order
	s, err := snapshot.Open("/var/lib/berth/snapshots")
	if err != nil {
		panic(err)
	}
	var top digest.Digest
	for i, d := range diffIDs {
		if top, err = s.Apply(ctx, top, d, layers[i]); err != nil {
			panic(err)
		}
	}
	plan, err := s.Prepare("container-id", top)
	if err != nil {
		panic(err)
	}
	if err := snapshot.MountAt(plan, "/run/berth/container-id/rootfs"); err != nil {
		panic(err)
	}
	// ... run the container ...
	if err := snapshot.Unmount("/run/berth/container-id/rootfs"); err != nil {
		panic(err)
	}
	if err := s.RemoveActive("container-id"); err != nil {
		panic(err)
	}
}
