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
//     fds 3 status pipe ("P<pid>\n" or "E<code> <msg>\n"), 4-6 container stdio
//   berth --root R --run-root RR monitor-hook exit ID CODE
//     prints "R<delay ms>\n" when the restart policy says start again.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define LINE_MAX_BYTES 16384 // docker splits longer lines into partial entries
#define READ_BYTES 65536
#define OUT_BYTES (8 * LINE_MAX_BYTES + 4096)
#define FRAME_MAX 32768

enum { S_STDOUT = 0, S_STDERR = 1 };

struct client {
	int fd;
	int output; // wants stdout/stderr frames
	size_t inlen;
	unsigned char *in; // FRAME_MAX + 5, allocated on connect
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

static void warnf(const char *fmt, ...) {
	// stderr is /dev/null unless the spawner kept it for debugging.
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "berth-monitor %s: ", id ? id : "?");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int write_all(int fd, const void *buf, size_t n) {
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
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
	c->fd = -1;
	free(c->in);
	c->in = NULL;
	c->inlen = 0;
}

// client_send writes one frame whole. A client that cannot take it within
// ten seconds is dropped: an attached terminal may slow the container
// down (as with docker attach), never stop it for good.
static void client_send(struct client *c, int type, const void *data, size_t n) {
	if (c->fd < 0)
		return;
	unsigned char hdr[5] = {(unsigned char)type, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
	                        (unsigned char)(n >> 8), (unsigned char)n};
	struct {
		const void *p;
		size_t n;
	} parts[2] = {{hdr, 5}, {data, n}};
	for (int i = 0; i < 2; i++) {
		const char *p = parts[i].p;
		size_t left = parts[i].n;
		while (left > 0) {
			ssize_t w = send(c->fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno == EAGAIN) {
				struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
				if (poll(&pfd, 1, 10000) <= 0) {
					client_close(c);
					return;
				}
				continue;
			}
			if (w < 0) {
				client_close(c);
				return;
			}
			p += w;
			left -= (size_t)w;
		}
	}
}

static void broadcast(int type, const void *data, size_t n, int output_only) {
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0 && (!output_only || clients[i].output))
			client_send(&clients[i], type, data, n);
}

static struct client *client_add(int fd, int output) {
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (clients[i].fd < 0) {
			clients[i].in = malloc(FRAME_MAX + 5);
			if (clients[i].in == NULL) {
				close(fd);
				return NULL;
			}
			clients[i].fd = fd;
			clients[i].output = output;
			clients[i].inlen = 0;
			return &clients[i];
		}
	}
	close(fd); // full: refuse
	return NULL;
}

static void close_stdin(void) {
	if (stdin_w >= 0 && !tty) {
		close(stdin_w);
		stdin_w = -1;
	}
}

static void client_frame(struct client *c, int type, unsigned char *p, size_t n) {
	switch (type) {
	case 0:
		if (stdin_w >= 0 && write_all(stdin_w, p, n) < 0 && errno == EPIPE)
			close_stdin();
		break;
	case 'c':
		if (stdinonce)
			close_stdin();
		else if (tty && stdin_w >= 0)
			write_all(stdin_w, "\x04", 1); // EOF at the terminal
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
		break;
	}
}

static void client_read(struct client *c) {
	ssize_t r = recv(c->fd, c->in + c->inlen, FRAME_MAX + 5 - c->inlen, MSG_DONTWAIT);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		client_close(c);
		return;
	}
	c->inlen += (size_t)r;
	size_t off = 0;
	while (c->inlen - off >= 5) {
		unsigned char *h = c->in + off;
		size_t n = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
		if (n > FRAME_MAX) {
			client_close(c);
			return;
		}
		if (c->inlen - off - 5 < n)
			break;
		client_frame(c, h[0], h + 5, n);
		if (c->fd < 0)
			return;
		off += 5 + n;
	}
	memmove(c->in, c->in + off, c->inlen - off);
	c->inlen -= off;
}

// ---- json-file log ----

static int log_open(void) {
	logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (logfd < 0) {
		warnf("open %s: %s", logpath, strerror(errno));
		return -1;
	}
	struct stat st;
	logsize = fstat(logfd, &st) == 0 ? st.st_size : 0;
	return 0;
}

static void log_flush(size_t upto) {
	if (upto == 0)
		return;
	if (logfd >= 0 && write_all(logfd, outbuf, upto) == 0)
		logsize += (long long)upto;
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

static void log_entry(int stream, const char *p, size_t n) {
	if (logfd < 0)
		return;
	if (outlen + n * 6 + 128 > sizeof(outbuf))
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
	// The date and time to the second change once a second: format them
	// then, and only the nanoseconds per entry (strftime per line was
	// half the monitor's time in a flood).
	struct timespec ts;
	static time_t last_sec = -1;
	static char secbuf[32];
	static size_t seclen;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		seclen = strftime(secbuf, sizeof(secbuf), "%Y-%m-%dT%H:%M:%S.", &tm);
		last_sec = ts.tv_sec;
	}
	memcpy(d, secbuf, seclen);
	d += seclen;
	long ns = ts.tv_nsec;
	for (int i = 8; i >= 0; i--) {
		d[i] = (char)('0' + ns % 10);
		ns /= 10;
	}
	d += 9;
	memcpy(d, "Z\"}\n", 4);
	d += 4;
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
	int null = open("/dev/null", O_RDWR);
	// Move the fds we hand over above the target range first, so dup2 to
	// 3..n never clobbers one still to be placed.
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

// start_container runs the start hook and returns the container's pid, or
// 0 after reporting the failure to the clients.
static pid_t start_container(void) {
	int status[2], in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
	int consfd = -1;
	if (pipe2(status, O_CLOEXEC) < 0)
		return 0;
	if (tty) {
		consfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa;
		sock_addr(&sa, "console.sock");
		unlink(consolepath);
		if (consfd < 0 || bind(consfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(consfd, 1) < 0) {
			warnf("console socket: %s", strerror(errno));
			return 0;
		}
	} else {
		if (keepstdin && pipe2(in, O_CLOEXEC) < 0)
			return 0;
		if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
			return 0;
	}
	char *argv[] = {"berth", "--root", (char *)root, "--run-root", (char *)runroot, "monitor-hook", "start", (char *)id,
	                tty ? consolepath : NULL, NULL};
	int fds[4] = {status[1], in[0], out[1], err[1]};
	pid_t hook = spawn_hook(argv, fds, 4);
	close(status[1]);
	if (in[0] >= 0)
		close(in[0]);
	if (out[1] >= 0)
		close(out[1]);
	if (err[1] >= 0)
		close(err[1]);
	char msg[4096];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(status[0], msg + len, sizeof(msg) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(msg) - 1)
			break;
	}
	close(status[0]);
	msg[len] = 0;
	int hookst = hook > 0 ? wait_pid(hook) : -1;
	pid_t pid = 0;
	if (len > 1 && msg[0] == 'P')
		pid = (pid_t)atoi(msg + 1);
	if (pid <= 0) {
		if (len > 1 && msg[0] == 'E') {
			if (msg[len - 1] == '\n')
				msg[--len] = 0;
			start_errlen = (size_t)snprintf(start_err, sizeof(start_err), "%s", msg + 1);
		} else {
			start_errlen = (size_t)snprintf(start_err, sizeof(start_err), "125 start hook failed (wait status %d)", hookst);
		}
		if (consfd >= 0)
			close(consfd), unlink(consolepath);
		if (in[1] >= 0)
			close(in[1]);
		if (out[0] >= 0)
			close(out[0]), close(err[0]);
		return 0;
	}
	if (tty) {
		// The runtime connected and sent the terminal's master during create.
		int c = accept4(consfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		close(consfd);
		unlink(consolepath);
		if (c >= 0) {
			char buf[256];
			char cbuf[CMSG_SPACE(sizeof(int))];
			struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
			struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
			if (recvmsg(c, &mh, MSG_CMSG_CLOEXEC) >= 0) {
				struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
				if (cm && cm->cmsg_type == SCM_RIGHTS)
					memcpy(&out_r[0], CMSG_DATA(cm), sizeof(int));
			}
			close(c);
		}
		if (out_r[0] >= 0)
			stdin_w = fcntl(out_r[0], F_DUPFD_CLOEXEC, 3);
	} else {
		stdin_w = in[1];
		out_r[0] = out[0];
		out_r[1] = err[0];
	}
	char p[32];
	int n = snprintf(p, sizeof(p), "%d", (int)pid);
	broadcast('S', p, (size_t)n, 0);
	return pid;
}

// exit_hook records the exit and returns the restart delay in ms, or -1.
static int exit_hook(int code) {
	char c[16];
	snprintf(c, sizeof(c), "%d", code);
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0)
		return -1;
	char *argv[] = {"berth", "--root", (char *)root, "--run-root", (char *)runroot, "monitor-hook", "--", "exit", (char *)id, c, NULL};
	int fds[1] = {out[1]};
	pid_t hook = spawn_hook(argv, fds, 1);
	close(out[1]);
	char msg[64];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(out[0], msg + len, sizeof(msg) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(msg) - 1)
			break;
	}
	close(out[0]);
	msg[len] = 0;
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
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) { // EOF, or EIO from a tty master once the slave side is gone
		close(out_r[stream]);
		out_r[stream] = -1;
		if (tty && stdin_w >= 0) {
			close(stdin_w);
			stdin_w = -1;
		}
		return;
	}
	log_data(stream, (const char *)readbuf, (size_t)r);
	broadcast(stream == S_STDOUT ? 1 : 2, readbuf, (size_t)r, 1);
}

// run_container serves one run of the container until it has exited and
// its output is drained.
static void run_container(void) {
	long long drain_deadline = 0;
	for (;;) {
		struct pollfd pfd[4 + MAX_CLIENTS];
		int n = 0, idx_out[2] = {-1, -1}, idx_client[MAX_CLIENTS];
		pfd[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = listenfd, .events = POLLIN};
		for (int s = 0; s < 2; s++)
			if (out_r[s] >= 0) {
				idx_out[s] = n;
				pfd[n++] = (struct pollfd){.fd = out_r[s], .events = POLLIN};
			}
		for (int i = 0; i < MAX_CLIENTS; i++) {
			idx_client[i] = -1;
			if (clients[i].fd >= 0) {
				idx_client[i] = n;
				pfd[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
			}
		}
		if (ctr_status != -1) {
			if (out_r[0] < 0 && out_r[1] < 0)
				return;
			// Exited, but a process that escaped it may hold the pipes:
			// give the output two seconds to end, then stop reading.
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long long ms = now.tv_sec * 1000LL + now.tv_nsec / 1000000;
			if (drain_deadline == 0)
				drain_deadline = ms + 2000;
			if (ms >= drain_deadline)
				return;
		}
		int r = poll(pfd, (nfds_t)n, ctr_status != -1 ? 100 : -1);
		if (r < 0 && errno != EINTR)
			return;
		if (r <= 0)
			continue;
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof(si)) == sizeof(si))
				;
			reap();
		}
		if (pfd[1].revents & POLLIN) {
			int c = accept4(listenfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (c >= 0)
				client_add(c, 0);
		}
		for (int s = 0; s < 2; s++)
			if (idx_out[s] >= 0 && pfd[idx_out[s]].revents)
				pump(s);
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (idx_client[i] >= 0 && pfd[idx_client[i]].revents && clients[i].fd >= 0)
				client_read(&clients[i]);
		log_flush(outlen);
	}
}

static void cleanup_rundir(void) {
	if (listenfd >= 0)
		close(listenfd);
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
	client_add(3, 1);
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
			for (int s = 0; s < 2; s++)
				if (out_r[s] >= 0)
					close(out_r[s]), out_r[s] = -1;
			if (stdin_w >= 0)
				close(stdin_w), stdin_w = -1;
			if (ctr_status == -1) // output ended early; wait for the exit itself
				ctr_status = wait_pid(ctr_pid);
			code = exit_code(ctr_status);
		} else {
			code = -1; // start failed: the start hook has recorded why
		}
		// Clients hear the outcome only once the exit hook has recorded
		// it (and, for --rm, removed the container): `run --rm` returns
		// to a host with nothing left.
		int delay = exit_hook(code);
		if (delay < 0 || code < 0) {
			final_code = code;
			break;
		}
		struct timespec ts = {.tv_sec = delay / 1000, .tv_nsec = (delay % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
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
	for (int i = 0; i < MAX_CLIENTS; i++)
		client_close(&clients[i]);
	return 0;
}

void berth_monitor(int argc, char **argv) {
	if (argc < 2 || strcmp(argv[1], "monitor") != 0)
		return;
	_exit(monitor_main(argc, argv));
}
