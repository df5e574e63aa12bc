package container

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// RefreshRecord is Refresh for a record already read (ps over many).
func (e *Engine) RefreshRecord(c *Container) *Container { return e.refresh(c) }

// InspectResponse is docker inspect's view of a container.
type InspectResponse struct {
	ID              string `json:"Id"`
	Created         string
	Path            string
	Args            []string
	State           inspectState
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	MountLabel      string
	ProcessLabel    string
	AppArmorProfile string
	HostConfig      HostConfig
	GraphDriver     graphDriver
	SizeRw          *int64 `json:",omitempty"`
	SizeRootFs      *int64 `json:",omitempty"`
	Mounts          []MountPoint
	Config          Config
	NetworkSettings networkSettings
}

type inspectState struct {
	Status     Status
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
}

type graphDriver struct {
	Name string
	Data map[string]string
}

// networkSettings is docker inspect's NetworkSettings: the networks by
// name and, for containers on the default bridge network, Docker's older
// top-level copy of that network's address.
type networkSettings struct {
	Bridge                 string
	SandboxID              string
	SandboxKey             string
	Ports                  PortMap
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	SecondaryIPAddresses   []string
	SecondaryIPv6Addresses []string
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
	Networks               map[string]*EndpointInfo
}

func inspectNetwork(c *Container) networkSettings {
	ns := c.NetworkSettings
	out := networkSettings{SandboxKey: ns.SandboxKey, Ports: ns.Ports, Networks: map[string]*EndpointInfo{}}
	if out.Ports == nil {
		out.Ports = PortMap{}
	}
	if ns.SandboxKey != "" {
		out.SandboxID = c.ID
	}
	for name, es := range ns.Networks {
		info := es.EndpointInfo
		out.Networks[name] = &info
		if name == modeBridge {
			out.EndpointID, out.Gateway, out.IPAddress, out.IPPrefixLen, out.MacAddress =
				es.EndpointID, es.Gateway, es.IPAddress, es.IPPrefixLen, es.MacAddress
		}
	}
	return out
}

// dockerTime formats as Docker does, with its zero time for "never".
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Inspect returns docker inspect's view of c.
func (e *Engine) Inspect(c *Container, size bool) *InspectResponse {
	dir := e.dir(c.ID)
	r := &InspectResponse{
		ID: c.ID, Created: dockerTime(c.Created), Path: c.Path, Args: c.Args, Image: c.Image,
		ResolvConfPath: filepath.Join(dir, "resolv.conf"), HostnamePath: filepath.Join(dir, "hostname"),
		HostsPath: filepath.Join(dir, "hosts"), LogPath: c.LogPath, Name: "/" + c.Name,
		RestartCount: c.RestartCount, Driver: e.Images.Snapshots.Driver(), Platform: "linux",
		HostConfig: c.HostConfig, Mounts: c.Mounts, Config: c.Config,
		NetworkSettings: inspectNetwork(c),
	}
	s := c.State
	r.State = inspectState{Status: s.Status, Running: s.Running, Paused: s.Paused, Restarting: s.Restarting,
		OOMKilled: s.OOMKilled, Dead: s.Dead, Pid: s.Pid, ExitCode: s.ExitCode, Error: s.Error,
		StartedAt: dockerTime(s.StartedAt), FinishedAt: dockerTime(s.FinishedAt)}
	if r.Args == nil {
		r.Args = []string{}
	}
	if r.Mounts == nil {
		r.Mounts = []MountPoint{}
	}
	// Empty rather than null, as dockerd shows them.
	hc := &r.HostConfig
	if hc.PortBindings == nil {
		hc.PortBindings = PortMap{}
	}
	for _, l := range []*[]string{&hc.Dns, &hc.DnsOptions, &hc.DnsSearch} {
		if *l == nil {
			*l = []string{}
		}
	}
	r.GraphDriver = graphDriver{Name: r.Driver, Data: map[string]string{}}
	if ms, err := e.Images.Snapshots.Mounts(c.ID); err == nil && len(ms) == 1 {
		for _, o := range ms[0].Options {
			if k, v, ok := strings.Cut(o, "="); ok {
				switch k {
				case "lowerdir":
					r.GraphDriver.Data["LowerDir"] = v
				case "upperdir":
					r.GraphDriver.Data["UpperDir"] = v
				case "workdir":
					r.GraphDriver.Data["WorkDir"] = v
				}
			}
		}
	}
	if size {
		rw, _ := e.SizeRw(c.ID)
		root := rw + e.ImageSize(c)
		r.SizeRw, r.SizeRootFs = &rw, &root
	}
	return r
}

// SizeRw is what the container has written to its writable layer.
func (e *Engine) SizeRw(id string) (int64, error) {
	ms, err := e.Images.Snapshots.Mounts(id)
	if err != nil || len(ms) != 1 {
		return 0, err
	}
	dir := ""
	for _, o := range ms[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			dir = v
		}
	}
	if dir == "" {
		dir = ms[0].Source // the copy driver binds a full copy
	}
	var n int64
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				if seen[st.Ino] {
					return nil
				}
				seen[st.Ino] = true
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// ImageSize is the size of the container's image, 0 if it is gone.
func (e *Engine) ImageSize(c *Container) int64 {
	if img, err := e.Images.Get(c.Image); err == nil {
		return img.Size
	}
	return 0
}
