package container

import (
	"time"
)

// Container is one container record, shaped like Docker's inspect output
// so that `inspect` is mostly this struct as JSON.
type Container struct {
	ID      string
	Name    string // without Docker's leading "/"
	Created time.Time
	// Path and Args are the process the container runs (entrypoint and
	// command combined, --init excluded).
	Path string
	Args []string
	// Image is the image ID (config digest); Config.Image the name given.
	Image      string
	Config     Config
	HostConfig HostConfig
	State      State
	Mounts     []MountPoint
	LogPath    string
	// RestartCount counts restarts by the restart policy since the last
	// start by a user.
	RestartCount int
	// Backoff is the next restart delay in milliseconds.
	Backoff int `json:",omitempty"`
	// NetworkSettings holds the networks the container is to be attached
	// to (from create, network connect and disconnect) and, while it
	// runs, its addresses, published ports and network namespace.
	NetworkSettings NetworkSettings
}

// Config is the part of the container's configuration that does not depend
// on the host (Docker's container.Config).
type Config struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	Labels       map[string]string
	StopSignal   string `json:",omitempty"`
	StopTimeout  *int   `json:",omitempty"`
}

// HostConfig is the host-dependent configuration (Docker's HostConfig).
type HostConfig struct {
	Binds          []string
	LogConfig      LogConfig
	NetworkMode    string
	RestartPolicy  RestartPolicy
	AutoRemove     bool
	CapAdd         []string
	CapDrop        []string
	Privileged     bool
	ReadonlyRootfs bool
	SecurityOpt    []string
	Tmpfs          map[string]string `json:",omitempty"`
	Init           *bool             `json:",omitempty"`
	Resources
	Mounts []Mount `json:",omitempty"`

	// Networking (Docker's names). PortBindings maps "80/tcp" to the
	// host side the user asked for (-p); HostPort "" is any free port,
	// "8000-8010" one from a range.
	PortBindings    PortMap
	PublishAllPorts bool
	Dns             []string
	DnsOptions      []string
	DnsSearch       []string
	ExtraHosts      []string
	// Links are --link's, in Docker's form "/target:/container/alias"
	// (links.go).
	Links []string
}

// PortMap maps a container port ("80/tcp") to its host bindings.
type PortMap map[string][]PortBinding

// PortBinding is one host side of a published port.
type PortBinding struct {
	HostIp   string
	HostPort string
}

// NetworkSettings is the container's networking, shaped as in Docker's
// records.
type NetworkSettings struct {
	// Networks, by network name: what the user asked for (NetworkID,
	// Aliases, IPAMConfig) and, while the container runs, what it got.
	Networks map[string]*EndpointSettings `json:",omitempty"`
	// Ports are the published ports in use while the container runs,
	// with the host ports chosen; exposed ports without one map to nil.
	Ports PortMap `json:",omitempty"`
	// SandboxKey is the container's network namespace, pinned under the
	// run root, while it runs on a bridge network.
	SandboxKey string `json:",omitempty"`
}

// EndpointInfo is what docker inspect shows of a container's attachment
// to one network (Docker's network.EndpointSettings).
type EndpointInfo struct {
	IPAMConfig          *EndpointIPAMConfig
	Links               []string
	Aliases             []string
	MacAddress          string
	DriverOpts          map[string]string
	NetworkID           string
	EndpointID          string
	Gateway             string
	IPAddress           string
	IPPrefixLen         int
	IPv6Gateway         string
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	DNSNames            []string
}

// EndpointSettings is the container's attachment to one network as
// recorded: Docker's fields (flattened in JSON) and berth's own.
type EndpointSettings struct {
	EndpointInfo
	// IfName is the interface inside the container while it runs
	// (eth0 for the first network): disconnect deletes it.
	IfName string `json:",omitempty"`
}

// EndpointIPAMConfig is the address asked for with --ip.
type EndpointIPAMConfig struct {
	IPv4Address string `json:",omitempty"`
}

// Resources are the cgroup limits, in Docker's units.
type Resources struct {
	Memory     int64 // bytes; 0 = unlimited
	MemorySwap int64 // memory+swap bytes; -1 = unlimited swap
	NanoCpus   int64
	CpuShares  int64
	CpusetCpus string
	PidsLimit  *int64 `json:",omitempty"`
	Ulimits    []Ulimit
}

// Ulimit is one --ulimit.
type Ulimit struct {
	Name string
	Soft int64
	Hard int64
}

// LogConfig is --log-driver and --log-opt.
type LogConfig struct {
	Type   string
	Config map[string]string
}

// RestartPolicy is --restart.
type RestartPolicy struct {
	Name              string // "no", "always", "unless-stopped", "on-failure"
	MaximumRetryCount int
}

// Mount is one -v, --mount or --tmpfs request, before it is resolved.
type Mount struct {
	Type        string // "bind", "volume", "tmpfs"
	Source      string // host path, volume name ("" = anonymous)
	Target      string
	ReadOnly    bool
	Propagation string   `json:",omitempty"`
	NoCopy      bool     `json:",omitempty"`
	Options     []string `json:",omitempty"` // tmpfs mount options
}

// MountPoint is a resolved mount, as inspect's Mounts shows it.
type MountPoint struct {
	Type        string
	Name        string `json:",omitempty"`
	Source      string
	Destination string
	Driver      string `json:",omitempty"`
	Mode        string
	RW          bool
	Propagation string
}

// State is the container's lifecycle state.
type State struct {
	Status     Status
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	// MonitorPid is the container's monitor while it runs.
	MonitorPid int `json:",omitempty"`
	// StopRequested is set by stop, kill and rm: the restart policy does
	// not apply to an exit a user asked for (Docker's
	// HasBeenManuallyStopped).
	StopRequested bool `json:",omitempty"`
}

// Status is a container's state as docker ps filters name them.
type Status string

const (
	StatusCreated    Status = "created"
	StatusRunning    Status = "running"
	StatusPaused     Status = "paused"
	StatusRestarting Status = "restarting"
	StatusRemoving   Status = "removing"
	StatusExited     Status = "exited"
	StatusDead       Status = "dead"
)

// ShortID is the 12-hex form of an ID.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (s *State) set(st Status) {
	s.Status = st
	s.Running = st == StatusRunning || st == StatusPaused || st == StatusRestarting
	s.Paused = st == StatusPaused
	s.Restarting = st == StatusRestarting
	s.Dead = st == StatusDead
}
