package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that stops sending its body mid-way (slowloris) is cut off
// after the I/O timeout, and its partial chunk is not kept.
func TestStalledBodyIsDropped(t *testing.T) {
	addr := startServer(t, WithIOTimeout(300*time.Millisecond))
	resp, err := http.Post("http://"+addr+"/v2/slow/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n%s", loc, addr, strings.Repeat("x", 10))
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The server answers (or just closes) once the body stalls.
	br := bufio.NewReader(conn)
	if r, err := http.ReadResponse(br, nil); err == nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode < 400 {
			t.Errorf("stalled body: status %d", r.StatusCode)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("stalled client held for %v", el)
	}
	resp, err = http.Get("http://" + addr + loc)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Range") != "0-0" {
		t.Errorf("after the stall: %d Range %q, want 204 0-0", resp.StatusCode, resp.Header.Get("Range"))
	}
}
