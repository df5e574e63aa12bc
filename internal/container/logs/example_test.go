package logs_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/container/logs"
)

func Example() {
	dir, _ := os.MkdirTemp("", "logs")
	defer os.RemoveAll(dir)
	// What the monitor writes: one JSON object per line.
	os.WriteFile(filepath.Join(dir, "c1-json.log"), []byte(
		`{"log":"starting\n","stream":"stdout","time":"2026-11-22T07:31:10.1Z"}`+"\n"+
			`{"log":"warning: low memory\n","stream":"stderr","time":"2026-11-22T07:31:11Z"}`+"\n"+
			`{"log":"ready\n","stream":"stdout","time":"2026-11-22T07:31:12Z"}`+"\n"), 0o600)

	// docker logs --tail 2 -t --since 2026-11-22T07:31:11Z c1
	since, err := logs.ParseTime("2026-11-22T07:31:11Z", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	out := &logs.Formatter{Stdout: os.Stdout, Stderr: os.Stdout, Timestamps: true}
	err = logs.Read(context.Background(), dir, "c1", logs.ReadOpts{Tail: 2, Since: since}, out.Write)
	if err != nil {
		log.Fatal(err)
	}
	paths, _ := logs.Paths(dir, "c1")
	fmt.Println(len(paths), "file")
	// Output:
	// 2026-11-22T07:31:11.000000000Z warning: low memory
	// 2026-11-22T07:31:12.000000000Z ready
	// 1 file
}
