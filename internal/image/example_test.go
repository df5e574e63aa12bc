package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/internal/image"
)

// References are normalized as Docker normalizes them, and shown in the
// short form Docker shows.
func ExampleParseRef() {
	for _, s := range []string{"busybox", "localhost:5000/app:1", "Busybox"} {
		ref, err := image.ParseRef(s)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(ref, "=", image.FamiliarString(ref))
	}
	// Output:
	// docker.io/library/busybox:latest = busybox:latest
	// localhost:5000/app:1 = localhost:5000/app:1
	// error: invalid reference "Busybox": repository name "Busybox" must be lowercase: invalid argument
}

// An image's life: import a root filesystem, save it as docker save
// would, load the archive into another engine root, remove it.
func ExampleService() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "berth-example-")
	defer os.RemoveAll(dir)

	// A root filesystem with one file.
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 6})
	tw.Write([]byte("hello\n"))
	tw.Close()

	a, _ := image.New(filepath.Join(dir, "a"))
	img, err := a.Import(ctx, &rootfs, "example:1", image.ImportOpts{Message: "made by hand"})
	if err != nil {
		fmt.Println(err)
		return
	}
	var archive bytes.Buffer
	if err := a.Save(ctx, &archive, []string{"example:1"}, image.FormatDockerArchive); err != nil {
		fmt.Println(err)
		return
	}

	b, _ := image.New(filepath.Join(dir, "b"))
	loaded, err := b.Load(ctx, &archive, os.Stdout)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("same ID:", loaded[0].ID == img.ID)
	hist, _ := b.History("example:1")
	fmt.Println("history:", hist[0].Comment)

	items, _ := b.Remove(ctx, "example:1", false, nil)
	fmt.Println("removed:", items[0].Untagged)
	// Output:
	// Loaded image: example:1
	// same ID: true
	// history: made by hand
	// removed: example:1
}
