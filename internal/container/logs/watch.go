package logs

import (
	"bytes"
	"encoding/binary"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pollInterval is how often a follower looks at the files when inotify
// cannot tell it.
const pollInterval = 200 * time.Millisecond

// forcePoll makes watch skip inotify; tests set it to cover the fallback.
var forcePoll = false

// watcher tells a follower that one of the log files may have changed.
// Its c has room for one signal and sends are dropped when it is full:
// the follower reads everything there is on each wake-up, so a thousand
// writes need one wake-up, not a thousand.
type watcher struct {
	c    chan struct{}
	quit chan struct{}
	done chan struct{}
	in   *os.File // the inotify descriptor; nil when polling
}

// watch starts watching dir for changes to the files whose names start
// with prefix. The directory, not the files, is watched: a rotation
// renames the file being read and creates another, and only the
// directory sees both.
func watch(dir, prefix string) *watcher {
	w := &watcher{c: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if !forcePoll {
		w.in = inotify(dir)
	}
	go w.run(prefix)
	return w
}

// inotify returns a non-blocking inotify descriptor watching dir, or nil.
// Non-blocking matters: os.NewFile then registers it with the runtime's
// poller, so a Read parks the goroutine instead of a thread, and Close
// wakes it. A blocking read would outlive the follower.
func inotify(dir string) *os.File {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	const mask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
		unix.IN_DELETE | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "inotify:"+dir)
}

func (w *watcher) notify() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (w *watcher) run(prefix string) {
	defer close(w.done)
	if w.in != nil {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := w.in.Read(buf)
			if err != nil {
				break // closed by close, or broken: poll instead
			}
			relevant, gone := events(buf[:n], prefix)
			if relevant {
				w.notify()
			}
			if gone {
				break // the watch is gone with the directory
			}
		}
		// Whatever ended the events, the follower still needs waking,
		// and it may have missed a change meanwhile.
		w.notify()
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
			w.notify()
		}
	}
}

// events reports whether buf, a batch of inotify events, concerns a file
// starting with prefix (or may have, as an overflow does), and whether the
// watch has ended.
func events(buf []byte, prefix string) (relevant, gone bool) {
	for len(buf) >= unix.SizeofInotifyEvent {
		// struct inotify_event { int wd; u32 mask, cookie, len; char name[len]; }
		mask := binary.NativeEndian.Uint32(buf[4:])
		n := int(binary.NativeEndian.Uint32(buf[12:]))
		if unix.SizeofInotifyEvent+n > len(buf) {
			return true, gone
		}
		name := buf[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+n]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i] // the kernel pads names with NULs
		}
		if mask&(unix.IN_Q_OVERFLOW|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0 ||
			hasPrefix(name, prefix) {
			relevant = true
		}
		if mask&unix.IN_IGNORED != 0 {
			gone = true
		}
		buf = buf[unix.SizeofInotifyEvent+n:]
	}
	return relevant, gone
}

// close stops the watcher and waits until its goroutine has returned.
func (w *watcher) close() {
	close(w.quit)
	if w.in != nil {
		w.in.Close()
	}
	<-w.done
}
