package container

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/volume"
)

// Engine runs containers from the images under one engine root.
//
// On disk (the persistent root and the run root, which is a tmpfs so a
// reboot forgets every running container's sockets):
//
//	<root>/
//	  metadata.db                 records: bucket containers, containerNames
//	  containers/<id>/
//	    config.json               the OCI bundle's config the runtime reads
//	    rootfs/                   empty: the overlay is mounted on it inside
//	                              the container's mount namespace only
//	    hostname, hosts,          bind-mounted into the container; written
//	    resolv.conf               at create and at every start
//	    <id>-json.log[.N]         the log, written by the monitor
//	  snapshots/active/<id>/      the writable layer (snapshot package)
//	<run root>/
//	  <id>/attach.sock            the monitor's socket (frames, see monitor.c)
//	  netns/<id>                  the container's network namespace, pinned
//	                              (a bind mount of nsfs) while it runs on a
//	                              bridge network
//	  runtime/<id>/state.json     the OCI runtime's state
type Engine struct {
	Root    string
	RunRoot string
	Images  *image.Service
	Runtime *runtime.Runtime
	Volumes *volume.Store
	// Networks keeps the networks containers attach to; the command line
	// sets it, with the kernel driver.
	Networks *network.Manager
	db       *metadb.DB
	// Exe is the berth binary the monitor runs as (/proc/self/exe).
	Exe string
}

// New opens the engine over root (persistent) and runRoot (volatile).
func New(root, runRoot string) (*Engine, error) {
	imgs, err := image.New(root)
	if err != nil {
		return nil, err
	}
	rt, err := runtime.New(filepath.Join(runRoot, "runtime"))
	if err != nil {
		return nil, err
	}
	db, err := metadb.Open(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(root, "containers"), 0o710); err != nil {
		return nil, err
	}
	vols, err := volume.New(root)
	if err != nil {
		return nil, err
	}
	return &Engine{Root: root, RunRoot: runRoot, Images: imgs, Runtime: rt, Volumes: vols, db: db, Exe: "/proc/self/exe"}, nil
}

// DefaultRunRoot is the run root for an engine root: /run/berth for the
// default root, else a directory named after the root, so two engines with
// different roots never share sockets or runtime state.
func DefaultRunRoot(root string) string {
	if root == "/var/lib/berth" || root == "" {
		return "/run/berth"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	return filepath.Join(abs, "run")
}

func (e *Engine) dir(id string) string      { return filepath.Join(e.Root, "containers", id) }
func (e *Engine) runDir(id string) string   { return filepath.Join(e.RunRoot, id) }
func (e *Engine) sockPath(id string) string { return filepath.Join(e.runDir(id), "attach.sock") }

func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validName is Docker's rule for container names.
func validName(name string) error {
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if i > 0 {
			ok = ok || r == '_' || r == '.' || r == '-'
		}
		if !ok {
			return fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
		}
	}
	if name == "" {
		return fmt.Errorf("invalid container name: empty")
	}
	return nil
}

var (
	adjectives = strings.Fields(`admiring amazing bold brave busy calm clever cool dazzling eager ecstatic elegant epic
		festive focused friendly funny gallant gifted happy hopeful jolly keen kind laughing loving lucid magical modest
		nice optimistic peaceful practical quirky relaxed serene sharp silly sleepy stoic sweet tender trusting upbeat
		vibrant vigilant wizardly wonderful youthful zealous`)
	surnames = strings.Fields(`albattani allen archimedes babbage bardeen bell bohr booth borg bose brahmagupta curie
		darwin dijkstra einstein euclid euler fermat feynman franklin galileo gauss goldberg hamilton hawking hopper
		hypatia johnson kepler knuth lamarr lovelace mayer mccarthy meitner newton noether pascal pike ritchie shannon
		thompson torvalds turing wiles wozniak`)
)

// randomName is a Docker-style adjective_surname name.
func randomName() string {
	var b [2]byte
	rand.Read(b[:])
	return adjectives[int(b[0])%len(adjectives)] + "_" + surnames[int(b[1])%len(surnames)]
}
