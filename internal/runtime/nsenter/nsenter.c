// The pre-Go stage of `berth init`. See doc.go for why this is C.
//
// Protocol on the init socket (fd named by _BERTH_INITPIPE), parent -> child:
//   a 4-byte little-endian length, then that many bytes of lines "key=value\n":
//     clone=<decimal flags to unshare>     (at most once)
//     join=<decimal CLONE_NEW* flag>:<path> (in the order to join; user first)
//     fork=1                               (fork so the child is PID 1 / in the pid ns)
//     cgroup=<path of a tasks or cgroup.procs file>  (join; repeated)
//     timens=<clock> <secs> <nanos>        (a new time namespace's offset; repeated)
// child -> parent:
//   "M"            after unshare(CLONE_NEWUSER): write my uid_map/gid_map now
//   parent -> "m"  maps written
//   "P<pid>\n"     the pid that will run the Go init stage (host pid namespace)
// Any failure is written as "E<message>\n" and the process exits 1; the
// parent turns it into the user's error.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>
#include <sys/syscall.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define MAX_JOINS 16
#define MAX_CGROUPS 32

static int sync_fd = -1;

static void write_all(int fd, const char *buf, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += w;
		n -= (size_t)w;
	}
}

static void bail(const char *fmt, ...) {
	char msg[1024];
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg + 1, sizeof(msg) - 3, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(msg) - 3)
		n = sizeof(msg) - 3;
	if (saved != 0)
		n += snprintf(msg + 1 + n, sizeof(msg) - 2 - n, ": %s", strerror(saved));
	if (n > (int)sizeof(msg) - 3)
		n = sizeof(msg) - 3;
	msg[0] = 'E';
	msg[1 + n] = '\n';
	if (sync_fd >= 0)
		write_all(sync_fd, msg, (size_t)n + 2);
	else
		write_all(2, msg + 1, (size_t)n + 1);
	_exit(1);
}

static int read_full(int fd, void *buf, size_t n) {
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

struct join {
	int flag;
	int fd;
	char path[512];
};

void berth_nsenter(void) {
	const char *env = getenv("_BERTH_INITPIPE");
	if (env == NULL || *env == '\0')
		return;
	sync_fd = atoi(env);
	if (sync_fd <= 2)
		bail("nsenter: bad _BERTH_INITPIPE %s", env);
	// Ignored signals survive execve: whatever the caller's shell ignored
	// (SIGQUIT, a realtime signal) would reach the container's process
	// through berth, the monitor and this stage. The process must start
	// with every signal at its default, as a fresh init expects.
	// The raw system call: glibc's sigaction refuses 32 and 33, which it
	// keeps for itself, and those are the ones a Go parent leaves ignored.
	for (int sig = 1; sig < NSIG; sig++) {
		unsigned long ksa[4] = {0}, old[4] = {0}; // handler first on every ABI
		if (sig == SIGKILL || sig == SIGSTOP || syscall(SYS_rt_sigaction, sig, NULL, old, 8) < 0)
			continue;
		if (old[0] == (unsigned long)SIG_IGN)
			syscall(SYS_rt_sigaction, sig, ksa, NULL, 8);
	}

	unsigned char lenbuf[4];
	if (read_full(sync_fd, lenbuf, 4) < 0)
		bail("nsenter: read plan length");
	size_t len = (size_t)lenbuf[0] | ((size_t)lenbuf[1] << 8) | ((size_t)lenbuf[2] << 16) | ((size_t)lenbuf[3] << 24);
	if (len > 65536)
		bail("nsenter: plan too long (%zu bytes)", len);
	char *plan = calloc(1, len + 1);
	if (plan == NULL)
		bail("nsenter: allocate plan");
	if (len > 0 && read_full(sync_fd, plan, len) < 0)
		bail("nsenter: read plan");

	int cloneflags = 0, dofork = 0, njoins = 0, ncgroups = 0, ntimens = 0;
	char *timens[4];
	struct join joins[MAX_JOINS];
	char *cgroups[MAX_CGROUPS];
	char *save = NULL;
	for (char *line = strtok_r(plan, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "clone=", 6) == 0) {
			cloneflags = atoi(line + 6);
		} else if (strncmp(line, "fork=", 5) == 0) {
			dofork = atoi(line + 5);
		} else if (strncmp(line, "timens=", 7) == 0) {
			if (ntimens >= 4)
				bail("nsenter: too many time offsets");
			timens[ntimens++] = line + 7;
		} else if (strncmp(line, "cgroup=", 7) == 0) {
			if (ncgroups >= MAX_CGROUPS)
				bail("nsenter: too many cgroups to join");
			cgroups[ncgroups++] = line + 7;
		} else if (strncmp(line, "join=", 5) == 0) {
			if (njoins >= MAX_JOINS)
				bail("nsenter: too many namespaces to join");
			char *colon = strchr(line + 5, ':');
			if (colon == NULL)
				bail("nsenter: bad join line %s", line);
			*colon = '\0';
			joins[njoins].flag = atoi(line + 5);
			if (strlen(colon + 1) >= sizeof(joins[njoins].path))
				bail("nsenter: namespace path too long: %s", colon + 1);
			snprintf(joins[njoins].path, sizeof(joins[njoins].path), "%s", colon + 1);
			njoins++;
		} else {
			bail("nsenter: unknown plan line %s", line);
		}
	}
	// Join the cgroups first, while host paths still resolve and before
	// a cgroup namespace is made (it is rooted where we stand). We move
	// ourselves by writing "0" while single-threaded: the kernel then
	// migrates one thread without taking the global threadgroup lock,
	// which on cgroup v1 costs an RCU grace period (10-15 ms) when the
	// parent writes our pid instead.
	for (int i = 0; i < ncgroups; i++) {
		int fd = open(cgroups[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			bail("join cgroup: open %s", cgroups[i]);
		if (write(fd, "0", 1) != 1)
			bail("join cgroup: write %s", cgroups[i]);
		close(fd);
	}
	free(plan);

	// Open every namespace first: once we are in a new mount namespace the
	// paths may no longer resolve.
	for (int i = 0; i < njoins; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0)
			bail("open namespace %s", joins[i].path);
	}
	for (int i = 0; i < njoins; i++) {
		if (setns(joins[i].fd, joins[i].flag) < 0)
			bail("setns %s", joins[i].path);
		close(joins[i].fd);
		if (joins[i].flag == CLONE_NEWUSER) {
			// Become root of the joined user namespace, as a process
			// created in it would be.
			if (setresgid(0, 0, 0) < 0)
				bail("setresgid 0 in joined user namespace");
			if (setresuid(0, 0, 0) < 0)
				bail("setresuid 0 in joined user namespace");
		}
	}

	if (cloneflags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			bail("unshare user namespace");
		// Writing the maps needs privilege in the parent namespace,
		// which only our parent has now.
		write_all(sync_fd, "M", 1);
		char ack;
		if (read_full(sync_fd, &ack, 1) < 0 || ack != 'm')
			bail("nsenter: parent did not write the id maps");
		if (setresgid(0, 0, 0) < 0)
			bail("setresgid 0 in new user namespace (is container root mapped?)");
		if (setresuid(0, 0, 0) < 0)
			bail("setresuid 0 in new user namespace (is container root mapped?)");
		// A new user namespace starts with full capabilities; keep
		// them across the later exec into Go.
	}
	int rest = cloneflags & ~CLONE_NEWUSER;
	if (rest != 0 && unshare(rest) < 0)
		bail("unshare namespaces 0x%x", rest);
	// A new time namespace takes its offsets before any process is in
	// it: our next child is the first.
	for (int i = 0; i < ntimens; i++) {
		int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			bail("open /proc/self/timens_offsets");
		size_t n = strlen(timens[i]);
		if (write(fd, timens[i], n) != (ssize_t)n)
			bail("linux.timeOffsets: write \"%s\"", timens[i]);
		close(fd);
	}

	if (dofork) {
		pid_t pid = fork();
		if (pid < 0)
			bail("fork into pid namespace");
		if (pid > 0) {
			char msg[32];
			int n = snprintf(msg, sizeof(msg), "P%d\n", (int)pid);
			write_all(sync_fd, msg, (size_t)n);
			_exit(0);
		}
		// The first child of a new pid namespace dies with its parent
		// only if asked; the Go stage becomes the container's init.
	} else {
		// The parent asked the kernel to kill us if it dies during
		// setup; the container's init must outlive `create`.
		prctl(PR_SET_PDEATHSIG, 0);
		char msg[32];
		int n = snprintf(msg, sizeof(msg), "P%d\n", (int)getpid());
		write_all(sync_fd, msg, (size_t)n);
	}
	// Hand over to Go. The init socket stays open for the Go stage.
}
