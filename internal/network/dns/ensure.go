package dns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/fsutil"
)

// The server's files, under <run-root>/dns/ (see doc.go for who holds
// what).
const (
	dirName    = "dns"
	ensureLock = "ensure.lock" // serializes starting and stopping the server
	serverLock = "server.lock" // held exclusively by the running server, for its whole life
	pidFile    = "pid"
	rootFile   = "root"    // the engine root, for a Notify that finds the server dead
	triggerF   = "trigger" // Notify touches it; the server reloads
	loadedF    = "loaded"  // the server sets its mtime to the trigger's it last loaded after
	logFile    = "server.log"
)

// How long the CLI waits for the server: to start (bind and load), and
// to load after a Notify. Both are milliseconds when all is well; the
// bounds only keep a wedged server from hanging `berth run` and `rm`.
var (
	readyTimeout  = 10 * time.Second
	reloadTimeout = 3 * time.Second
)

func stateDir(runRoot string) string { return filepath.Join(runRoot, dirName) }

// Ensure makes sure the DNS server for this berth root is running: if
// one is, it asks it to reload (so an endpoint just allocated resolves as
// soon as Ensure returns) and waits for that; if none is, it starts one
// and waits until it serves. Call it after allocating a user network
// endpoint. It is cheap when the server runs: two flocks, a utimes and a
// few stats.
//
// The server is this same binary (/proc/self/exe) running the hidden
// `network-dns` command, detached in its own session; see EnsureExe.
func Ensure(root, runRoot string) error { return EnsureExe("/proc/self/exe", root, runRoot) }

// EnsureExe is Ensure with the berth binary to start the server from, for
// callers that are not berth themselves (tests, tools).
func EnsureExe(exe, root, runRoot string) error { return ensure(exe, root, runRoot, 3) }

// ensure is EnsureExe with a bound on how often a server that dies under
// our eyes is replaced.
func ensure(exe, root, runRoot string, tries int) error {
	var err error
	if root, err = filepath.Abs(root); err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	if runRoot, err = filepath.Abs(runRoot); err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	dir := stateDir(runRoot)
	if ok, err := reloadRunning(dir); ok || err != nil {
		return err
	}
	var lk *os.File
	for {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("start the dns server: %w", err)
		}
		lk, err = lockFile(dir, ensureLock, unix.LOCK_EX)
		if !errors.Is(err, os.ErrNotExist) {
			break // a server leaving removed the directory under us: make it again
		}
	}
	if err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	if running(dir) { // another Ensure started it while we waited for the lock
		at := touch(dir)
		lk.Close()
		if err := waitReload(dir, at); !errors.Is(err, errGone) || tries <= 1 {
			return err
		}
		return ensure(exe, root, runRoot, tries-1) // it died meanwhile: start another
	}
	defer lk.Close()
	if err := writeFile(filepath.Join(dir, rootFile), root+"\n"); err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	return start(exe, root, runRoot, dir)
}

// Notify tells the running server that endpoints changed and waits until
// it has reloaded (or, when none are left, has exited and removed its
// files): after Notify, answers and listen addresses match the records.
// Without a server it does nothing, unless one died and left its files:
// then it starts one over the root it served, which cleans up and exits
// if nothing needs it.
func Notify(runRoot string) error {
	runRoot, err := filepath.Abs(runRoot)
	if err != nil {
		return fmt.Errorf("notify the dns server: %w", err)
	}
	dir := stateDir(runRoot)
	if ok, err := reloadRunning(dir); ok || err != nil {
		return err
	}
	root, err := os.ReadFile(filepath.Join(dir, rootFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return removeStale(dir)
		}
		return fmt.Errorf("notify the dns server: %w", err)
	}
	return Ensure(strings.TrimSpace(string(root)), runRoot)
}

// reloadRunning asks a running server to reload and waits for it. It
// reports false when no server runs. The shared ensure lock keeps the
// server from deciding to exit while we look: it takes the lock
// exclusively for that, so it either exits before we look (we see no
// server) or re-reads the records after we let go (and sees the endpoint
// our caller committed before calling).
func reloadRunning(dir string) (bool, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	lk, err := lockFile(dir, ensureLock, unix.LOCK_SH)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // the server exited and removed its directory just now
	}
	if err != nil {
		return false, fmt.Errorf("reach the dns server: %w", err)
	}
	if !running(dir) {
		lk.Close()
		return false, nil
	}
	at := touch(dir)
	lk.Close() // before waiting: an exiting server needs the lock exclusively
	err = waitReload(dir, at)
	if errors.Is(err, errGone) {
		return false, nil
	}
	return true, err
}

// running reports whether a server holds its lock in dir.
func running(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, serverLock), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(fsutil.Flock(f, unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// touch sets the trigger's mtime to now, which the server watches, and
// returns the time as stored: the file system may round it, and the
// server acknowledges what it reads back.
func touch(dir string) time.Time {
	now := time.Now()
	path := filepath.Join(dir, triggerF)
	os.Chtimes(path, now, now)
	if fi, err := os.Stat(path); err == nil {
		return fi.ModTime()
	}
	return now
}

// errGone is waitReload's word for a server that died without reloading
// (killed, crashed), leaving its files: the caller starts another.
var errGone = errors.New("the dns server died")

// waitReload waits until the server has loaded the records after the
// trigger time at, or has exited cleanly (its directory removed).
func waitReload(dir string, at time.Time) error {
	deadline := time.Now().Add(reloadTimeout)
	for delay := 200 * time.Microsecond; ; delay = min(delay*2, 20*time.Millisecond) {
		st, err := os.Stat(filepath.Join(dir, loadedF))
		if err != nil || !st.ModTime().Before(at) {
			return nil
		}
		if !running(dir) {
			return errGone
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the dns server did not reload its records within %s (see %s): %w",
				reloadTimeout, filepath.Join(dir, logFile), errdefs.ErrUnavailable)
		}
		time.Sleep(delay)
	}
}

// removeStale removes the directory a dead server left, under the ensure
// lock so that no Ensure is using it meanwhile.
func removeStale(dir string) error {
	lk, err := lockFile(dir, ensureLock, unix.LOCK_EX)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean up the dns server's files: %w", err)
	}
	defer lk.Close()
	if running(dir) {
		return nil
	}
	if err := removeDir(dir); err != nil {
		return fmt.Errorf("clean up the dns server's files: %w", err)
	}
	return nil
}

// removeDir removes the server's directory: first renamed aside, so that
// from that instant every path into it fails and nobody opens (and
// creates) a lock file in a directory on its way out; lockFile's check
// that the path still names the file it locked then holds. The caller
// holds the ensure lock exclusively.
func removeDir(dir string) error {
	gone := fmt.Sprintf("%s.gone-%d", dir, os.Getpid())
	if err := os.Rename(dir, gone); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var err error
	for range 5 { // a create that resolved the old path just before the rename may still land
		if err = os.RemoveAll(gone); err == nil {
			return nil
		}
	}
	return err
}

// start starts the server, detached, and waits until it serves, has
// exited because nothing needs it, or has failed. The caller holds the
// ensure lock, which the server therefore does not take while starting.
func start(exe, root, runRoot, dir string) error {
	logPath := filepath.Join(dir, logFile)
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	defer log.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, "network-dns", "--root", root, "--run-root", runRoot, "--ready-fd", "3")
	cmd.Args[0] = "berth"
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = log, log
	cmd.ExtraFiles = []*os.File{w}
	// Its own session and process group: no terminal's signals reach it
	// and it outlives the CLI that started it, as a container's monitor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start the dns server: %w", err)
	}
	// Reap it whenever it exits, so that a long-lived caller (the API
	// server, a test) keeps no zombie; a CLI exits long before.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	r.SetReadDeadline(time.Now().Add(readyTimeout))
	line, err := io.ReadAll(io.LimitReader(r, 4096))
	msg := strings.TrimSpace(string(line))
	switch {
	case msg == "ok":
		return nil
	case strings.HasPrefix(msg, "error: "):
		return fmt.Errorf("dns server: %s: %w", strings.TrimPrefix(msg, "error: "), errdefs.ErrUnavailable)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the dns server did not start within %s (see %s): %w", readyTimeout, logPath, errdefs.ErrUnavailable)
	}
	select {
	case err = <-exited:
	case <-time.After(time.Second):
	}
	return fmt.Errorf("the dns server exited while starting (%v; see %s): %w", err, logPath, errdefs.ErrUnavailable)
}

// lockFile opens dir/name, creating it, and flocks it with how. A lock
// file may be removed by the server leaving (under the exclusive ensure
// lock): whoever was waiting for it then holds a lock on a file nobody
// else can find, so after locking we check that the path still names
// the file we hold, and start over when not. It fails with
// os.ErrNotExist when dir itself is gone.
func lockFile(dir, name string, how int) (*os.File, error) {
	path := filepath.Join(dir, name)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		if err := fsutil.Flock(f, how); err != nil {
			f.Close()
			return nil, err
		}
		var held, named unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &named) == nil &&
			held.Ino == named.Ino && held.Dev == named.Dev {
			return f, nil
		}
		f.Close()
		if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
	}
}

// writeFile writes a small state file atomically (temp + fsync + rename).
func writeFile(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
