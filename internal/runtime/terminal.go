package runtime

import (
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// terminal connects a foreground `run -t`/`exec -t` to the container's pty
// when no --console-socket was given: berth receives the master end itself
// and copies between it and its own stdio.
type terminal struct {
	local, remote *os.File // socketpair: we receive on local, init sends on remote
	master        *os.File
	saved         *unix.Termios
	copied        sync.WaitGroup
}

func newTerminal() (*terminal, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	return &terminal{local: os.NewFile(uintptr(pair[0]), "console-local"), remote: os.NewFile(uintptr(pair[1]), "console-remote")}, nil
}

// attach receives the master and starts copying; our stdin goes raw if it
// is a terminal, so keys reach the container unchanged.
func (t *terminal) attach() error {
	t.remote.Close()
	m, err := recvFd(t.local)
	if err != nil {
		return err
	}
	t.master = m
	if st, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		t.saved = st
		raw := *st
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		_ = unix.IoctlSetTermios(0, unix.TCSETS, &raw)
		t.resize()
	}
	go func() { _, _ = io.Copy(m, os.Stdin) }()
	t.copied.Add(1)
	go func() {
		defer t.copied.Done()
		_, _ = io.Copy(os.Stdout, m)
	}()
	return nil
}

func (t *terminal) resize() {
	if t.master == nil {
		return
	}
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// drain waits for the container's last output once its process is gone.
func (t *terminal) drain() {
	if t.master != nil {
		t.copied.Wait()
	}
}

func (t *terminal) close() {
	if t.saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, t.saved)
	}
	if t.master != nil {
		t.master.Close()
	}
	t.local.Close()
	t.remote.Close()
}
