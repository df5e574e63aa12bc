package content_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/berth-dev/berth/internal/content"
	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func Example() {
	root, _ := os.MkdirTemp("", "content")
	defer os.RemoveAll(root)
	store, err := content.Open(root)
	if err != nil {
		log.Fatal(err)
	}

	// Put verifies the stream against what the registry said it is: a
	// stream that lies is refused, and nothing is stored.
	blob := "hello, layer"
	_, _, err = store.Put(strings.NewReader("tampered"), digest.FromString(blob), -1)
	fmt.Println(errors.Is(err, errdefs.ErrFailedPrecondition))

	d, size, err := store.Put(strings.NewReader(blob), digest.FromString(blob), int64(len(blob)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d, size)

	f, err := store.Open(d)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	fmt.Println(string(b))
	// Output:
	// true
	// sha256:e4943350e8b6650afd257bd0f1e428f302d42f763d9df25e4501fba4710923cc 12
	// hello, layer
}

func ExampleWriter() {
	root, _ := os.MkdirTemp("", "content")
	defer os.RemoveAll(root)
	store, err := content.Open(root)
	if err != nil {
		log.Fatal(err)
	}
	w, err := store.Writer("", 10) // digest unknown, size declared
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close() // aborts unless committed
	io.WriteString(w, "0123456789")
	_, err = io.WriteString(w, "!") // past the declared size: refused at once
	fmt.Println(err)
	// Output:
	// blob: content is longer than the declared size 10 (at least 11 bytes)
}
