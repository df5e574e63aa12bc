package runtime_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConsoleReceiver is a helper process for TestConsoleSocket: it plays
// the caller's side of --console-socket, receiving the terminal's master
// and printing what the container writes to it.
func TestConsoleReceiver(t *testing.T) {
	path := os.Getenv("BERTH_CONSOLE_RECEIVER")
	if path == "" {
		t.Skip("helper process only")
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	uc := c.(*net.UnixConn)
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	fds, _ := unix.ParseUnixRights(&msgs[0])
	master := os.NewFile(uintptr(fds[0]), "master")
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	for !strings.Contains(got.String(), "\n") {
		n, err := master.Read(buf)
		if err != nil {
			break
		}
		got.Write(buf[:n])
	}
	fmt.Print(got.String())
}
