package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/errdefs"
)

// Faults a registry can throw at a pull. Each test serves the in-memory
// registry through a wrapper that misbehaves in one way, and checks that
// the pull either recovers (transient faults, with fast retries) or fails
// with one clear line naming the reference and the cause, keeping nothing
// unverified.

// fast keeps retry waits short in tests.
var fast = WithRetry(4, time.Millisecond)

// layerDigests returns the layer blob digests of an image pushed as ref.
func layerDigests(t *testing.T, n int64) (*testRegistry, []string) {
	t.Helper()
	reg := newTestRegistry(t)
	src := randomImage(t, n)
	reg.push(t, "test/app:1", src)
	ls, err := src.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var ds []string
	for _, l := range ls {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, h.String())
	}
	return reg, ds
}

// TestPullStatusFaults: each error status, always or a few times.
func TestPullStatusFaults(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		times  int    // how many requests fail; -1 = all
		on     string // path part the fault hits
		ok     bool   // the pull succeeds (after retries)
		class  func(error) bool
		says   string
	}{
		{"401 manifest", 401, -1, "/manifests/", false, errdefs.IsFailedPrecondition, "berth login"},
		{"403 blob", 403, -1, "/blobs/", false, errdefs.IsFailedPrecondition, "403 Forbidden"},
		{"404 manifest", 404, -1, "/manifests/", false, errdefs.IsNotFound, "404 Not Found"},
		{"404 blob", 404, -1, "/blobs/", false, errdefs.IsNotFound, "404 Not Found"},
		{"429 twice", 429, 2, "/blobs/", true, nil, ""},
		{"429 always", 429, -1, "/manifests/", false, errdefs.IsUnavailable, "rate limited"},
		{"500 once", 500, 1, "/manifests/", true, nil, ""},
		{"502 twice", 502, 2, "/blobs/", true, nil, ""},
		{"503 always", 503, -1, "/blobs/", false, errdefs.IsUnavailable, "503 Service Unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg, _ := layerDigests(t, 2)
			var failed atomic.Int32
			reg.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, tt.on) && (tt.times < 0 || int(failed.Load()) < tt.times) {
					failed.Add(1)
					w.Header().Set("Content-Type", "application/json")
					if tt.status == 429 {
						w.Header().Set("Retry-After", "0")
					}
					w.WriteHeader(tt.status)
					fmt.Fprintf(w, `{"errors":[{"code":"TEST","message":"fault %d"}]}`, tt.status)
					return
				}
				next.ServeHTTP(w, r)
			})
			svc := newService(t)
			img, err := Pull(context.Background(), svc, reg.host+"/test/app:1", fast)
			if tt.ok {
				if err != nil {
					t.Fatalf("pull did not recover from %d x %d: %v", tt.times, tt.status, err)
				}
				if img == nil || len(img.ChainIDs) != 2 {
					t.Fatalf("img = %+v", img)
				}
				return
			}
			if err == nil {
				t.Fatal("pull succeeded")
			}
			msg := err.Error()
			if !tt.class(err) || !strings.Contains(msg, tt.says) || !strings.HasPrefix(msg, "pull "+reg.host+"/test/app:1: ") || strings.Contains(msg, "\n") {
				t.Errorf("err = %q, want one line classed by %s saying %q", msg, tt.name, tt.says)
			}
			if tt.status >= 429 && int(failed.Load()) != 4 {
				t.Errorf("%d requests failed, want 4 (retried)", failed.Load())
			}
			if tt.status < 429 && int(failed.Load()) != 1 {
				t.Errorf("%d requests failed, want 1 (no retry for %d)", failed.Load(), tt.status)
			}
			assertEmpty(t, svc)
		})
	}
}

// cutBlob serves a blob but closes the connection after half of it, the
// first times times (or always, -1); Range requests are honoured (as
// distribution does) when ranges is set, ignored otherwise.
func cutBlob(target string, times int, ranges bool, cuts, rangeReqs *atomic.Int32) func(http.Handler, http.ResponseWriter, *http.Request) {
	return func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+target) {
			next.ServeHTTP(w, r)
			return
		}
		rg := r.Header.Get("Range")
		r.Header.Del("Range") // this wrapper does the ranges
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		start := 0
		if rg != "" {
			rangeReqs.Add(1)
			if ranges {
				start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
			}
		}
		part := body[start:]
		w.Header().Set("Content-Length", strconv.Itoa(len(part)))
		if start > 0 {
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		if times < 0 || int(cuts.Load()) < times {
			cuts.Add(1)
			w.Write(part[:len(part)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
				conn.Close()
			}
			return
		}
		w.Write(part)
	}
}

// TestPullResumesCutBlob: a connection closed mid-blob is resumed where
// it stopped (a Range request), whether or not the registry honours Range.
func TestPullResumesCutBlob(t *testing.T) {
	for _, ranges := range []bool{true, false} {
		t.Run(fmt.Sprintf("range=%v", ranges), func(t *testing.T) {
			reg, ds := layerDigests(t, 3)
			var cuts, rangeReqs atomic.Int32
			reg.setWrap(cutBlob(ds[1], 3, ranges, &cuts, &rangeReqs))
			svc := newService(t)
			img, err := Pull(context.Background(), svc, reg.host+"/test/app:1", fast)
			if err != nil {
				t.Fatalf("pull did not survive 3 cut connections: %v", err)
			}
			if cuts.Load() != 3 || rangeReqs.Load() != 3 {
				t.Errorf("cuts %d, range requests %d; want 3 and 3", cuts.Load(), rangeReqs.Load())
			}
			if !svc.Snapshots.Has(img.ChainIDs[2]) {
				t.Error("top layer not unpacked")
			}
			assertVerified(t, svc)
		})
	}
}

// TestPullCutAlwaysThenResume: a blob that never arrives whole fails the
// pull with one line naming it; the blobs that did arrive were verified
// and kept, and the next pull fetches only what is missing.
func TestPullCutAlwaysThenResume(t *testing.T) {
	reg, ds := layerDigests(t, 3)
	var cuts, rangeReqs atomic.Int32
	reg.setWrap(cutBlob(ds[2], -1, true, &cuts, &rangeReqs))
	svc := newService(t)
	_, err := Pull(context.Background(), svc, reg.host+"/test/app:1", fast, WithConcurrency(1))
	if err == nil {
		t.Fatal("pull succeeded with a blob that never arrives whole")
	}
	if msg := err.Error(); !strings.Contains(msg, ds[2]) || !strings.Contains(msg, "broke off") || strings.Contains(msg, "\n") {
		t.Errorf("err = %q, want one line naming %s and the broken download", msg, ds[2])
	}
	assertEmpty(t, svc)
	if _, err := svc.Content.Stat(digest.Digest(ds[2])); err == nil {
		t.Errorf("the incomplete blob %s was stored", ds[2])
	}

	reg.setWrap(nil)
	reg.reset()
	if _, err := Pull(context.Background(), svc, reg.host+"/test/app:1", fast); err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		want := 0
		if i == 2 {
			want = 1
		}
		if n := reg.count("GET", "/blobs/"+d); n != want {
			t.Errorf("second pull fetched layer %d %d times, want %d", i, n, want)
		}
	}
}

// TestPullShortBody: a registry that ends the blob early without an
// error (a short Content-Length) is a truncated transfer, not success.
func TestPullShortBody(t *testing.T) {
	reg, ds := layerDigests(t, 1)
	reg.setWrap(func(next http.Handler, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ds[0]) {
			next.ServeHTTP(w, r)
			return
		}
		r.Header.Del("Range") // always the same short answer
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		b := rec.Body.Bytes()
		b = b[:len(b)-100]
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	svc := newService(t)
	_, err := Pull(context.Background(), svc, reg.host+"/test/app:1", fast)
	if err == nil || !strings.Contains(err.Error(), ds[0]) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("err = %v, want a truncated-transfer error naming %s", err, ds[0])
	}
	assertEmpty(t, svc)
}

// TestPullRegistryDown: nothing listening gives a clear error after the
// retries, not a hang.
func TestPullRegistryDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	svc := newService(t)
	_, err = Pull(context.Background(), svc, addr+"/test/app:1", fast)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want connection refused naming %s", err, addr)
	}
}
