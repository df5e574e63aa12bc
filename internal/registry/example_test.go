package registry_test

import (
	"context"
	"fmt"
	"log"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/registry"
)

// Pull an image for another platform into an engine root, printing
// Docker-style progress lines.
func ExamplePull() {
	svc, err := image.New("/var/lib/berth")
	if err != nil {
		log.Fatal(err)
	}
	img, err := registry.Pull(context.Background(), svc, "localhost:5000/app:1",
		registry.WithPlatform("linux", "arm64", ""),
		registry.WithProgress(func(e registry.Event) {
			if e.Status != registry.StatusDownloading {
				fmt.Println(e.ID+":", e.Status)
			}
		}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.ID)
}
