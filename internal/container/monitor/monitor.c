// berth's per-container monitor. See doc.go for why it is C and what it
// owns. It never returns into Go: the constructor runs it and _exits.
//
// argv: berth monitor ID ROOT RUNROOT LOGPATH MAXSIZE MAXFILE FLAGS
//   LOGPATH "-" means no log file (--log-driver none); MAXSIZE 0 = unbounded.
//   FLAGS: 't' tty, 'i' keep stdin open, 'o' close stdin when the first
//   attached client's stdin ends (docker's StdinOnce).
// fd 3: a connected stream socket, the first client (the CLI that spawned us).
//
// Frames, both ways: [type:1][length:4 big-endian][payload].
//   monitor -> client: 1 stdout, 2 stderr, 'S' started (pid), 'E' start
//     failed ("<code> <message>"), 'X' exited (decimal exit code).
//   client -> monitor: 0 stdin bytes, 'c' stdin closed, 'r' resize
//     (rows, cols as 2+2 bytes), 'h' hello (payload flags: 'o' wants
//     output, 'w' waits for the exit only).
// Hooks (the Go half of berth, run as short-lived children):
//   berth --root R --run-root RR monitor-hook start ID [CONSOLESOCK]
//     fds 3 status socket ("P<pid>\n" or "E<code> <msg>\n", after an "H" byte
//     per batch of published-port sockets it hands over: SCM_RIGHTS),
//     4-6 container stdio
//   berth --root R --run-root RR monitor-hook exit ID CODE
//     prints "R<delay ms>\n" when the restart policy says start again.
//
// Nothing the monitor does may wait on a client or a disk for long: it is
// the one process draining the container's output, so a wait here stops
// the container. Hence:
// - Output goes to clients without blocking; what a client's socket does
//   not take is queued (a bounded queue per client). While an output
//   client is behind, the container's output waits for it, which slows
//   the container down as docker attach does; a client behind for
//   STALL_MS (FIRST_STALL_MS for the spawner's connection, whose stdout
//   is the user's) is disconnected and the log goes on.
// - Stdin is written without blocking; while the container's stdin is
//   full, the monitor stops reading that client's frames instead of
//   stopping everything (a container that writes before it reads would
//   otherwise deadlock against it).
// - A failed log write (a full disk) drops those entries and cuts a
//   partly written one off, so the file stays whole lines; the container
//   is not held up. Docker's json-file drops them too. A slow disk does
//   hold it up: the write waits.
// Memory is bounded: ~240 KiB of static buffers, and per client 32 KiB
// for its frames and, once its socket has filled, an 80 KiB queue.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define LINE_MAX_BYTES 16384 // docker splits longer lines into partial entries
#define READ_BYTES 65536
#define OUT_BYTES (8 * LINE_MAX_BYTES + 4096)
// An entry is at most its line escaped (6 bytes a byte at worst: \u00XX)
// and 69 bytes of JSON around it.
#define ENTRY_MAX (6 * LINE_MAX_BYTES + 128)
#define FRAME_MAX 32768
// A client with more than QUEUE_BEHIND bytes queued is behind: the
// container's output waits for it. The queue holds that, one more output
// frame read before it fell behind, and the lifecycle frames after it.
#define QUEUE_BEHIND 8192
#define QUEUE_BYTES (QUEUE_BEHIND + 5 + READ_BYTES + 8192)
#define STALL_MS 2000
#define FIRST_STALL_MS 10000
#define DRAIN_MS 2000 // output after the container's exit, from what escaped it

_Static_assert(OUT_BYTES >= ENTRY_MAX, "an entry must fit the output buffer");
_Static_assert(sizeof("125 ") + 4096 + 5 <= QUEUE_BYTES - QUEUE_BEHIND - 5 - READ_BYTES, "lifecycle frames must fit");

enum { S_STDOUT = 0, S_STDERR = 1 };

struct client {
	int fd;
	int output;     // wants stdout/stderr frames
	int first;      // the spawner's connection (fd 3): `run` or `start -a`
	int stdin_wait; // its next frame waits for the container's stdin to drain
	size_t inlen;
	size_t stdin_done;    // bytes of the frame at in[0] already on stdin
	unsigned char *in;    // FRAME_MAX + 5, allocated on connect
	unsigned char *q;     // QUEUE_BYTES, allocated when its socket first fills
	size_t qoff, qlen;    // what its socket has not taken yet
	long long behind;     // since when it is behind (ms); 0: it is not
};

static const char *id, *root, *runroot, *logpath;
static long long maxsize;
static int maxfile;
static int tty, keepstdin, stdinonce;
static char rundir[4096], sockpath[4200], consolepath[4200];

static int logfd = -1;
static long long logsize;
static char outbuf[OUT_BYTES];
static size_t outlen;
static char linebuf[2][LINE_MAX_BYTES];
static size_t linelen[2];
static unsigned char readbuf[READ_BYTES];

static struct client clients[MAX_CLIENTS];
static int listenfd = -1, sigfd = -1;
static int stdin_w = -1;   // our end of the container's stdin
static int out_r[2] = {-1, -1}; // our ends of stdout/stderr (tty: out_r[0] is the master)
static pid_t ctr_pid;
static int ctr_status = -1;
static char start_err[4096]; // "<code> <message>" when the start hook failed
static size_t start_errlen;
static long long accept_pause; // until when (ms) accepting waits, out of descriptors
// The sockets holding the container's published host ports, handed over
// by the start hook and kept until the container exits (close_held), so
// no host process binds those ports meanwhile. The Go side caps them at
// its maxHeldPorts (512); more are closed as they come.
#define MAX_HELD 512
static int held[MAX_HELD];
static int nheld;

static void warnf(const char *fmt, ...) {
	// stderr is /dev/null unless the spawner kept it for debugging.
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "berth-monitor %s: ", id ? id : "?");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int ms_until(long long deadline, long long now) {
	if (deadline <= now)
		return 0;
	return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

static int write_all(int fd, const void *buf, size_t n) {
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) // 0 would come again: an error all the same
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

// ---- clients ----

static void client_close(struct client *c) {
	if (c->fd < 0)
		return;
	close(c->fd);
	free(c->in);
	free(c->q);
	*c = (struct client){.fd = -1};
}

static int client_limit(const struct client *c) { return c->first ? FIRST_STALL_MS : STALL_MS; }

// client_track notes when an output client falls behind and when it has
// caught up.
static void client_track(struct client *c) {
	if (c->fd < 0)
		return;
	if (!c->output || c->qlen <= QUEUE_BEHIND)
		c->behind = 0;
	else if (c->behind == 0)
		c->behind = now_ms();
}

// client_flush gives the client's socket what it takes of the queue.
static void client_flush(struct client *c) {
	while (c->fd >= 0 && c->qlen > 0) {
		ssize_t w = send(c->fd, c->q + c->qoff, c->qlen, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			client_close(c);
			return;
		}
		c->qoff += (size_t)w;
		c->qlen -= (size_t)w;
	}
	if (c->qlen == 0)
		c->qoff = 0;
	client_track(c);
}

// client_send sends one frame without blocking: what the socket does not
// take is queued behind what is already queued, and sent as the client
// reads. A client whose queue cannot hold the frame is disconnected; the
// gate in serve_once keeps output frames from getting there.
static void client_send(struct client *c, int type, const void *data, size_t n) {
	if (c->fd < 0)
		return;
	unsigned char hdr[5] = {(unsigned char)type, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
	                        (unsigned char)(n >> 8), (unsigned char)n};
	size_t sent = 0, total = 5 + n;
	if (c->qlen == 0) {
		struct iovec iov[2] = {{hdr, 5}, {(void *)data, n}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n > 0 ? 2 : 1};
		ssize_t w;
		while ((w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0 && errno == EINTR)
			;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			client_close(c);
			return;
		}
		sent = w > 0 ? (size_t)w : 0;
		if (sent == total)
			return;
	}
	size_t left = total - sent;
	if (c->q == NULL && (c->q = malloc(QUEUE_BYTES)) == NULL) {
		client_close(c);
		return;
	}
	if (c->qoff + c->qlen + left > QUEUE_BYTES) {
		memmove(c->q, c->q + c->qoff, c->qlen);
		c->qoff = 0;
	}
	if (c->qlen + left > QUEUE_BYTES) {
		warnf("attach client too far behind: disconnected");
		client_close(c);
		return;
	}
	unsigned char *d = c->q + c->qoff + c->qlen;
	if (sent < 5) {
		memcpy(d, hdr + sent, 5 - sent);
		if (n > 0)
			memcpy(d + 5 - sent, data, n);
	} else {
		memcpy(d, (const char *)data + (sent - 5), left);
	}
	c->qlen += left;
	client_track(c);
}

static void broadcast(int type, const void *data, size_t n, int output_only) {
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0 && (!output_only || clients[i].output))
			client_send(&clients[i], type, data, n);
}

static struct client *client_add(int fd, int output, int first) {
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (clients[i].fd < 0) {
			clients[i] = (struct client){.fd = fd, .output = output, .first = first};
			clients[i].in = malloc(FRAME_MAX + 5);
			if (clients[i].in == NULL) {
				client_close(&clients[i]);
				return NULL;
			}
			return &clients[i];
		}
	}
	close(fd); // full: refuse
	return NULL;
}

// clients_behind reports whether an output client is behind: until it
// catches up, the container's output waits in its pipe.
static int clients_behind(void) {
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0 && clients[i].behind)
			return 1;
	return 0;
}

// clients_gate disconnects the clients behind for longer than their
// limit, and lowers *timeout to when the next one would be.
static void clients_gate(long long now, int *timeout) {
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &clients[i];
		if (c->fd < 0 || !c->behind)
			continue;
		long long end = c->behind + client_limit(c);
		if (end <= now) {
			warnf("attach client behind for %d ms: disconnected", client_limit(c));
			client_close(c);
			continue;
		}
		int ms = ms_until(end, now);
		if (*timeout < 0 || ms < *timeout)
			*timeout = ms;
	}
}

// stdin_release lets the clients waiting on a full stdin go on: it has
// room, or it is closed and their stdin frames are dropped.
static void stdin_release(void) {
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].stdin_wait = 0;
}

static void stdin_close(void) {
	if (stdin_w >= 0)
		close(stdin_w);
	stdin_w = -1;
	stdin_release();
}

static void close_stdin(void) {
	if (!tty) // a terminal's input ends with ^D (client_frame), not a close
		stdin_close();
}

// stdin_write puts a frame's bytes on the container's stdin without
// blocking. It returns 0 when the pipe is full: the frame stays and the
// client's frames wait for room.
static int stdin_write(struct client *c, const unsigned char *p, size_t n) {
	while (stdin_w >= 0 && c->stdin_done < n) {
		ssize_t w = write(stdin_w, p + c->stdin_done, n - c->stdin_done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w < 0) {
			if (errno == EPIPE) // nobody reads it any more
				close_stdin();
			break;
		}
		c->stdin_done += (size_t)w;
	}
	c->stdin_done = 0;
	return 1;
}

// client_frame acts on one frame; it returns 0 when the frame must wait
// for room on the container's stdin.
static int client_frame(struct client *c, int type, unsigned char *p, size_t n) {
	switch (type) {
	case 0:
		return stdin_write(c, p, n);
	case 'c':
		if (stdinonce)
			close_stdin();
		else if (tty)
			return stdin_write(c, (const unsigned char *)"\x04", 1); // EOF at the terminal
		break;
	case 'r':
		if (tty && n >= 4 && out_r[0] >= 0) {
			struct winsize ws = {.ws_row = (unsigned short)(p[0] << 8 | p[1]),
			                     .ws_col = (unsigned short)(p[2] << 8 | p[3])};
			ioctl(out_r[0], TIOCSWINSZ, &ws);
		}
		break;
	case 'h':
		c->output = memchr(p, 'o', n) != NULL;
		client_track(c);
		break;
	}
	return 1;
}

// client_process acts on the whole frames the client has sent, in order,
// up to one that waits for stdin.
static void client_process(struct client *c) {
	size_t off = 0;
	while (c->fd >= 0 && !c->stdin_wait && c->inlen - off >= 5) {
		unsigned char *h = c->in + off;
		size_t n = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
		if (n > FRAME_MAX) { // not our client, or a broken one
			client_close(c);
			return;
		}
		if (c->inlen - off - 5 < n)
			break;
		if (!client_frame(c, h[0], h + 5, n)) {
			c->stdin_wait = 1;
			break;
		}
		off += 5 + n;
	}
	if (c->fd < 0 || off == 0)
		return;
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

// client_read reads more frames. Their buffer has room unless they wait
// for stdin (with a whole frame in it), and then they are not read.
static void client_read(struct client *c) {
	if (c->stdin_wait || c->inlen == FRAME_MAX + 5)
		return;
	ssize_t r = recv(c->fd, c->in + c->inlen, FRAME_MAX + 5 - c->inlen, MSG_DONTWAIT);
	if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (r <= 0) {
		client_close(c);
		return;
	}
	c->inlen += (size_t)r;
	client_process(c);
}

static void accept_clients(long long now) {
	for (int i = 0; i < MAX_CLIENTS; i++) {
		int fd = accept4(listenfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			// Out of descriptors the connection stays queued and the
			// socket readable: pause rather than spin on it.
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accept_pause = now + 100;
			return;
		}
		client_add(fd, 0, 0);
	}
}

// clients_finish gives every client what is queued for it (the last
// frame), each within its limit, and closes the connections.
static void clients_finish(void) {
	long long start = now_ms();
	for (;;) {
		struct pollfd pfd[MAX_CLIENTS];
		int idx[MAX_CLIENTS], n = 0, timeout = -1;
		long long now = now_ms();
		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = &clients[i];
			if (c->fd < 0 || c->qlen == 0)
				continue;
			long long end = start + client_limit(c);
			if (end <= now) {
				client_close(c);
				continue;
			}
			int ms = ms_until(end, now);
			if (timeout < 0 || ms < timeout)
				timeout = ms;
			idx[n] = i;
			pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
		}
		if (n == 0)
			break;
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
			break;
		for (int k = 0; k < n; k++)
			if (pfd[k].revents)
				client_flush(&clients[idx[k]]);
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		client_close(&clients[i]);
}

// ---- json-file log ----

static int log_failing; // the last write failed: warned once, until one succeeds
static long long log_retry; // when (ms) to try opening the log again

static int log_open(void) {
	logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (logfd < 0) {
		warnf("open %s: %s", logpath, strerror(errno));
		log_retry = now_ms() + 1000;
		return -1;
	}
	struct stat st;
	logsize = fstat(logfd, &st) == 0 ? st.st_size : 0;
	return 0;
}

// log_ready reports whether entries can be written, reopening a log that
// failed to open (after a rotation, say) once a second.
static int log_ready(void) {
	if (logfd >= 0)
		return 1;
	if (logpath == NULL || now_ms() < log_retry)
		return 0;
	return log_open() == 0;
}

// log_flush writes the first upto bytes of the output buffer. A failed
// write (a full disk) drops them, and a partly written entry is cut off
// so what follows starts a line of its own.
static void log_flush(size_t upto) {
	if (upto == 0)
		return;
	if (logfd >= 0) {
		if (write_all(logfd, outbuf, upto) == 0) {
			logsize += (long long)upto;
			log_failing = 0;
		} else {
			if (!log_failing)
				warnf("write %s: %s; dropping log entries until it works", logpath, strerror(errno));
			log_failing = 1;
			struct stat st;
			if (ftruncate(logfd, logsize) < 0 && fstat(logfd, &st) == 0)
				logsize = st.st_size;
		}
	}
	memmove(outbuf, outbuf + upto, outlen - upto);
	outlen -= upto;
}

// log_rotate shifts ID-json.log.N-1 to .N ... and the current file to .1,
// as docker's json-file does; with max-file 1 the file starts over.
static void log_rotate(void) {
	if (logfd >= 0)
		close(logfd);
	logfd = -1;
	char from[4300], to[4300];
	if (maxfile <= 1) {
		if (truncate(logpath, 0) < 0)
			warnf("truncate %s: %s", logpath, strerror(errno));
	} else {
		for (int i = maxfile - 1; i >= 1; i--) {
			if (i == 1)
				snprintf(from, sizeof(from), "%s", logpath);
			else
				snprintf(from, sizeof(from), "%s.%d", logpath, i - 1);
			snprintf(to, sizeof(to), "%s.%d", logpath, i);
			if (rename(from, to) < 0 && errno != ENOENT)
				warnf("rotate %s: %s", from, strerror(errno));
		}
	}
	log_open();
}

static const char hexdigits[] = "0123456789abcdef";

// plain marks the bytes a JSON string takes as they are; runs of them are
// copied at once (most log bytes), the rest escaped one by one.
static unsigned char plain[256];
static void plain_init(void) {
	for (int c = 0x20; c < 256; c++)
		plain[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&';
}
static size_t json_escape(char *dst, const char *src, size_t n) {
	char *d = dst;
	if (!plain['a'])
		plain_init();
	for (size_t i = 0; i < n; i++) {
		size_t j = i;
		while (j < n && plain[(unsigned char)src[j]])
			j++;
		if (j > i) {
			memcpy(d, src + i, j - i);
			d += j - i;
			i = j;
			if (i == n)
				break;
		}
		unsigned char ch = (unsigned char)src[i];
		*d++ = '\\';
		switch (ch) {
		case '"': *d++ = '"'; break;
		case '\\': *d++ = '\\'; break;
		case '\n': *d++ = 'n'; break;
		case '\r': *d++ = 'r'; break;
		case '\t': *d++ = 't'; break;
		default: // control characters, and <>& as Go's encoder writes them
			*d++ = 'u';
			*d++ = '0';
			*d++ = '0';
			*d++ = hexdigits[ch >> 4];
			*d++ = hexdigits[ch & 15];
		}
	}
	return (size_t)(d - dst);
}

// stamp is the end of an entry: its time and the closing "}. One per
// chunk read: the lines of a chunk arrived together, and a clock read and
// format per line was most of the monitor's time in a flood of short lines.
static char stamp[48];
static size_t stamplen;

static void log_stamp(void) {
	static time_t last_sec = -1;
	static char secbuf[32];
	static size_t seclen;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last_sec) { // the date changes once a second
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		seclen = strftime(secbuf, sizeof(secbuf), "%Y-%m-%dT%H:%M:%S.", &tm);
		last_sec = ts.tv_sec;
	}
	char *d = stamp;
	memcpy(d, secbuf, seclen);
	d += seclen;
	long ns = ts.tv_nsec;
	for (int i = 8; i >= 0; i--) {
		d[i] = (char)('0' + ns % 10);
		ns /= 10;
	}
	d += 9;
	memcpy(d, "Z\"}\n", 4);
	stamplen = (size_t)(d + 4 - stamp);
}

static void log_entry(int stream, const char *p, size_t n) {
	if (!log_ready())
		return;
	if (outlen + n * 6 + 128 > sizeof(outbuf)) // n <= LINE_MAX_BYTES: fits once flushed
		log_flush(outlen);
	size_t start = outlen;
	char *d = outbuf + outlen;
	memcpy(d, "{\"log\":\"", 8);
	d += 8;
	d += json_escape(d, p, n);
	const char *mid = stream == S_STDOUT ? "\",\"stream\":\"stdout\",\"time\":\"" : "\",\"stream\":\"stderr\",\"time\":\"";
	size_t ml = strlen(mid);
	memcpy(d, mid, ml);
	d += ml;
	memcpy(d, stamp, stamplen);
	d += stamplen;
	outlen = (size_t)(d - outbuf);
	if (maxsize > 0 && logsize + (long long)outlen > maxsize && logsize + (long long)start > 0) {
		log_flush(start);
		log_rotate();
	}
}

// log_data splits a chunk into lines: complete lines become entries ending
// in "\n"; a line reaching LINE_MAX_BYTES is written as a partial entry.
static void log_data(int stream, const char *p, size_t n) {
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) + 1 : n;
		size_t room = LINE_MAX_BYTES - linelen[stream];
		if (seg > room)
			seg = room, nl = NULL;
		if (linelen[stream] == 0 && (nl || seg == LINE_MAX_BYTES)) {
			log_entry(stream, p, seg); // whole line in the chunk: no copy
		} else {
			memcpy(linebuf[stream] + linelen[stream], p, seg);
			linelen[stream] += seg;
			if (nl || linelen[stream] == LINE_MAX_BYTES) {
				log_entry(stream, linebuf[stream], linelen[stream]);
				linelen[stream] = 0;
			}
		}
		p += seg;
		n -= seg;
	}
}

static void log_finish(void) {
	log_stamp();
	for (int s = 0; s < 2; s++)
		if (linelen[s] > 0) {
			log_entry(s, linebuf[s], linelen[s]);
			linelen[s] = 0;
		}
	log_flush(outlen);
}

// sock_addr names a socket in the run directory through /proc/self/fd, so
// a deep run root never overflows sun_path's 108 bytes. Clients do the same.
static int rundirfd = -1;

static void sock_addr(struct sockaddr_un *sa, const char *name) {
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", rundirfd, name);
}

// close_from closes every descriptor from fd up: what the spawner let us
// inherit by accident must not be held open for a container's lifetime.
static void close_from(int fd) {
	if (syscall(SYS_close_range, (unsigned)fd, ~0U, 0) == 0)
		return;
	for (int i = fd; i < 4096; i++)
		close(i);
}

// ---- hooks ----

static char exe[64] = "/proc/self/exe";

static pid_t spawn_hook(char **argv, int *fds, int nfds) {
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL); // ours is ignored; the engine's must not be
	// Move /dev/null and the fds we hand over above the target range
	// first, so dup2 to 3..n never clobbers one still to be placed.
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	null = fcntl(null, F_DUPFD_CLOEXEC, 64);
	int tmp[8];
	for (int i = 0; i < nfds; i++)
		tmp[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 64) : -1;
	dup2(null, 0);
	dup2(null, 1);
	if (getenv("BERTH_MONITOR_DEBUG") == NULL)
		dup2(null, 2);
	for (int i = 0; i < nfds; i++)
		dup2(tmp[i] >= 0 ? tmp[i] : null, 3 + i);
	close_from(3 + nfds);
	execv(exe, argv);
	_exit(127);
}

// wait_pid waits for pid only: the container, reparented to us, may exit
// meanwhile and must stay a zombie until reap() collects its status.
static int wait_pid(pid_t pid) {
	int st;
	for (;;) {
		pid_t got = waitpid(pid, &st, 0);
		if (got < 0 && errno == EINTR)
			continue;
		return got == pid ? st : -1;
	}
}

static int exit_code(int st) {
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 255;
}

static void close_fd(int *fd) {
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void start_failed(const char *what) {
	start_errlen = (size_t)snprintf(start_err, sizeof(start_err), "125 %s: %s", what, strerror(errno));
	warnf("%s", start_err + 4);
}

// wait_readable waits up to ms for fd to be readable.
static int wait_readable(int fd, int ms) {
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int r;
	while ((r = poll(&pfd, 1, ms)) < 0 && errno == EINTR)
		;
	return r > 0;
}

static int console_listen(void) {
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa;
	sock_addr(&sa, "console.sock");
	unlink(consolepath);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

// console_receive takes the terminal's master from the runtime's
// connection. The runtime sent it during create, before the hook reported
// the pid, so it is waiting; the wait is bounded all the same, so a
// runtime that did not send it costs the container's terminal output, not
// the monitor.
static int console_receive(int consfd) {
	if (!wait_readable(consfd, 5000)) {
		warnf("the runtime did not connect to the console socket");
		return -1;
	}
	int c = accept4(consfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return -1;
	int fd = -1;
	if (wait_readable(c, 5000)) {
		char buf[256];
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cbuf;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf)};
		// Room for one descriptor: the kernel closes any more sent.
		if (recvmsg(c, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT) >= 0)
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
				if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len >= CMSG_LEN(sizeof(int)))
					memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	}
	close(c);
	if (fd < 0)
		warnf("no terminal from the runtime: the container's terminal output is lost");
	return fd;
}

static void close_held(void) {
	for (int i = 0; i < nheld; i++)
		close(held[i]);
	nheld = 0;
}

// keep_rights keeps the descriptors a message carried (SCM_RIGHTS) in
// held, close-on-exec already (MSG_CMSG_CLOEXEC).
static void keep_rights(struct msghdr *mh) {
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (nheld < MAX_HELD)
				held[nheld++] = fd;
			else
				close(fd);
		}
	}
}

// read_reply reads a hook's reply until EOF (the hook exited or closed
// its end) or the buffer is full, and NUL-terminates it. fd < 0 reads
// nothing. On a socket (the start hook's status), descriptors sent with
// the reply go to held.
static size_t read_reply(int fd, char *buf, size_t cap) {
	size_t len = 0;
	int sock = 1;
	while (fd >= 0 && len < cap - 1) {
		ssize_t r;
		if (sock) {
			// Room for one batch: the kernel caps SCM_RIGHTS at 253.
			union {
				struct cmsghdr h;
				char b[CMSG_SPACE(253 * sizeof(int))];
			} cm;
			struct iovec iov = {buf + len, cap - 1 - len};
			struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
			r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
			if (r < 0 && errno == ENOTSOCK) {
				sock = 0;
				continue;
			}
			if (r >= 0)
				keep_rights(&mh);
		} else {
			r = read(fd, buf + len, cap - 1 - len);
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = 0;
	return len;
}

// start_container runs the start hook and returns the container's pid, or
// 0 with the reason in start_err. Every descriptor it made is ours or
// closed when it returns, on every path: it runs once per restart.
static pid_t start_container(void) {
	int status[2] = {-1, -1}, in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	int consfd = -1;
	pid_t pid = 0;
	// A socket, not a pipe: the hook hands over the sockets holding the
	// published ports on it.
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, status) < 0) {
		start_failed("status socket");
		goto done;
	}
	if (tty && (consfd = console_listen()) < 0) {
		start_failed("console socket");
		goto done;
	}
	if (!tty && ((keepstdin && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)) {
		start_failed("stdio pipes");
		goto done;
	}
	// A 1 MiB pipe (the default unprivileged maximum) instead of 64 KiB:
	// a container writing in bursts blocks less, and each read takes more.
	if (!tty) {
		fcntl(out[0], F_SETPIPE_SZ, 1 << 20);
		fcntl(err[0], F_SETPIPE_SZ, 1 << 20);
	}
	char *argv[] = {"berth", "--root", (char *)root, "--run-root", (char *)runroot, "monitor-hook", "start", (char *)id,
	                tty ? consolepath : NULL, NULL};
	int fds[4] = {status[1], in[0], out[1], err[1]};
	pid_t hook = spawn_hook(argv, fds, 4);
	close_fd(&status[1]);
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&err[1]);
	char buf[4096];
	size_t len = read_reply(status[0], buf, sizeof(buf));
	int hookst = hook > 0 ? wait_pid(hook) : -1;
	char *msg = buf;
	while (len > 0 && *msg == 'H') { // one byte per batch of held sockets
		msg++;
		len--;
	}
	if (len > 1 && msg[0] == 'P')
		pid = (pid_t)atoi(msg + 1);
	if (pid <= 0) {
		pid = 0;
		close_held();
		if (len > 1 && msg[0] == 'E') {
			if (msg[len - 1] == '\n')
				msg[--len] = 0;
			start_errlen = (size_t)snprintf(start_err, sizeof(start_err), "%s", msg + 1);
		} else {
			start_errlen = (size_t)snprintf(start_err, sizeof(start_err), "125 start hook failed (wait status %d)", hookst);
		}
		goto done;
	}
	// Our ends do not block: stdin waits for room (stdin_write), never
	// the monitor.
	if (tty) {
		out_r[0] = console_receive(consfd);
		if (out_r[0] >= 0) {
			fcntl(out_r[0], F_SETFL, O_NONBLOCK);
			stdin_w = fcntl(out_r[0], F_DUPFD_CLOEXEC, 3);
		}
	} else {
		if (in[1] >= 0)
			fcntl(in[1], F_SETFL, O_NONBLOCK);
		stdin_w = in[1], in[1] = -1;
		out_r[0] = out[0], out[0] = -1;
		out_r[1] = err[0], err[0] = -1;
	}
	char p[32];
	int n = snprintf(p, sizeof(p), "%d", (int)pid);
	broadcast('S', p, (size_t)n, 0);
done:
	for (int i = 0; i < 2; i++) {
		close_fd(&status[i]);
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
	}
	if (consfd >= 0) {
		close(consfd);
		unlink(consolepath);
	}
	return pid;
}

// exit_hook records the exit and returns the restart delay in ms, or -1.
static int exit_hook(int code) {
	char c[16];
	snprintf(c, sizeof(c), "%d", code);
	int out[2] = {-1, -1};
	if (pipe2(out, O_CLOEXEC) < 0) // the exit is recorded all the same, without a restart
		warnf("restart pipe: %s", strerror(errno));
	char *argv[] = {"berth", "--root", (char *)root, "--run-root", (char *)runroot, "monitor-hook", "--", "exit", (char *)id, c, NULL};
	int fds[1] = {out[1]};
	pid_t hook = spawn_hook(argv, fds, 1);
	close_fd(&out[1]);
	char msg[64];
	size_t len = read_reply(out[0], msg, sizeof(msg));
	close_fd(&out[0]);
	if (hook > 0)
		wait_pid(hook);
	if (len > 1 && msg[0] == 'R')
		return atoi(msg + 1);
	return -1;
}

// ---- main loop ----

static void reap(void) {
	for (;;) {
		int st;
		pid_t got = waitpid(-1, &st, WNOHANG);
		if (got <= 0)
			return;
		if (got == ctr_pid)
			ctr_status = st;
	}
}

static void pump(int stream) {
	ssize_t r = read(out_r[stream], readbuf, sizeof(readbuf));
	if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (r <= 0) { // EOF, or EIO from a tty master once the slave side is gone
		close_fd(&out_r[stream]);
		if (tty)
			stdin_close();
		return;
	}
	log_stamp();
	log_data(stream, (const char *)readbuf, (size_t)r);
	broadcast(stream == S_STDOUT ? 1 : 2, readbuf, (size_t)r, 1);
}

// serve_once waits, until deadline (ms; -1: none) at most, for something
// to do and does it: a child's exit, a connection, the container's
// output, room on its stdin, client frames and room in client sockets.
// The container's output is read only while no output client is behind.
static void serve_once(long long deadline) {
	// Frames left waiting for a stdin that has room again (or closed).
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0 && !clients[i].stdin_wait && clients[i].inlen >= 5)
			client_process(&clients[i]);
	long long now = now_ms();
	int timeout = deadline < 0 ? -1 : ms_until(deadline, now);
	clients_gate(now, &timeout);
	int reading = !clients_behind();

	struct pollfd pfd[5 + MAX_CLIENTS];
	int n = 0, i_listen = -1, i_in = -1, i_out[2] = {-1, -1}, i_client[MAX_CLIENTS];
	pfd[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
	if (listenfd >= 0 && now >= accept_pause) {
		i_listen = n;
		pfd[n++] = (struct pollfd){.fd = listenfd, .events = POLLIN};
	} else if (listenfd >= 0) {
		int ms = ms_until(accept_pause, now);
		if (timeout < 0 || ms < timeout)
			timeout = ms;
	}
	for (int s = 0; s < 2 && reading; s++)
		if (out_r[s] >= 0) {
			i_out[s] = n;
			pfd[n++] = (struct pollfd){.fd = out_r[s], .events = POLLIN};
		}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &clients[i];
		i_client[i] = -1;
		if (c->fd < 0)
			continue;
		if (c->stdin_wait && i_in < 0 && stdin_w >= 0) {
			i_in = n;
			pfd[n++] = (struct pollfd){.fd = stdin_w, .events = POLLOUT};
		}
		short ev = (c->stdin_wait ? 0 : POLLIN) | (c->qlen > 0 ? POLLOUT : 0);
		if (ev) {
			i_client[i] = n;
			pfd[n++] = (struct pollfd){.fd = c->fd, .events = ev};
		}
	}
	if (poll(pfd, (nfds_t)n, timeout) <= 0)
		return; // a timeout, EINTR, or (never) an error: the caller's loop decides
	now = now_ms();
	if (pfd[0].revents) {
		struct signalfd_siginfo si;
		while (read(sigfd, &si, sizeof(si)) == sizeof(si))
			;
		reap();
	}
	if (i_listen >= 0 && pfd[i_listen].revents & POLLIN)
		accept_clients(now);
	if (i_in >= 0 && pfd[i_in].revents) // room, or the reader is gone: the next write says
		stdin_release();
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &clients[i];
		if (i_client[i] < 0 || c->fd != pfd[i_client[i]].fd)
			continue;
		struct pollfd *p = &pfd[i_client[i]];
		if (c->qlen > 0 && p->revents & (POLLOUT | POLLERR | POLLHUP))
			client_flush(c);
		if (c->fd >= 0 && p->events & POLLIN && p->revents & (POLLIN | POLLERR | POLLHUP))
			client_read(c);
	}
	for (int s = 0; s < 2; s++) // each read may put a client behind
		if (i_out[s] >= 0 && pfd[i_out[s]].revents && out_r[s] >= 0 && !clients_behind())
			pump(s);
	log_flush(outlen);
}

// run_container serves one run of the container until it has exited and
// its output is drained.
static void run_container(void) {
	long long drain_deadline = 0;
	for (;;) {
		if (ctr_status != -1) {
			if (out_r[0] < 0 && out_r[1] < 0)
				return;
			// Exited, but a process that escaped it may hold the pipes:
			// give the output DRAIN_MS to end, then stop reading. Time
			// spent waiting for a client behind does not count.
			long long now = now_ms();
			if (clients_behind())
				drain_deadline = 0;
			else if (drain_deadline == 0)
				drain_deadline = now + DRAIN_MS;
			else if (now >= drain_deadline)
				return;
		}
		serve_once(drain_deadline ? drain_deadline : -1);
	}
}

// serve_for serves the clients for ms (the restart delay): they connect,
// hear the next start and are not left unread meanwhile.
static void serve_for(int ms) {
	long long end = now_ms() + ms;
	while (now_ms() < end)
		serve_once(end);
}

static void cleanup_rundir(void) {
	close_fd(&listenfd);
	unlink(sockpath);
	rmdir(rundir);
}

static int monitor_main(int argc, char **argv) {
	if (argc < 9) {
		fprintf(stderr, "berth monitor: internal command, started by berth run/start\n");
		return 2;
	}
	id = argv[2];
	root = argv[3];
	runroot = argv[4];
	logpath = strcmp(argv[5], "-") == 0 ? NULL : argv[5];
	maxsize = atoll(argv[6]);
	maxfile = atoi(argv[7]);
	tty = strchr(argv[8], 't') != NULL;
	keepstdin = strchr(argv[8], 'i') != NULL;
	stdinonce = strchr(argv[8], 'o') != NULL;
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;

	// Detach: the spawner reaps this first process at once and never
	// becomes the parent of a long-lived one; the monitor leads its own
	// session, so no terminal's hangup reaches it.
	pid_t first = fork();
	if (first < 0)
		return 1;
	if (first > 0)
		return 0;
	setsid();
	close_from(4);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	prctl(PR_SET_NAME, "berth-monitor", 0, 0, 0);
	if (chdir("/") < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0) { // without it no exit would be seen
		warnf("signalfd: %s", strerror(errno));
		return 1;
	}

	snprintf(rundir, sizeof(rundir), "%s/%s", runroot, id);
	snprintf(sockpath, sizeof(sockpath), "%s/attach.sock", rundir);
	snprintf(consolepath, sizeof(consolepath), "%s/console.sock", rundir);
	mkdir(runroot, 0700);
	if (mkdir(rundir, 0700) < 0 && errno != EEXIST) {
		warnf("mkdir %s: %s", rundir, strerror(errno));
		return 1;
	}
	rundirfd = open(rundir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rundirfd < 0) {
		warnf("open %s: %s", rundir, strerror(errno));
		return 1;
	}
	listenfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa;
	sock_addr(&sa, "attach.sock");
	unlink(sockpath);
	if (listenfd < 0 || bind(listenfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listenfd, 16) < 0) {
		warnf("attach socket %s: %s", sockpath, strerror(errno));
		cleanup_rundir();
		return 1;
	}
	fcntl(3, F_SETFD, FD_CLOEXEC);
	fcntl(3, F_SETFL, O_NONBLOCK);
	client_add(3, 1, 1);
	if (logpath)
		log_open();

	int final_code = -1;
	for (;;) {
		ctr_status = -1;
		ctr_pid = start_container();
		int code;
		if (ctr_pid > 0) {
			run_container();
			log_finish();
			close_fd(&out_r[0]);
			close_fd(&out_r[1]);
			stdin_close();
			if (ctr_status == -1) // not seen by reap(): wait for the exit itself
				ctr_status = wait_pid(ctr_pid);
			code = exit_code(ctr_status);
		} else {
			code = -1; // start failed: start_err says why
		}
		// Clients hear the outcome only once the exit hook has recorded
		// it (and, for --rm, removed the container): `run --rm` returns
		// to a host with nothing left.
		// The held ports go before the exit hook records the exit: a
		// start that follows it at once (kill, then start or run -p)
		// probes the ports and must find them free. Until the hook takes
		// the rules down a host process could bind one and get nothing,
		// for those few milliseconds.
		close_held();
		int delay = exit_hook(code);
		if (delay < 0 || code < 0) {
			final_code = code;
			break;
		}
		serve_for(delay);
	}
	if (logfd >= 0)
		close(logfd);
	// The run directory goes before the last word, and the connections
	// close just before we exit: a client that reads to EOF knows the
	// container is recorded, cleaned up and its monitor gone.
	cleanup_rundir();
	if (final_code >= 0) {
		char c[16];
		int n = snprintf(c, sizeof(c), "%d", final_code);
		broadcast('X', c, (size_t)n, 0);
	} else {
		broadcast('E', start_err, start_errlen, 0);
	}
	clients_finish();
	return 0;
}

void berth_monitor(int argc, char **argv) {
	if (argc < 2 || strcmp(argv[1], "monitor") != 0)
		return;
	_exit(monitor_main(argc, argv));
}
