package volume_test

import (
	"fmt"
	"os"

	"github.com/berth-dev/berth/internal/volume"
)

// A volume's life: created (twice: the second create returns the first
// volume), refused removal while a container uses it, pruned once unused.
func ExampleStore() {
	root, _ := os.MkdirTemp("", "berth-example-")
	defer os.RemoveAll(root)
	s, _ := volume.New(root)

	v, _ := s.Create("data", map[string]string{"app": "web"}, nil)
	again, _ := s.Create("data", nil, nil)
	fmt.Println(v.Name, v.Driver, again.Labels["app"])
	os.WriteFile(v.Mountpoint+"/hello", []byte("hello"), 0o644)

	users := []string{"c0ffee"}
	inUse := func(name string) []string { return users }
	fmt.Println(s.Remove("data", false, inUse))

	users = nil
	anon, _ := s.Create("", nil, nil)
	pruned, _ := s.Prune(inUse, false, volume.Filter{}) // anonymous volumes only
	fmt.Println(len(pruned.Names), pruned.Names[0] == anon.Name)
	pruned, _ = s.Prune(inUse, true, volume.Filter{})
	fmt.Println(pruned.Names, pruned.SpaceReclaimed)
	// Output:
	// data local web
	// remove data: volume is in use - [c0ffee]: conflict
	// 1 true
	// [data] 5
}
