package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestMain lets the test binary double as a registry process, so a test
// can kill -9 one mid-upload and start another over the same storage.
func TestMain(m *testing.M) {
	if root := os.Getenv("BERTH_REGISTRY_TEST_SERVE"); root != "" {
		store, err := Open(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(ln.Addr())
		New(store).Serve(context.Background(), ln)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startProcess runs the registry in a child process over root.
func startProcess(t *testing.T, root string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_REGISTRY_TEST_SERVE="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("registry process: %v", err)
	}
	return cmd, strings.TrimSpace(line)
}

// A kill -9 in the middle of a push leaves no visible blob; after a
// restart the client can resume the session from the offset the registry
// reports, or start over, and both give the whole blob.
func TestKillDuringUpload(t *testing.T) {
	root := t.TempDir()
	proc, addr := startProcess(t, root)
	base := "http://" + addr
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	d := digest.FromBytes(data)

	resp, err := http.Post(base+"/v2/crash/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]

	// Stream the blob in a PUT that never finishes: half the bytes, then
	// the process dies.
	pr, pw := io.Pipe()
	go func() {
		req, _ := http.NewRequest("PUT", base+loc+"?digest="+string(d), pr)
		req.ContentLength = int64(len(data))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write(data[:16<<20]); err != nil {
		t.Fatal(err)
	}
	dataFile := filepath.Join(root, uploadsDir, id, "data")
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(dataFile)
		if err == nil && fi.Size() >= 8<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload did not reach the disk: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	proc.Process.Signal(syscall.SIGKILL)
	proc.Wait()
	pw.CloseWithError(io.ErrUnexpectedEOF)

	store, _ := Open(root)
	store.WalkBlobs(func(bd digest.Digest, size int64) error {
		t.Errorf("blob %s (%d bytes) visible after the crash", bd, size)
		return nil
	})

	_, addr = startProcess(t, root)
	base = "http://" + addr
	if resp, _ := http.Head(base + "/v2/crash/blobs/" + string(d)); resp == nil || resp.StatusCode != 404 {
		t.Fatalf("HEAD after restart: %v", resp)
	}
	// Resume where the registry says the upload stands.
	resp, err = http.Get(base + loc)
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("upload status after restart: %v %v", resp, err)
	}
	resp.Body.Close()
	end, err := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("Range"), "0-"))
	if err != nil || end < 8<<20-1 || end >= 16<<20 {
		t.Fatalf("Range after restart %q", resp.Header.Get("Range"))
	}
	off := end + 1
	req, _ := http.NewRequest("PUT", base+loc+"?digest="+string(d), bytes.NewReader(data[off:]))
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, len(data)-1))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("resumed PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/v2/crash/blobs/" + string(d))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("resumed blob differs (%d bytes)", len(got))
	}
	// Starting over in another repository works as well.
	resp, err = http.Post(base+"/v2/crash2/blobs/uploads/?digest="+string(d), "application/octet-stream", bytes.NewReader(data))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("push from scratch: %v %v", resp, err)
	}
	resp.Body.Close()
}
