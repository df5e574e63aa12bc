package runtime

import (
	"fmt"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair in the current mount namespace's
// /dev/ptmx, so the container gets a terminal of its own devpts instance.
func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if err := ioctlPtr(m.Fd(), unix.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		m.Close()
		return nil, nil, os.NewSyscallError("ioctl(TIOCSPTLCK)", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, os.NewSyscallError("ioctl(TIOCGPTN)", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}

func ioctlPtr(fd uintptr, req uint, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

// sendFd passes f over the unix socket sock with SCM_RIGHTS; the message
// text is the terminal's name, as runc's console socket protocol sends it.
func sendFd(sock *os.File, name string, f *os.File) error {
	rights := unix.UnixRights(int(f.Fd()))
	return unix.Sendmsg(int(sock.Fd()), []byte(name), rights, nil, 0)
}

// recvFd reads one file descriptor sent with sendFd.
func recvFd(sock *os.File) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: expected one control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: expected one file descriptor")
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

// setupConsole creates the container's terminal, sends its master end to
// the console socket and makes the slave end the process's stdio and
// controlling terminal. size is process.consoleSize: set before the
// process runs, so its first look at the terminal sees the real size.
func setupConsole(sock *os.File, uid int, size *specs.Box) error {
	master, slave, err := openPty()
	if err != nil {
		return fmt.Errorf("create terminal: %w", err)
	}
	defer master.Close()
	defer slave.Close()
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("process.consoleSize: %w", os.NewSyscallError("ioctl(TIOCSWINSZ)", err))
		}
	}
	if uid > 0 {
		_ = unix.Fchown(int(slave.Fd()), uid, -1)
	}
	if err := sendFd(sock, master.Name(), master); err != nil {
		return fmt.Errorf("send terminal to console socket: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return os.NewSyscallError("dup3", err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return os.NewSyscallError("ioctl(TIOCSCTTY)", err)
	}
	return nil
}
