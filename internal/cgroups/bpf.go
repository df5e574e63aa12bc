package cgroups

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
)

// The union bpf_attr layouts of the commands used. Pointers are
// unsafe.Pointer, not integers, so the garbage collector keeps what they
// point to alive and in place. Each is padded past any kernel's union size
// because some commands write results back beyond the fields the caller set
// (BPF_PROG_QUERY's revision); the kernel only wants the tail to be zero.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              unsafe.Pointer
	license            unsafe.Pointer
	logLevel           uint32
	logSize            uint32
	logBuf             unsafe.Pointer
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
	_                  [184]byte
}

type progQueryAttr struct {
	targetFd    uint32
	attachType  uint32
	queryFlags  uint32
	attachFlags uint32
	progIDs     unsafe.Pointer
	progCnt     uint32
	_           [228]byte
}

type progAttachAttr struct {
	targetFd     uint32
	attachBpfFd  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBpfFd uint32
	_            [236]byte
}

type getFdByIDAttr struct {
	id        uint32
	nextID    uint32
	openFlags uint32
	_         [244]byte
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// loadDeviceProgram loads prog and returns its fd. On a verifier refusal it
// loads again with the log on, so the error says which instruction failed.
func loadDeviceProgram(prog []insn) (int, error) {
	code := encode(prog)
	license := []byte("Apache-2.0\x00")
	load := func(logBuf []byte) (int, error) {
		a := progLoadAttr{
			progType:           unix.BPF_PROG_TYPE_CGROUP_DEVICE,
			insnCnt:            uint32(len(prog)),
			insns:              unsafe.Pointer(&code[0]),
			license:            unsafe.Pointer(&license[0]),
			expectedAttachType: unix.BPF_CGROUP_DEVICE,
		}
		copy(a.progName[:], "berth_devices")
		if logBuf != nil {
			a.logLevel = 1
			a.logSize = uint32(len(logBuf))
			a.logBuf = unsafe.Pointer(&logBuf[0])
		}
		fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&a), unsafe.Sizeof(a))
		runtime.KeepAlive(&a)
		return int(fd), err
	}
	fd, err := load(nil)
	if err == nil {
		return fd, nil
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL) {
		logBuf := make([]byte, 64<<10)
		if _, err2 := load(logBuf); err2 != nil {
			if n := indexZero(logBuf); n > 0 {
				return -1, fmt.Errorf("load cgroup device program: %w: verifier: %s", os.NewSyscallError("bpf", err), logBuf[:n])
			}
		}
	}
	return -1, fmt.Errorf("load cgroup device program: %w", os.NewSyscallError("bpf", err))
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// attachedDevicePrograms lists the ids of device programs attached
// directly to the cgroup open as dirfd.
func attachedDevicePrograms(dirfd int) ([]uint32, error) {
	ids := make([]uint32, 64)
	a := progQueryAttr{
		targetFd:   uint32(dirfd),
		attachType: unix.BPF_CGROUP_DEVICE,
		progIDs:    unsafe.Pointer(&ids[0]),
		progCnt:    uint32(len(ids)),
	}
	_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(&a)
	if err != nil {
		return nil, os.NewSyscallError("bpf(BPF_PROG_QUERY)", err)
	}
	return ids[:min(a.progCnt, uint32(len(ids)))], nil
}

// setDevicePrograms makes prog the cgroup's only device filter. The new
// program is attached before the old ones go, so there is no moment
// without a filter (BPF_F_ALLOW_MULTI runs all, and each can deny).
func setDevicePrograms(dir string, prog []insn) error {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return fmt.Errorf("cgroup v2 device rules need a 64-bit host: %w", errdefs.ErrNotImplemented)
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	old, err := attachedDevicePrograms(dirfd)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	fd, err := loadDeviceProgram(prog)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	a := progAttachAttr{targetFd: uint32(dirfd), attachBpfFd: uint32(fd), attachType: unix.BPF_CGROUP_DEVICE, attachFlags: unix.BPF_F_ALLOW_MULTI}
	if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&a), unsafe.Sizeof(a)); err != nil {
		return fmt.Errorf("attach device program to %s: %w", dir, os.NewSyscallError("bpf", err))
	}
	for _, id := range old {
		g := getFdByIDAttr{id: id}
		ofd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&g), unsafe.Sizeof(g))
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("detach old device program %d from %s: %w", id, dir, os.NewSyscallError("bpf", err))
		}
		d := progAttachAttr{targetFd: uint32(dirfd), attachBpfFd: uint32(ofd), attachType: unix.BPF_CGROUP_DEVICE}
		_, err = bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&d), unsafe.Sizeof(d))
		unix.Close(int(ofd))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detach old device program %d from %s: %w", id, dir, os.NewSyscallError("bpf", err))
		}
	}
	return nil
}
