package seccomp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// A filter cannot be removed once loaded, so the kernel tests load it in a
// child: the test binary re-executes itself with childEnv naming a config
// ("none" for no filter), loads it on a locked thread the way the runtime
// will, makes the probe syscalls named in probesEnv on that thread and
// prints "probe errno" per line.
const (
	childEnv  = "BERTH_SECCOMP_TEST_CHILD"
	probesEnv = "BERTH_SECCOMP_TEST_PROBES"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(child(cfg, strings.Split(os.Getenv(probesEnv), ",")))
	}
	os.Exit(m.Run())
}

func child(cfgPath string, names []string) int {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "prctl(PR_SET_NO_NEW_PRIVS):", err)
		return 2
	}
	if cfgPath != "none" {
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		var cfg specs.LinuxSeccomp
		if err := json.Unmarshal(raw, &cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		f, err := Compile(&cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if err := f.Load(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
	}
	for _, name := range names {
		p, ok := probeCalls[name]
		if !ok {
			fmt.Fprintln(os.Stderr, "unknown probe", name)
			return 2
		}
		fmt.Printf("%s %d\n", name, p())
	}
	return 0
}

var nonexistent = []byte("/nonexistent-berth-seccomp-test/dir\x00")

func mkdirat(mode uint64) unix.Errno {
	dirfd := unix.AT_FDCWD
	_, _, e := unix.Syscall(unix.SYS_MKDIRAT, uintptr(dirfd), uintptr(unsafe.Pointer(&nonexistent[0])), uintptr(mode))
	return e
}

func socket(family int) unix.Errno {
	fd, _, e := unix.Syscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM, 0)
	if e == 0 {
		unix.Close(int(fd))
	}
	return e
}

func uname() unix.Errno {
	var u unix.Utsname
	_, _, e := unix.Syscall(unix.SYS_UNAME, uintptr(unsafe.Pointer(&u)), 0, 0)
	return e
}

// probeCalls are syscalls the Go runtime itself does not need, so a filter
// that denies them leaves the child able to report.
var probeCalls = map[string]func() unix.Errno{
	"getppid": func() unix.Errno {
		_, _, e := unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		return e
	},
	"uname": uname,
	// uname on another thread: only SECCOMP_FILTER_FLAG_TSYNC filters
	// threads that existed before Load.
	"uname-other-thread": func() unix.Errno {
		errc := make(chan unix.Errno)
		go func() {
			// Never unlocked: the thread exits with the goroutine, so the
			// probe gets a thread of its own.
			runtime.LockOSThread()
			errc <- uname()
		}()
		return <-errc
	},
	// The kernel only sees mode's low bits, but seccomp sees the whole
	// register: this is how the tests reach the high word of an argument.
	"mkdirat-0700":      func() unix.Errno { return mkdirat(0o700) },
	"mkdirat-0700-high": func() unix.Errno { return mkdirat(1<<32 | 0o700) },
	"clone3": func() unix.Errno {
		_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
		return e
	},
	"file_getattr": func() unix.Errno {
		_, _, e := unix.Syscall6(unix.SYS_FILE_GETATTR, ^uintptr(0), 0, 0, 0, 0, 0)
		return e
	},
	"socket-unix":  func() unix.Errno { return socket(unix.AF_UNIX) },
	"socket-vsock": func() unix.Errno { return socket(unix.AF_VSOCK) },
	"personality-query": func() unix.Errno {
		_, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
		return e
	},
	"personality-addr-no-randomize": func() unix.Errno {
		const addrNoRandomize = 0x0040000 // ADDR_NO_RANDOMIZE, <linux/personality.h>
		_, _, e := unix.Syscall(unix.SYS_PERSONALITY, addrNoRandomize, 0, 0)
		return e
	},
	"unshare-uts": func() unix.Errno {
		_, _, e := unix.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWUTS, 0, 0)
		return e
	},
	// An unknown flag bit makes kexec_load fail with EINVAL even for root,
	// so the probe never loads or unloads a kexec image.
	"kexec_load": func() unix.Errno {
		_, _, e := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 1<<15, 0, 0)
		return e
	},
}

// runChild runs the probes in a child under cfg (nil: no filter) and
// returns each probe's errno.
func runChild(t *testing.T, cfg *specs.LinuxSeccomp, probes ...string) (map[string]unix.Errno, error) {
	t.Helper()
	path := "none"
	if cfg != nil {
		raw, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(t.TempDir(), "seccomp.json")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path, probesEnv+"="+strings.Join(probes, ","))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("child: %w: %s", err, stderr.Bytes())
	}
	got := map[string]unix.Errno{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, errno, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.Atoi(errno)
		if !ok || err != nil {
			return nil, fmt.Errorf("child: unexpected output line %q", sc.Text())
		}
		got[name] = unix.Errno(n)
	}
	for _, p := range probes {
		if _, ok := got[p]; !ok {
			return nil, fmt.Errorf("child: no result for %s in %q", p, out)
		}
	}
	return got, nil
}

func wantErrnos(t *testing.T, got map[string]unix.Errno, want map[string]unix.Errno) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: errno %d (%v), want %d (%v)", p, got[p], got[p], w, w)
		}
	}
}

func TestLoad(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		errnoRule(uint(unix.EBADFD), "uname"),
		withArgs(errnoRule(uint(unix.EXDEV), "mkdirat"), arg(2, specs.OpEqualTo, 1<<32|0o700)),
	}}
	got, err := runChild(t, cfg, "getppid", "uname", "mkdirat-0700", "mkdirat-0700-high")
	if err != nil {
		t.Fatal(err)
	}
	wantErrnos(t, got, map[string]unix.Errno{
		"getppid":           0,
		"uname":             unix.EBADFD,
		"mkdirat-0700":      unix.ENOENT, // the high word differs: the call reaches the kernel
		"mkdirat-0700-high": unix.EXDEV,
	})
}

func TestLoadKill(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"uname"}, Action: specs.ActKillProcess},
	}}
	_, err := runChild(t, cfg, "getppid", "uname")
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("%v, want the child killed by SIGSYS", err)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("%v, want the child killed by SIGSYS", err)
	}
}

func TestLoadFlags(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv},
		Syscalls:      []specs.LinuxSyscall{errnoRule(uint(unix.EBADFD), "uname")},
	}
	got, err := runChild(t, cfg, "uname", "uname-other-thread")
	if err != nil {
		t.Fatal(err)
	}
	wantErrnos(t, got, map[string]unix.Errno{"uname": unix.EBADFD, "uname-other-thread": unix.EBADFD})
}

// TestLoadDockerDefault loads Docker's default profile and checks that a
// container's ordinary calls work and the ones it is denied fail. A run
// without the filter shows each denial comes from the filter; it needs root
// because unshare and kexec_load fail for anyone else regardless.
func TestLoadDockerDefault(t *testing.T) {
	testutil.RequiresRoot(t)
	path := "docker-default-" + runtime.GOARCH + ".json"
	if _, err := os.Stat(filepath.Join("testdata", path)); err != nil {
		t.Skipf("no Docker profile for %s in testdata", runtime.GOARCH)
	}
	probes := []string{"getppid", "uname", "socket-unix", "personality-query",
		"clone3", "file_getattr", "socket-vsock", "personality-addr-no-randomize", "unshare-uts", "kexec_load"}
	got, err := runChild(t, loadProfile(t, path), probes...)
	if err != nil {
		t.Fatal(err)
	}
	control, err := runChild(t, nil, probes...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("without the filter: %v", control)

	wantErrnos(t, got, map[string]unix.Errno{
		"getppid":                       0,
		"uname":                         0,
		"socket-unix":                   0,
		"personality-query":             0,
		"clone3":                        unix.ENOSYS, // so libc falls back to clone
		"socket-vsock":                  unix.EPERM,
		"personality-addr-no-randomize": unix.EPERM,
		"unshare-uts":                   unix.EPERM,
		"kexec_load":                    unix.EPERM,
		// Newer than the profile: ENOSYS from the stub, not EPERM.
		"file_getattr": unix.ENOSYS,
	})
	for p, want := range map[string]unix.Errno{
		"clone3": unix.ENOSYS, "file_getattr": unix.ENOSYS, "socket-vsock": unix.EPERM,
		"personality-addr-no-randomize": unix.EPERM, "unshare-uts": unix.EPERM, "kexec_load": unix.EPERM,
	} {
		if control[p] == want {
			t.Logf("%s fails with %v without the filter too (an old kernel, or the sandbox the tests run in): the check proves little here", p, want)
		}
	}
}

func TestLoadEmptyFilter(t *testing.T) {
	if err := new(Filter).Load(); err == nil {
		t.Fatal("Load of a zero Filter succeeded")
	}
}
