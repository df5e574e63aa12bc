package dns

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/metadb"
	"github.com/berth-dev/berth/internal/network"
)

// reloadInterval is how often the server re-reads the records without
// being told: a berth that crashed between changing endpoints and
// Notify, or an older berth that does not notify, is caught up with soon.
const reloadInterval = 5 * time.Second

// DefaultLinger is how long `berth network-dns` stays once no container
// is left on a user network, while user networks exist: the next
// container on one (a `run --rm` loop, a compose restart) then finds it
// running instead of paying for a server's start and exit (~40 ms of a
// lone `run --rm` on this project's VM). With no user network left it
// exits at once.
const DefaultLinger = 60 * time.Second

// RunOptions configure Run.
type RunOptions struct {
	Root, RunRoot string
	// Ready is the pipe Ensure waits on: Run writes "ok" or "error: ..."
	// and closes it. When set, the caller holds the ensure lock until
	// then, so Run does not take it before.
	Ready *os.File
	// ResolvConf lists the host's resolvers; empty means HostResolvConf.
	ResolvConf string
	// Port is 53 but in tests.
	Port int
	// Interval is reloadInterval but in tests.
	Interval time.Duration
	// Linger is how long the server stays without endpoints while user
	// networks exist (DefaultLinger for berth); zero: it exits as soon
	// as no endpoint is left.
	Linger time.Duration
}

// Run is the `berth network-dns` process: it serves the names of the
// root's user networks until none has endpoints left (and either no user
// network is left or o.Linger has passed), or ctx ends, and then removes
// its files. See doc.go for the protocol with Ensure.
func Run(ctx context.Context, o RunOptions) error {
	if o.ResolvConf == "" {
		o.ResolvConf = HostResolvConf
	}
	if o.Port == 0 {
		o.Port = 53
	}
	if o.Interval <= 0 {
		o.Interval = reloadInterval
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	r := &runner{o: o, dir: stateDir(o.RunRoot), logf: logger.Printf}
	err := r.run(ctx)
	r.ready(err) // a no-op if run has reported already
	if err != nil {
		logger.Printf("exiting: %v", err)
	}
	return err
}

type runner struct {
	o    RunOptions
	dir  string
	logf func(string, ...any)
	srv  *Server
	// idleSince is when the records were first seen without endpoints,
	// zero while there are some.
	idleSince time.Time
}

// ready tells Ensure how the start went, once.
func (r *runner) ready(err error) {
	if r.o.Ready == nil {
		return
	}
	msg := "ok\n"
	if err != nil {
		msg = "error: " + err.Error() + "\n"
	}
	r.o.Ready.WriteString(msg)
	r.o.Ready.Close()
	r.o.Ready = nil
}

func (r *runner) run(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", r.dir, err)
	}
	lk, err := r.lockServer()
	if errors.Is(err, unix.EWOULDBLOCK) {
		r.logf("another dns server runs for %s: leaving it", r.o.RunRoot)
		r.ready(nil)
		return nil
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", filepath.Join(r.dir, serverLock), err)
	}
	defer lk.Close() // held for the whole life: released last, after the files are gone

	trigger := filepath.Join(r.dir, triggerF)
	if err := closeErr(os.OpenFile(trigger, os.O_WRONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)); err != nil {
		r.cleanup(r.o.Ready == nil)
		return fmt.Errorf("create %s: %w", trigger, err)
	}
	if err := writeFile(filepath.Join(r.dir, pidFile), strconv.Itoa(os.Getpid())+"\n"); err != nil {
		r.cleanup(r.o.Ready == nil)
		return fmt.Errorf("write the pid file: %w", err)
	}
	events, stopWatch := watch(trigger, r.logf)
	defer stopWatch()

	r.srv = newServer(r.o.Port, upstream{}, r.logf)
	defer r.srv.Close()
	r.logf("dns server %d for root %s started", os.Getpid(), r.o.Root)

	at, st, err := r.load()
	if err != nil {
		r.cleanup(r.o.Ready == nil)
		return err
	}
	if st.table.Empty() {
		// Started for nothing (the last container went meanwhile, or a
		// Notify restarts a dead server to clean up after it): no reason
		// to linger.
		if r.o.Ready != nil {
			r.cleanup(false) // Ensure holds the ensure lock for us
			r.ready(nil)
			return nil
		}
		if r.exitIfIdle(true) {
			return nil
		}
	} else {
		r.update(at, st, nil)
	}
	r.ready(nil) // bind failures are logged; the next reloads retry them

	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			r.logf("stopping: %v", context.Cause(ctx))
			r.srv.Close()
			r.cleanup(true)
			return nil
		case <-events:
		case <-tick.C:
		case <-linger.C:
		}
		at, st, err := r.load()
		if err != nil {
			if lastErr == nil || err.Error() != lastErr.Error() {
				r.logf("reload: %v", err) // keep serving what we had
			}
			lastErr = err
			continue
		}
		if !st.table.Empty() {
			r.idleSince = time.Time{}
			lastErr = r.update(at, st, lastErr)
			continue
		}
		if r.idleSince.IsZero() {
			r.idleSince = time.Now()
		}
		if r.mayExit(st) {
			if r.exitIfIdle(false) {
				return nil
			}
			continue // it served what it found instead
		}
		// Lingering: nothing to serve, but answer the Notify that told
		// us, and come back when the time is up.
		lastErr = r.update(at, st, lastErr)
		if left := r.o.Linger - time.Since(r.idleSince); left > 0 {
			linger.Reset(left)
		}
	}
}

// mayExit reports whether records without endpoints (st) let the server
// go now: no user network is left, or it has lingered long enough.
func (r *runner) mayExit(st *state) bool {
	return st.userNets == 0 || time.Since(r.idleSince) >= r.o.Linger
}

// lockServer takes server.lock, or fails with EWOULDBLOCK when another
// server holds it. It tries for a while first: a berth process that just
// looked at the lock (running) and forked meanwhile lends its child a
// shared lock on it until the child's exec, and Ensure, which holds the
// ensure lock, only starts us when no server runs.
func (r *runner) lockServer() (*os.File, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		lk, err := lockFile(r.dir, serverLock, unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return lk, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// update serves st and records that the trigger time at was loaded; it
// logs bind failures when they change, not every reload.
func (r *runner) update(at time.Time, st *state, lastErr error) error {
	err := r.srv.Update(st)
	if err != nil && (lastErr == nil || err.Error() != lastErr.Error()) {
		r.logf("%v", err)
	}
	loaded := filepath.Join(r.dir, loadedF)
	if closeErr(os.OpenFile(loaded, os.O_WRONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)) == nil {
		if fi, ferr := os.Stat(loaded); ferr == nil && fi.ModTime().Before(at) {
			os.Chtimes(loaded, at, at)
		}
	}
	return err
}

// exitIfIdle is the decision to leave, taken under the exclusive ensure
// lock: with it, no Ensure can be between committing an endpoint and
// finding us running. If the records still have no endpoint (and, unless
// now is set, still let the server go: mayExit), the server stops
// listening and removes its directory before releasing the locks, and
// reports true; if one appeared meanwhile, it serves it.
func (r *runner) exitIfIdle(now bool) bool {
	lk, err := lockFile(r.dir, ensureLock, unix.LOCK_EX)
	if err != nil {
		r.logf("lock to exit: %v", err)
		return false
	}
	defer lk.Close()
	at, st, err := r.load()
	if err != nil {
		r.logf("reload: %v", err)
		return false
	}
	if !st.table.Empty() {
		r.idleSince = time.Time{}
	}
	if !st.table.Empty() || (!now && !r.mayExit(st)) {
		r.update(at, st, nil) // serve it, and answer a Notify waiting
		return false
	}
	if st.userNets == 0 {
		r.logf("no user network left: exiting")
	} else {
		r.logf("no user network has containers: exiting")
	}
	r.srv.Close()
	r.cleanup(false)
	return true
}

// cleanup removes the server's directory, with lock saying whether to
// take the ensure lock for it first. The server lock is held throughout
// and released by the caller afterwards, so that whoever sees the server
// gone also sees its files gone.
func (r *runner) cleanup(lock bool) {
	if lock {
		if lk, err := lockFile(r.dir, ensureLock, unix.LOCK_EX); err == nil {
			defer lk.Close()
		}
	}
	if err := removeDir(r.dir); err != nil {
		r.logf("remove %s: %v", r.dir, err)
	}
}

// load reads the trigger's time, then the records and the host's
// resolvers: whatever Notify touched the trigger before is in them.
func (r *runner) load() (time.Time, *state, error) {
	var at time.Time
	if fi, err := os.Stat(filepath.Join(r.dir, triggerF)); err == nil {
		at = fi.ModTime()
	}
	st, err := loadState(r.o.Root, r.o.ResolvConf)
	return at, st, err
}

// loadState builds the state from the root's records and the host's
// resolv.conf. A root without a metadata database has no endpoints; it
// is not created (metadb would create it), so a server outliving its
// root does not bring it back.
func loadState(root, resolvConf string) (*state, error) {
	t := NewTable(nil, nil)
	userNets := 0
	_, err := os.Stat(root) // before metadb.Open, which makes the root
	if err == nil {
		var db *metadb.DB
		if db, err = metadb.Open(root); err == nil {
			_, err = os.Stat(db.Path())
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read the network records: %w", err)
	default:
		m, err := network.New(root)
		if err != nil {
			return nil, err
		}
		nets, err := m.List()
		if err != nil {
			return nil, fmt.Errorf("read the networks: %w", err)
		}
		eps, err := m.AllEndpoints()
		if err != nil {
			return nil, fmt.Errorf("read the endpoints: %w", err)
		}
		t = NewTable(nets, eps)
		for _, n := range nets {
			if !n.Predefined() && n.Driver == network.DriverBridge {
				userNets++
			}
		}
	}
	hc, err := readHostConf(resolvConf, func(a netip.Addr) bool { _, ours := t.byGateway[a]; return ours })
	if err != nil {
		return nil, err
	}
	return &state{table: t, userNets: userNets, search: hc.search, upstreams: hc.servers}, nil
}

// watch reports changes of the trigger's attributes (Notify's utimes)
// through inotify; without inotify (out of watches), it polls the mtime.
func watch(path string, logf func(string, ...any)) (<-chan struct{}, func()) {
	events := make(chan struct{}, 1)
	notify := func() {
		select {
		case events <- struct{}{}:
		default: // one pending reload covers every change before it
		}
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		if _, err = unix.InotifyAddWatch(fd, path, unix.IN_ATTRIB|unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		logf("inotify on %s: %v: polling instead", path, err)
		done := make(chan struct{})
		go func() {
			var last time.Time
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				if fi, err := os.Stat(path); err == nil && !fi.ModTime().Equal(last) {
					last = fi.ModTime()
					notify()
				}
			}
		}()
		return events, func() { close(done) }
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: Go's poller wakes the read
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return // closed by stop
			}
			notify()
		}
	}()
	return events, func() { f.Close() }
}

func closeErr(f *os.File, err error) error {
	if err != nil {
		return err
	}
	return f.Close()
}
