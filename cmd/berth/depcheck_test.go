package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/berth-dev/berth/"

// forbidden lists, per package prefix, the internal packages it must never
// import (docs: ARCHITECTURE "arrows point down"): the runtime knows nothing
// of images or containers, the engine never imports its faces (cli, api).
var forbidden = map[string][]string{
	"internal/errdefs":           {"internal/"},
	"internal/mount":             {"internal/"},
	"internal/cgroups":           {"internal/runtime", "internal/cli", "internal/image", "internal/content", "internal/snapshot", "internal/container", "internal/network"},
	"internal/runtime":           {"internal/cli", "internal/api", "internal/image", "internal/content", "internal/snapshot", "internal/container", "internal/network", "internal/volume", "internal/registry", "internal/build", "internal/stack"},
	"internal/image":             {"internal/container", "internal/runtime", "internal/cli", "internal/api"},
	"internal/content":           {"internal/image", "internal/container", "internal/runtime", "internal/cli", "internal/api"},
	"internal/snapshot":          {"internal/container", "internal/runtime", "internal/cli", "internal/api"},
	"internal/build":             {"internal/runtime", "internal/network", "internal/cli"},
	"internal/stack":             {"internal/runtime", "internal/network", "internal/cli"},
	"internal/registry":          {"internal/runtime", "internal/network", "internal/container", "internal/cli"},
	"internal/network":           {"internal/cli", "internal/api", "internal/container"},
	"internal/volume":            {"internal/container", "internal/runtime", "internal/cli", "internal/api"},
	"internal/metadb":            {"internal/image", "internal/container", "internal/volume", "internal/runtime", "internal/cli"},
	"internal/opts":              {"internal/runtime", "internal/container", "internal/image", "internal/cli", "internal/api"},
	"internal/container":         {"internal/cli", "internal/api"},
	"internal/container/monitor": {"internal/"},
	"internal/reaper":            {"internal/"},
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		rel := strings.TrimPrefix(p.ImportPath, module)
		for prefix, bans := range forbidden {
			if rel != prefix && !strings.HasPrefix(rel, prefix+"/") {
				continue
			}
			for _, imp := range p.Imports {
				irel := strings.TrimPrefix(imp, module)
				if irel == imp {
					continue // not ours
				}
				for _, ban := range bans {
					if strings.HasPrefix(irel, ban) && !strings.HasPrefix(irel, prefix) {
						t.Errorf("%s imports %s: %s must not depend on %s", rel, irel, prefix, ban)
					}
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list found only %d packages", n)
	}
}
