// berth-init: signal forwarding and zombie reaping before the Go runtime
// starts. See doc.go for why this is C and when it runs.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

// say writes one formatted message to stderr with a single write(2): no
// stdio buffers to flush or to duplicate across fork.
static void say(const char *fmt, ...) {
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= (int)sizeof(msg))
		n = sizeof(msg) - 1;
	while (write(2, msg, (size_t)n) < 0 && errno == EINTR)
		;
}

static void usage(void) {
	say("usage: berth-init [--] CMD [ARGS...]\n");
	_exit(2);
}

static int called_as_init(int argc, char **argv) {
	if (argc < 1 || argv == NULL || argv[0] == NULL)
		return 0;
	const char *base = strrchr(argv[0], '/');
	return strcmp(base ? base + 1 : argv[0], "berth-init") == 0;
}

static void run_child(char **cmd, const sigset_t *orig) {
	// A group of its own, so a shell's job control and a terminal's
	// Ctrl-C address the command and not the init.
	setpgid(0, 0);
	// Taking the terminal from the background raises SIGTTOU; tini ignores
	// it around the call. Here every signal is still blocked, which the
	// tty layer treats the same way, so no disposition changes hands.
	// Without a controlling terminal tcsetpgrp fails, harmlessly.
	if (isatty(0))
		tcsetpgrp(0, getpgrp());
	sigprocmask(SIG_SETMASK, orig, NULL);
	execvp(cmd[0], cmd);
	int err = errno;
	say("berth-init: exec %s: %s\n", cmd[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
}

// exit_code is the shell's convention: the exit status, or 128+signal.
static int exit_code(int status) {
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

void berth_reaper(int argc, char **argv) {
	if (!called_as_init(argc, argv))
		return;

	char **cmd = argv + 1;
	if (*cmd != NULL && strcmp(*cmd, "--") == 0)
		cmd++;
	else if (*cmd != NULL && (*cmd)[0] == '-') {
		say("berth-init: unknown option %s\n", *cmd);
		usage();
	}
	if (*cmd == NULL)
		usage();

	// Orphans go to the nearest subreaper, else to the namespace's PID 1.
	if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		say("berth-init: warning: cannot become a subreaper: %s\n", strerror(errno));

	// Blocked, a signal stays pending for sigwaitinfo even where PID 1's
	// default disposition would drop it. The faults a bug of ours raises
	// stay unblocked so that they kill us instead of looping.
	sigset_t all, orig;
	sigfillset(&all);
	static const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		sigdelset(&all, faults[i]);
	if (sigprocmask(SIG_SETMASK, &all, &orig) < 0) {
		say("berth-init: sigprocmask: %s\n", strerror(errno));
		_exit(1);
	}

	pid_t child = fork();
	if (child < 0) {
		say("berth-init: fork: %s\n", strerror(errno));
		_exit(1);
	}
	if (child == 0)
		run_child(cmd, &orig);

	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&all, &info);
		if (sig < 0) {
			if (errno == EINTR)
				continue;
			say("berth-init: sigwaitinfo: %s\n", strerror(errno));
			_exit(1);
		}
		if (sig != SIGCHLD) {
			// ESRCH only means the child is gone; its SIGCHLD is on the way.
			kill(child, sig);
			continue;
		}
		// SIGCHLDs coalesce: one may stand for many exits.
		int done = 0, code = 0, status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid == child) {
				done = 1;
				code = exit_code(status);
			}
		}
		if (done)
			_exit(code);
	}
}
