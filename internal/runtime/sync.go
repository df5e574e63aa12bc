package runtime

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Environment variables and messages between the parent and `berth init`.
const (
	envInitPipe = "_BERTH_INITPIPE" // read by the C stage too (nsenter.c)
	modeCreate  = "create"
	modeExec    = "exec"
)

// initConfig is what the parent sends the Go init stage.
type initConfig struct {
	Mode        string            `json:"mode"`
	ID          string            `json:"id"`
	Spec        *specs.Spec       `json:"spec"`
	Process     *specs.Process    `json:"process"`
	Rootfs      string            `json:"rootfs"`
	NoPivot     bool              `json:"noPivot,omitempty"`
	CgroupPaths map[string]string `json:"cgroupPaths,omitempty"`
	FifoFd      int               `json:"fifoFd"`
	ConsoleFd   int               `json:"consoleFd"`
	UserNS      bool              `json:"userNS"`
	// InternalFds are berth's own descriptors, closed at execve; the fds
	// below them (3..) are the caller's --preserve-fds.
	InternalFds []int `json:"internalFds"`
}

type syncMsg struct {
	Type string `json:"type"` // hooks, hooks-done, ready, error
	Msg  string `json:"msg,omitempty"`
}

const (
	msgHooks     = "hooks"
	msgHooksDone = "hooks-done"
	msgReady     = "ready"
	msgError     = "error"
)

// nsPlan is what the C stage does; see nsenter.c for its wire format.
type nsPlan struct {
	clone   int
	joins   []nsJoin
	fork    bool
	cgroups []string // files the C stage writes "0" to, to join a cgroup
	timens  []string // "<clock> <secs> <nanos>" offsets of a new time namespace
}

type nsJoin struct {
	flag int
	path string
}

// encode writes the plan in the C stage's wire format. Paths were checked
// to be single lines (Validate; /proc paths and cgroup paths are ours).
func (p nsPlan) encode() []byte {
	var b strings.Builder
	if p.clone != 0 {
		fmt.Fprintf(&b, "clone=%d\n", p.clone)
	}
	for _, j := range p.joins {
		fmt.Fprintf(&b, "join=%d:%s\n", j.flag, j.path)
	}
	if p.fork {
		b.WriteString("fork=1\n")
	}
	for _, c := range p.cgroups {
		fmt.Fprintf(&b, "cgroup=%s\n", c)
	}
	for _, t := range p.timens {
		fmt.Fprintf(&b, "timens=%s\n", t)
	}
	out := make([]byte, 4+b.Len())
	binary.LittleEndian.PutUint32(out, uint32(b.Len()))
	copy(out[4:], b.String())
	return out
}

// planNamespaces orders the namespaces of a config for the C stage: joins
// by path (the user namespace first, so the others are joined with its
// privileges), then the set to create.
func planNamespaces(nss []specs.LinuxNamespace) nsPlan {
	var p nsPlan
	for _, ns := range nss {
		flag := nsFlags[ns.Type]
		if ns.Path == "" {
			p.clone |= flag
			continue
		}
		j := nsJoin{flag: flag, path: ns.Path}
		if ns.Type == specs.UserNamespace {
			p.joins = append([]nsJoin{j}, p.joins...)
		} else {
			p.joins = append(p.joins, j)
		}
		if ns.Type == specs.PIDNamespace {
			p.fork = true
		}
	}
	// Like a pid namespace, a new time namespace holds only the
	// children of the process that made it.
	if p.clone&(nsFlags[specs.PIDNamespace]|nsFlags[specs.TimeNamespace]) != 0 {
		p.fork = true
	}
	return p
}

// timeOffsets renders linux.timeOffsets for the C stage, in a stable order.
func timeOffsets(offs map[string]specs.LinuxTimeOffset) []string {
	var out []string
	for _, clock := range []string{"monotonic", "boottime"} {
		if o, ok := offs[clock]; ok {
			out = append(out, fmt.Sprintf("%s %d %d", clock, o.Secs, o.Nanosecs))
		}
	}
	return out
}

// childConn is the parent's end of the init socket.
type childConn struct {
	f   *os.File
	r   *bufio.Reader
	dec *json.Decoder
	enc *json.Encoder
}

func newChildConn(f *os.File) *childConn {
	r := bufio.NewReader(f)
	return &childConn{f: f, r: r, enc: json.NewEncoder(f)}
}

// readStage reads the C stage's messages until it reports the init pid.
// onMaps is called when the child waits for its id maps.
func (c *childConn) readStage(onMaps func() error) (int, error) {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, fmt.Errorf("init process exited before it entered its namespaces")
			}
			return 0, err
		}
		switch b {
		case 'M':
			if err := onMaps(); err != nil {
				return 0, err
			}
			if _, err := c.f.Write([]byte{'m'}); err != nil {
				return 0, err
			}
		case 'P':
			line, err := c.r.ReadString('\n')
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(strings.TrimSpace(line))
		case 'E':
			line, _ := c.r.ReadString('\n')
			return 0, errors.New(strings.TrimSpace(line))
		default:
			return 0, fmt.Errorf("init process: unexpected message %q", b)
		}
	}
}

func (c *childConn) send(v any) error { return c.enc.Encode(v) }

func (c *childConn) recv() (syncMsg, error) {
	if c.dec == nil {
		c.dec = json.NewDecoder(c.r)
	}
	var m syncMsg
	err := c.dec.Decode(&m)
	return m, err
}
