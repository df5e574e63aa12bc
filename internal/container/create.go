package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/opts"
	"github.com/berth-dev/berth/internal/runtime"
)

// CreateOpts is what `create` and `run` ask for, already parsed.
type CreateOpts struct {
	Name  string
	Image string
	// Cmd is the command after the image name; empty means the image's.
	Cmd []string
	// Entrypoint overrides the image's when non-nil (an empty slice clears
	// it, as --entrypoint "" does).
	Entrypoint  []string
	Env         []string
	WorkingDir  string
	User        string
	Hostname    string
	Labels      map[string]string
	Tty         bool
	OpenStdin   bool
	StdinOnce   bool
	StopSignal  string
	StopTimeout *int
	// ExposedPorts are --expose's and -p's container ports ("80/tcp"),
	// added to the image's.
	ExposedPorts []string
	// Network holds the options for the network of --network
	// (HostConfig.NetworkMode): --network-alias, --ip.
	Network    NetworkOpts
	HostConfig HostConfig
}

// Create makes a container from an image: a record, a writable snapshot
// and an OCI bundle. On failure nothing is left.
func (e *Engine) Create(o CreateOpts) (c *Container, err error) {
	img, err := e.Images.Get(o.Image)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("No such image: %s: %w", o.Image, errdefs.ErrNotFound)
		}
		return nil, err
	}
	if o.HostConfig.AutoRemove && o.HostConfig.RestartPolicy.Name != "" && o.HostConfig.RestartPolicy.Name != "no" {
		return nil, fmt.Errorf("conflicting options: cannot use --restart %s with --rm (a removed container cannot restart): %w",
			o.HostConfig.RestartPolicy.Name, errdefs.ErrInvalidArgument)
	}
	c = &Container{ID: newID(), Name: strings.TrimPrefix(o.Name, "/"), Created: time.Now().UTC(), Image: img.ID.String()}
	if c.Name == "" {
		c.Name = randomName() // a clash is retried below
	} else if err := validName(c.Name); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := mergeConfig(c, o, img); err != nil {
		return nil, err
	}
	hc := o.HostConfig
	if hc.LogConfig.Type == "" {
		hc.LogConfig.Type = "json-file"
	}
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = "no"
	}
	c.HostConfig = hc
	if err := e.configureNetwork(c, o); err != nil {
		return nil, err
	}
	logOpts, err := parseLogConfig(hc.LogConfig)
	if err != nil {
		return nil, err
	}
	if hc.LogConfig.Type == "json-file" {
		c.LogPath = filepath.Join(e.dir(c.ID), c.ID+"-json.log")
	}
	_ = logOpts

	// Claim the name first: a clash fails fast, before any work.
	if o.Name != "" {
		if existing, err := e.Get(c.Name); err == nil && existing.Name == c.Name {
			return nil, nameConflict(c.Name, existing.ID)
		}
	}
	id, dir := c.ID, e.dir(c.ID)
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.Images.Snapshots.RemoveActive(id)
			os.RemoveAll(dir)
		}
	}()
	plan, err := e.Images.Snapshots.Prepare(c.ID, img.TopChainID())
	if err != nil {
		return nil, fmt.Errorf("prepare the container's filesystem: %w", err)
	}
	// Volumes are created and the record written under one hold, so a
	// concurrent `volume rm` or prune sees either no container or this one.
	err = e.Volumes.Hold(func() error {
		mounts, err := e.resolveMounts(c, img)
		if err != nil {
			return err
		}
		spec, err := buildSpec(c, e.dir(c.ID), plan, mounts)
		if err != nil {
			return err
		}
		if onBridge(c.HostConfig.NetworkMode) {
			// Made at every start, before the runtime joins it.
			setNetNS(spec, e.netnsPath(c.ID))
		}
		if err := e.writeNetFiles(c, &netSetup{hostname: c.Config.Hostname}, nil); err != nil {
			return err
		}
		data, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			return err
		}
		c.State.set(StatusCreated)
		for attempt := 0; ; attempt++ {
			err = e.insert(c)
			if err == nil || o.Name != "" || !errors.Is(err, errdefs.ErrConflict) || attempt > 20 {
				return err
			}
			c.Name = randomName() + fmt.Sprint(attempt)
		}
	})
	if err != nil {
		e.removeAnonymousVolumes(c)
		return nil, err
	}
	return c, nil
}

// mergeConfig combines the image's config with the user's options, by
// Docker's rules: an --entrypoint drops the image's Cmd; arguments after
// the image replace its Cmd; -e overrides the image's variables by name.
func mergeConfig(c *Container, o CreateOpts, img *image.Image) error {
	ic := img.Config.Config
	cfg := Config{
		Image:       o.Image,
		Hostname:    o.Hostname,
		User:        ic.User,
		Tty:         o.Tty,
		OpenStdin:   o.OpenStdin,
		StdinOnce:   o.StdinOnce,
		WorkingDir:  ic.WorkingDir,
		StopSignal:  ic.StopSignal,
		StopTimeout: o.StopTimeout,
		Labels:      map[string]string{},
		Volumes:     map[string]struct{}{},
	}
	if cfg.Hostname == "" {
		cfg.Hostname = ShortID(c.ID)
	}
	if o.User != "" {
		cfg.User = o.User
	}
	if o.WorkingDir != "" {
		if !filepath.IsAbs(o.WorkingDir) {
			return fmt.Errorf("the working directory '%s' is invalid, it needs to be an absolute path: %w", o.WorkingDir, errdefs.ErrInvalidArgument)
		}
		cfg.WorkingDir = o.WorkingDir
	}
	if o.StopSignal != "" {
		cfg.StopSignal = o.StopSignal
	}
	if cfg.StopSignal != "" {
		if _, err := runtime.ParseSignal(cfg.StopSignal); err != nil {
			return fmt.Errorf("invalid stop signal %q: %w", cfg.StopSignal, errdefs.ErrInvalidArgument)
		}
	}
	if o.Entrypoint != nil {
		cfg.Entrypoint = slices.Clone(o.Entrypoint)
		if len(cfg.Entrypoint) == 1 && cfg.Entrypoint[0] == "" {
			cfg.Entrypoint = nil
		}
		cfg.Cmd = slices.Clone(o.Cmd)
	} else {
		cfg.Entrypoint = slices.Clone(ic.Entrypoint)
		cfg.Cmd = slices.Clone(ic.Cmd)
		if len(o.Cmd) > 0 {
			cfg.Cmd = slices.Clone(o.Cmd)
		}
	}
	args := append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	if len(args) == 0 {
		return fmt.Errorf("no command specified: give one after the image name, or use an image with a CMD or ENTRYPOINT: %w", errdefs.ErrInvalidArgument)
	}
	c.Path, c.Args = args[0], args[1:]
	cfg.Env = opts.MergeEnv(nil, ic.Env, o.Env)
	if !hasEnv(cfg.Env, "PATH") {
		cfg.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, cfg.Env...)
	}
	for k, v := range img.Config.Config.Labels {
		cfg.Labels[k] = v
	}
	for k, v := range o.Labels {
		cfg.Labels[k] = v
	}
	for v := range ic.Volumes {
		cfg.Volumes[v] = struct{}{}
	}
	if len(ic.ExposedPorts)+len(o.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for p := range ic.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
		for _, p := range o.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	c.Config = cfg
	return nil
}
