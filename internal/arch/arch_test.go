package arch

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/berth-dev/berth/"

// forbidden maps a package (and its subpackages) to the packages it must
// not import, directly. Indirect imports follow: if image may not import
// container and container may not be imported by image's dependencies,
// the rules below close the gaps.
var forbidden = map[string][]string{
	"internal/runtime":  {"internal/image", "internal/content", "internal/snapshot", "internal/container", "internal/network", "internal/volume", "internal/registry", "internal/cli"},
	"internal/cgroups":  {"internal/runtime", "internal/image", "internal/container", "internal/registry", "internal/cli"},
	"internal/content":  {"internal/image", "internal/snapshot", "internal/runtime", "internal/container", "internal/registry", "internal/cli"},
	"internal/snapshot": {"internal/image", "internal/runtime", "internal/container", "internal/registry", "internal/cli"},
	"internal/image":    {"internal/runtime", "internal/cgroups", "internal/container", "internal/network", "internal/volume", "internal/registry", "internal/cli"},
	"internal/registry": {"internal/runtime", "internal/cgroups", "internal/container", "internal/network", "internal/volume", "internal/cli"},
	// The registry server keeps its own storage tree (it serves blobs as
	// they were pushed; it unpacks nothing), so it stays free of the
	// engine's image store.
	"internal/registry/server": {"internal/image", "internal/content", "internal/snapshot", "internal/runtime", "internal/cgroups", "internal/container", "internal/network", "internal/volume", "internal/cli"},
	"internal/volume":          {"internal/runtime", "internal/container", "internal/registry", "internal/cli"},
	"internal/container":       {"internal/registry", "internal/cli"},
}

func TestLayering(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rules := rulesFor(filepath.ToSlash(rel))
		if len(rules) == 0 {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			for _, bad := range rules {
				if p == module+bad || strings.HasPrefix(p, module+bad+"/") {
					t.Errorf("%s imports %s: %s must not depend on %s (see ARCHITECTURE.md)", strings.TrimPrefix(path, root+"/"), p, rel, bad)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked only %d files: is the walk looking in the right place?", checked)
	}
}

// rulesFor is the forbidden list of the most specific rule covering dir
// (the longest package prefix), if any.
func rulesFor(dir string) []string {
	best := ""
	for pkg := range forbidden {
		if (dir == pkg || strings.HasPrefix(dir, pkg+"/")) && len(pkg) > len(best) {
			best = pkg
		}
	}
	return forbidden[best]
}
