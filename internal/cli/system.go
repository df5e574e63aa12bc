package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"text/template"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/cgroups"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/network"
	"github.com/berth-dev/berth/internal/runtime"
	"github.com/berth-dev/berth/internal/version"
)

// versionInfo is `berth version`'s data, shaped like `docker version`.
type versionInfo struct {
	Version    string
	APIVersion string `json:"ApiVersion"`
	GitCommit  string
	GoVersion  string
	Os         string
	Arch       string
	OCIVersion string `json:"OciVersion"`
}

func newVersionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show berth's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := versionInfo{
				Version: version.Version, GitCommit: version.GitCommit, GoVersion: goruntime.Version(),
				Os: goruntime.GOOS, Arch: goruntime.GOARCH, OCIVersion: specs.Version,
			}
			if format != "" {
				return formatOut(cmd, format, v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "berth:\n Version:           %s\n Git commit:        %s\n Go version:        %s\n OS/Arch:           %s/%s\n OCI runtime spec:  %s\n",
				v.Version, v.GitCommit, v.GoVersion, v.Os, v.Arch, v.OCIVersion)
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format with a Go template, or 'json'")
	return cmd
}

// systemInfo is `berth info`'s data, with Docker's field names where they
// apply.
type systemInfo struct {
	ID                string `json:"ID"`
	Containers        int
	ContainersRunning int
	ContainersPaused  int
	ContainersStopped int
	Images            int
	Driver            string
	CgroupDriver      string
	CgroupVersion     string
	KernelVersion     string
	OperatingSystem   string
	OSType            string
	Architecture      string
	NCPU              int
	MemTotal          int64
	Name              string
	ServerVersion     string
	DockerRootDir     string
	RuntimeRoot       string
	DefaultRuntime    string
	SecurityOptions   []string
	RegistryConfig    registryInfo
	// IPv4Forwarding is the host's net.ipv4.ip_forward, as Docker's;
	// IPv4ForwardingBy says when berth turned it on, if it did.
	IPv4Forwarding   bool
	IPv4ForwardingBy string `json:",omitempty"`
}

// registryInfo is Docker's RegistryConfig, from berth's config file.
type registryInfo struct {
	InsecureRegistryCIDRs []string `json:"InsecureRegistryCIDRs"`
	Mirrors               []string `json:"Mirrors"`
}

func newInfoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show system-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := gatherInfo()
			if err != nil {
				return err
			}
			if format != "" {
				return formatOut(cmd, format, info)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Containers: %d\n Running: %d\n Paused: %d\n Stopped: %d\n", info.Containers, info.ContainersRunning, info.ContainersPaused, info.ContainersStopped)
			fmt.Fprintf(w, "Images: %d\n", info.Images)
			fmt.Fprintf(w, "Server Version: %s\n", info.ServerVersion)
			fmt.Fprintf(w, "Storage Driver: %s\n", info.Driver)
			fmt.Fprintf(w, "Cgroup Driver: %s\n", info.CgroupDriver)
			fmt.Fprintf(w, "Cgroup Version: %s\n", info.CgroupVersion)
			fmt.Fprintf(w, "Default Runtime: %s\n", info.DefaultRuntime)
			fmt.Fprintf(w, "Security Options:\n")
			for _, s := range info.SecurityOptions {
				fmt.Fprintf(w, " %s\n", s)
			}
			fmt.Fprintf(w, "Kernel Version: %s\n", info.KernelVersion)
			fmt.Fprintf(w, "Operating System: %s\n", info.OperatingSystem)
			fmt.Fprintf(w, "OSType: %s\n", info.OSType)
			fmt.Fprintf(w, "Architecture: %s\n", info.Architecture)
			fmt.Fprintf(w, "CPUs: %d\n", info.NCPU)
			fmt.Fprintf(w, "Total Memory: %s\n", humanBytes(info.MemTotal))
			fmt.Fprintf(w, "Name: %s\n", info.Name)
			fmt.Fprintf(w, "Berth Root Dir: %s\n", info.DockerRootDir)
			fmt.Fprintf(w, "Runtime State Dir: %s\n", info.RuntimeRoot)
			fmt.Fprintf(w, "Insecure Registries:\n")
			for _, r := range info.RegistryConfig.InsecureRegistryCIDRs {
				fmt.Fprintf(w, " %s\n", r)
			}
			switch {
			case info.IPv4Forwarding && info.IPv4ForwardingBy != "":
				fmt.Fprintf(w, "IPv4 Forwarding: enabled (turned on by berth: %s)\n", info.IPv4ForwardingBy)
			case info.IPv4Forwarding:
				fmt.Fprintf(w, "IPv4 Forwarding: enabled\n")
			default:
				fmt.Fprintf(w, "IPv4 Forwarding: disabled (berth turns it on when a bridge network needs it)\n")
			}
			if len(info.RegistryConfig.Mirrors) > 0 {
				fmt.Fprintf(w, "Registry Mirrors:\n")
				for _, m := range info.RegistryConfig.Mirrors {
					fmt.Fprintf(w, " %s\n", m)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format with a Go template, or 'json'")
	return cmd
}

func gatherInfo() (*systemInfo, error) {
	info := &systemInfo{
		ServerVersion: version.Version, Driver: storageDriver(), CgroupDriver: "cgroupfs",
		OSType: "linux", Architecture: unameField(func(u *unix.Utsname) []byte { return u.Machine[:] }),
		KernelVersion: unameField(func(u *unix.Utsname) []byte { return u.Release[:] }),
		NCPU:          goruntime.NumCPU(), OperatingSystem: osRelease(),
		DockerRootDir:   engineRoot,
		RuntimeRoot:     envOr("BERTH_RUNTIME_ROOT", runtime.DefaultRoot),
		DefaultRuntime:  "berth",
		SecurityOptions: []string{"name=seccomp,profile=builtin"},
	}
	info.Name, _ = os.Hostname()
	// A broken config file is reported by the registry verbs; info shows
	// the defaults rather than failing.
	info.RegistryConfig.InsecureRegistryCIDRs = []string{"127.0.0.0/8", "::1/128"}
	if h, err := registryHosts(); err == nil {
		info.RegistryConfig.InsecureRegistryCIDRs = append(info.RegistryConfig.InsecureRegistryCIDRs, h.Insecure...)
		info.RegistryConfig.Mirrors = h.Mirrors
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
		info.IPv4Forwarding = strings.TrimSpace(string(b)) == "1"
	}
	// Forwarding is a host-wide change berth makes for bridge networks:
	// say so, since the user did not ask for it by that name.
	info.IPv4ForwardingBy = network.IPForwardChanged(engineRoot)
	if cgroups.DetectMode() == cgroups.Unified {
		info.CgroupVersion = "2"
	} else {
		info.CgroupVersion = "1"
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		info.MemTotal = int64(si.Totalram) * int64(si.Unit)
	}
	// Images are counted only where a store exists: info never creates one.
	if _, err := os.Stat(filepath.Join(engineRoot, "metadata.db")); err == nil {
		if s, err := image.New(engineRoot); err == nil {
			if imgs, err := s.List(); err == nil {
				info.Images = len(imgs)
			}
		}
	}
	if d, err := os.ReadFile(filepath.Join(engineRoot, "snapshots", "driver")); err == nil {
		if f := strings.Fields(string(d)); len(f) > 0 && f[0] == "copy" {
			info.Driver = "vfs"
		}
	}
	// Containers are the engine's records (runtime-only containers of
	// `berth runtime` are not Docker containers).
	if _, err := os.Stat(filepath.Join(engineRoot, "metadata.db")); err == nil {
		if e, err := containerEngine(); err == nil {
			cs, _ := e.List()
			for _, c := range cs {
				c = e.RefreshRecord(c)
				info.Containers++
				switch c.State.Status {
				case container.StatusRunning, container.StatusRestarting:
					info.ContainersRunning++
				case container.StatusPaused:
					info.ContainersPaused++
				default:
					info.ContainersStopped++
				}
			}
		}
	}
	return info, nil
}

// storageDriver names the snapshotter berth will use: overlay where the
// kernel has it.
func storageDriver() string {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return "vfs"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasSuffix(s.Text(), "\toverlay") {
			return "overlay2"
		}
	}
	return "vfs"
}

func unameField(get func(*unix.Utsname) []byte) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(get(&u))
}

func osRelease() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatOut prints v as JSON for "json", else through a Go template, as
// Docker's --format does.
func formatOut(cmd *cobra.Command, format string, v any) error {
	if format == "json" || format == "{{json .}}" {
		return printJSON(cmd.OutOrStdout(), v)
	}
	tmpl, err := template.New("format").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			var b strings.Builder
			err := printJSON(&b, v)
			return strings.TrimSpace(b.String()), err
		},
	}).Parse(format)
	if err != nil {
		return usageErr("--format: %v", err)
	}
	if err := tmpl.Execute(cmd.OutOrStdout(), v); err != nil {
		return usageErr("--format: %v", err)
	}
	fmt.Fprintln(cmd.OutOrStdout())
	return nil
}
