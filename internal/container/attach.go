package container

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Frame types of the monitor's socket protocol (see monitor/monitor.c).
const (
	FrameStdin   = 0
	FrameStdout  = 1
	FrameStderr  = 2
	FrameStarted = 'S'
	FrameError   = 'E'
	FrameExited  = 'X'
	frameClose   = 'c'
	frameResize  = 'r'
	frameHello   = 'h'
)

const frameMax = 32768

// Conn is a connection to a container's monitor: output and lifecycle
// frames in, stdin and resize frames out.
type Conn struct {
	c   net.Conn
	hdr [5]byte
	buf []byte
}

// ReadFrame returns the next frame; the payload is valid until the next call.
func (a *Conn) ReadFrame() (byte, []byte, error) {
	if _, err := io.ReadFull(a.c, a.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(a.hdr[1:])
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("monitor sent a %d-byte frame", n)
	}
	if cap(a.buf) < int(n) {
		a.buf = make([]byte, n)
	}
	p := a.buf[:n]
	if _, err := io.ReadFull(a.c, p); err != nil {
		return 0, nil, err
	}
	return a.hdr[0], p, nil
}

func (a *Conn) writeFrame(t byte, p []byte) error {
	for len(p) > frameMax {
		if err := a.writeFrame(t, p[:frameMax]); err != nil {
			return err
		}
		p = p[frameMax:]
	}
	msg := make([]byte, 5+len(p))
	msg[0] = t
	binary.BigEndian.PutUint32(msg[1:], uint32(len(p)))
	copy(msg[5:], p)
	_, err := a.c.Write(msg)
	return err
}

// Write sends p to the container's stdin.
func (a *Conn) Write(p []byte) (int, error) {
	if err := a.writeFrame(FrameStdin, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseStdin tells the monitor our input ended.
func (a *Conn) CloseStdin() error { return a.writeFrame(frameClose, nil) }

// Resize sets the container's terminal size.
func (a *Conn) Resize(rows, cols uint16) error {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], rows)
	binary.BigEndian.PutUint16(p[2:], cols)
	return a.writeFrame(frameResize, p[:])
}

// Drain reads to the end: the monitor closes its connections as it exits,
// after the container's exit is recorded and its --rm removal done.
func (a *Conn) Drain() {
	a.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := a.ReadFrame(); err != nil {
			return
		}
	}
}

// SetDeadline bounds the reads and writes.
func (a *Conn) SetDeadline(t time.Time) error { return a.c.SetDeadline(t) }

// Close ends the connection; the container is not affected.
func (a *Conn) Close() error { return a.c.Close() }

// Dial connects to the monitor of container id. output asks for its
// stdout and stderr; without it only lifecycle frames arrive.
func (e *Engine) Dial(id string, output bool) (*Conn, error) {
	c, err := dialUnix(e.sockPath(id))
	if err != nil {
		return nil, err
	}
	a := &Conn{c: c}
	hello := []byte("w")
	if output {
		hello = []byte("o")
	}
	if err := a.writeFrame(frameHello, hello); err != nil {
		c.Close()
		return nil, err
	}
	return a, nil
}

// dialUnix connects through /proc/self/fd when the path is longer than a
// socket address can hold (deep test roots), as the monitor binds it.
func dialUnix(path string) (net.Conn, error) {
	if len(path) < 100 {
		return net.Dial("unix", path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return net.Dial("unix", fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)))
}

// shortSockPath is path, or its /proc/self/fd form kept valid by the
// returned file, for code that takes a socket path (the console socket).
func shortSockPath(path string) (string, func(), error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

// errMonitorGone is what a connection to a dead or exited monitor gives.
var errMonitorGone = errors.New("the container's monitor is not running")
