package runtime_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/runtime"
)

func waitStatus(t *testing.T, e *env, id string, want runtime.Status) runtime.State {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.state(id)
		if st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: status %s, want %s", id, st.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "1000"}
	e.spec.Annotations = map[string]string{"org.example.key": "value"}
	e.cgroupPath("life")
	e.writeSpec()
	pidFile := filepath.Join(e.dir, "pid")
	e.mustBerth("create", "--pid-file", pidFile, "life")

	st := e.state("life")
	if st.Status != runtime.Created || st.Pid <= 0 || st.ID != "life" || st.Bundle != e.bundle || st.Annotations["org.example.key"] != "value" {
		t.Fatalf("after create: %+v", st)
	}
	if data, _ := os.ReadFile(pidFile); string(data) != strconv.Itoa(st.Pid) {
		t.Errorf("pid file %q, state pid %d", data, st.Pid)
	}
	// The process waits before execve: it is still berth init.
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(st.Pid) + "/comm"); strings.TrimSpace(string(comm)) == "sleep" {
		t.Error("process ran before start")
	}
	if r := e.berth("create", "life"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("second create: exit %d %q", r.code, r.stderr)
	}

	e.mustBerth("start", "life")
	st = waitStatus(t, e, "life", runtime.Running)
	if r := e.berth("start", "life"); r.code == 0 {
		t.Error("start of a running container succeeded")
	}
	if r := e.berth("delete", "life"); r.code != 1 || !strings.Contains(r.stderr, "not stopped") {
		t.Errorf("delete running: exit %d %q", r.code, r.stderr)
	}
	ps := e.mustBerth("ps", "--format", "json", "life")
	if !strings.Contains(ps, strconv.Itoa(st.Pid)) {
		t.Errorf("ps %s lacks pid %d", ps, st.Pid)
	}
	if list := e.mustBerth("list"); !strings.Contains(list, "life") || !strings.Contains(list, "running") {
		t.Errorf("list:\n%s", list)
	}

	e.mustBerth("pause", "life")
	waitStatus(t, e, "life", runtime.Paused)
	e.mustBerth("resume", "life")
	waitStatus(t, e, "life", runtime.Running)

	e.mustBerth("kill", "life", "KILL")
	st = waitStatus(t, e, "life", runtime.Stopped)
	if st.Pid != 0 {
		t.Errorf("stopped container reports pid %d", st.Pid)
	}
	if r := e.berth("kill", "life"); r.code == 0 {
		t.Error("kill of a stopped container succeeded")
	}
	e.mustBerth("delete", "life")
	if r := e.berth("state", "life"); r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("state after delete: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(e.root, "life")); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}

func TestKillSignals(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sh", "-c", "trap 'echo got-usr1 > /tmp/sig' USR1; while true; do sleep 0.05; done"}
	e.cgroupPath("sig")
	e.writeSpec()
	e.mustBerth("run", "-d", "sig")
	st := e.state("sig")
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	e.mustBerth("kill", "sig", "SIGUSR1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(e.bundle, "rootfs/tmp/sig"))
		if strings.Contains(string(data), "got-usr1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGUSR1 not delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.mustBerth("kill", "--all", "sig", "9")
	waitStatus(t, e, "sig", runtime.Stopped)
	if err := syscall.Kill(st.Pid, 0); err == nil {
		if stat, _ := os.ReadFile("/proc/" + strconv.Itoa(st.Pid) + "/stat"); !strings.Contains(string(stat), ") Z") {
			t.Errorf("init %d still alive", st.Pid)
		}
	}
	e.mustBerth("delete", "sig")
}

func TestDeleteForce(t *testing.T) {
	e := newEnv(t)
	e.spec.Process.Args = []string{"sleep", "1000"}
	cg := e.cgroupPath("force")
	e.writeSpec()
	e.mustBerth("run", "--detach", "force")
	e.mustBerth("delete", "--force", "force")
	for _, dir := range []string{filepath.Join("/sys/fs/cgroup/memory", cg), filepath.Join("/sys/fs/cgroup", cg)} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after delete --force: %v", dir, err)
		}
	}
	// runc: deleting a missing container with --force succeeds.
	e.mustBerth("delete", "--force", "force")
}
