package container

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/runtime"
)

// active reports whether the record says a process may be running.
func (c *Container) active() bool {
	switch c.State.Status {
	case StatusRunning, StatusPaused, StatusRestarting:
		return true
	}
	return false
}

// Refresh returns container ref with its state checked against the
// system: a container whose monitor was killed is shown as it really is
// (still running, or exited with code 255 and the reason in Error), and
// stop, kill and rm keep working on it.
func (e *Engine) Refresh(ref string) (*Container, error) {
	c, err := e.Get(ref)
	if err != nil {
		return nil, err
	}
	return e.refresh(c), nil
}

func (e *Engine) refresh(c *Container) *Container {
	if !c.active() || e.monitorAlive(c) {
		return c
	}
	st, err := e.Runtime.State(c.ID)
	if err == nil && (st.Status == runtime.Running || st.Status == runtime.Paused) {
		return c // orphaned but alive: still manageable through the runtime
	}
	if c.State.Status == StatusRestarting && time.Since(c.State.FinishedAt) < 2*time.Second {
		return c // the monitor may be between runs
	}
	nc, err := e.update(c.ID, func(c *Container) error {
		if !c.active() {
			return nil
		}
		c.State.set(StatusExited)
		c.State.ExitCode = 255
		c.State.Pid = 0
		c.State.MonitorPid = 0
		c.State.FinishedAt = time.Now().UTC()
		c.State.Error = "the container's monitor was killed; its exit code is unknown"
		c.NetworkSettings = stoppedSettings(c.NetworkSettings)
		return nil
	})
	if err != nil {
		return c
	}
	e.Runtime.Delete(c.ID, true)
	e.teardownNetwork(nc)
	os.RemoveAll(e.runDir(c.ID))
	if nc.HostConfig.AutoRemove {
		e.removeAll(nc, true)
	}
	return nc
}

func (e *Engine) notRunning(c *Container) error {
	return fmt.Errorf("container %s is not running: %w", ShortID(c.ID), errdefs.ErrConflict)
}

// Kill sends sig to the container's main process.
func (e *Engine) Kill(ref string, sig unix.Signal) error {
	c, err := e.Refresh(ref)
	if err != nil {
		return err
	}
	if !c.active() || c.State.Status == StatusRestarting {
		return e.notRunning(c)
	}
	if sig == unix.SIGKILL || sig == e.stopSignal(c) {
		e.update(c.ID, func(c *Container) error { c.State.StopRequested = true; return nil })
	}
	if err := e.Runtime.Kill(c.ID, sig, false); err != nil {
		return fmt.Errorf("kill container %s: %w", ShortID(c.ID), err)
	}
	return nil
}

func (e *Engine) stopSignal(c *Container) unix.Signal {
	if c.Config.StopSignal != "" {
		if s, err := runtime.ParseSignal(c.Config.StopSignal); err == nil {
			return s
		}
	}
	return unix.SIGTERM
}

// Stop sends the stop signal, waits up to timeout (nil: the container's
// --stop-timeout, else 10 s; negative: forever), then kills it.
func (e *Engine) Stop(ref string, timeout *int) error {
	c, err := e.Refresh(ref)
	if err != nil {
		return err
	}
	c, err = e.update(c.ID, func(c *Container) error {
		c.State.StopRequested = true
		if c.State.Status == StatusRestarting {
			// Nothing runs: the monitor waits out its backoff, and its
			// start hook will see StopRequested and not start again.
			c.State.set(StatusExited)
		}
		return nil
	})
	if err != nil || !c.active() {
		return err
	}
	t := 10
	if c.Config.StopTimeout != nil {
		t = *c.Config.StopTimeout
	}
	if timeout != nil {
		t = *timeout
	}
	if err := e.Runtime.Kill(c.ID, e.stopSignal(c), false); err == nil {
		if c.State.Status == StatusPaused {
			e.Runtime.Resume(c.ID) // the signal is delivered once thawed
		}
		var deadline time.Time
		if t >= 0 {
			deadline = time.Now().Add(time.Duration(t) * time.Second)
		}
		if _, err := e.waitExit(c, deadline); err == nil {
			return nil
		}
	}
	return e.killAndWait(c)
}

// killAndWait kills every process of the container and waits for the
// monitor to record the exit.
func (e *Engine) killAndWait(c *Container) error {
	if err := e.Runtime.Kill(c.ID, unix.SIGKILL, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		if st, serr := e.Runtime.State(c.ID); serr == nil && st.Status != runtime.Stopped {
			return fmt.Errorf("kill container %s: %w", ShortID(c.ID), err)
		}
	}
	if c.State.Status == StatusPaused {
		e.Runtime.Resume(c.ID)
	}
	if _, err := e.waitExit(c, time.Now().Add(30*time.Second)); err != nil {
		return fmt.Errorf("container %s did not exit after SIGKILL: %w", ShortID(c.ID), err)
	}
	e.refresh(c)
	return nil
}

// Wait blocks until the container stops and returns its exit code.
func (e *Engine) Wait(ref string) (int, error) {
	c, err := e.Refresh(ref)
	if err != nil {
		return 0, err
	}
	for c.active() {
		code, err := e.waitExit(c, time.Time{})
		if err != nil {
			return 0, err
		}
		nc, err := e.Refresh(c.ID)
		if err != nil {
			if code >= 0 {
				return code, nil // removed (--rm): the monitor told us
			}
			return 0, err
		}
		c = nc
		if code >= 0 && !c.active() {
			return code, nil
		}
	}
	return c.State.ExitCode, nil
}

// RemoveOpts are rm's flags.
type RemoveOpts struct {
	Force   bool // kill a running container first
	Volumes bool // remove its anonymous volumes too
}

// Remove deletes a container and everything it has on disk.
func (e *Engine) Remove(ref string, o RemoveOpts) error {
	c, err := e.Refresh(ref)
	if err != nil {
		return err
	}
	if c.active() {
		if !o.Force {
			return fmt.Errorf("cannot remove container \"/%s\": container is %s: stop the container before removing or force remove: %w",
				c.Name, c.State.Status, errdefs.ErrConflict)
		}
		c, err = e.update(c.ID, func(c *Container) error { c.State.StopRequested = true; return nil })
		if err != nil {
			return err
		}
		if err := e.killAndWait(c); err != nil {
			return err
		}
		if c, err = e.Get(c.ID); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				return nil // it was --rm: gone with its exit
			}
			return err
		}
	}
	return e.removeAll(c, o.Volumes)
}

// removeAll deletes what the container has: runtime state, writable
// layer, bundle and logs, run directory, record (last, so a crash midway
// leaves a record that rm can finish).
func (e *Engine) removeAll(c *Container, volumes bool) error {
	if _, err := e.update(c.ID, func(c *Container) error {
		c.State.set(StatusRemoving)
		return nil
	}); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	if _, err := e.Runtime.State(c.ID); err == nil {
		// The exit hook may delete it first: gone is what we want.
		if err := e.Runtime.Delete(c.ID, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	// Before the record goes, so a failure leaves it for another rm.
	if err := e.teardownNetwork(c); err != nil {
		return err
	}
	if err := e.Images.Snapshots.RemoveActive(c.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("remove the container's filesystem: %w", err)
	}
	if err := os.RemoveAll(e.dir(c.ID)); err != nil {
		return err
	}
	os.RemoveAll(e.runDir(c.ID))
	if volumes {
		if err := e.removeAnonymousVolumes(c); err != nil {
			return err
		}
	}
	return e.drop(c.ID)
}

// Pause freezes the container's processes.
func (e *Engine) Pause(ref string) error {
	c, err := e.Refresh(ref)
	if err != nil {
		return err
	}
	switch c.State.Status {
	case StatusRunning:
	case StatusPaused:
		return fmt.Errorf("container %s is already paused: %w", ShortID(c.ID), errdefs.ErrConflict)
	default:
		return e.notRunning(c)
	}
	if err := e.Runtime.Pause(c.ID); err != nil {
		return err
	}
	_, err = e.update(c.ID, func(c *Container) error { c.State.set(StatusPaused); return nil })
	return err
}

// Unpause thaws a paused container.
func (e *Engine) Unpause(ref string) error {
	c, err := e.Refresh(ref)
	if err != nil {
		return err
	}
	if c.State.Status != StatusPaused {
		return fmt.Errorf("container %s is not paused: %w", ShortID(c.ID), errdefs.ErrConflict)
	}
	if err := e.Runtime.Resume(c.ID); err != nil {
		return err
	}
	_, err = e.update(c.ID, func(c *Container) error { c.State.set(StatusRunning); return nil })
	return err
}

// Rename gives a container a new name.
func (e *Engine) Rename(ref, name string) error {
	c, err := e.Get(ref)
	if err != nil {
		return err
	}
	if err := validName(name); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := e.rename(c.ID, name); err != nil {
		return err
	}
	// The endpoints carry the name DNS answers for: the new one from now.
	if e.Networks != nil {
		changed, err := e.Networks.RenameContainer(c.ID, name)
		if err != nil {
			return fmt.Errorf("rename %s: update its network endpoints: %w", ShortID(c.ID), err)
		}
		if changed {
			return dnsNotify(e.RunRoot)
		}
	}
	return nil
}
