// Command regload is the small-manifest load generator of
// bench/registry-server.sh: many clients pulling small images from one
// registry at once, as a fleet of nodes starting the same service would.
//
// It speaks plain HTTP to one registry on loopback and needs nothing but
// the standard library, so it measures a berth registry and a
// docker-registry alike.
//
// Two modes:
//
//	regload -addr 127.0.0.1:5000 -repo bench/small -setup 100
//	    pushes 100 small images, tags t0..t99 of bench/small: each an OCI
//	    manifest naming a config and one gzip layer of its own (about 1 KiB
//	    together), uploaded as POST + PUT ?digest= (what every registry
//	    implements), then the manifest by tag.
//
//	regload -addr 127.0.0.1:5000 -repo bench/small -tags 100 -n 1000 -c 16 [-blobs]
//	    -c clients (goroutines, each with its own keep-alive connection)
//	    share -n pulls between them; pull k asks for tag t(k mod -tags).
//	    A pull is one GET of the manifest by tag, with the Accept header
//	    docker sends, whose body must hash to the Docker-Content-Digest the
//	    registry answered before the clock started; with -blobs it is also
//	    followed by GETs of the config and the layer, each checked against
//	    its digest. Prints one line of key=value pairs:
//
//	    pulls=1000 requests=3000 clients=16 seconds=0.214 rps=14018
//	    pulls_per_s=4673 p50_ms=0.95 p99_ms=3.80 pull_p50_ms=3.1
//	    pull_p99_ms=7.9 errors=0
//
//	    p50/p99 are per request; pull_p50/pull_p99 per pull (equal to the
//	    former without -blobs). The exit status is 1 if any request failed
//	    or any digest did not match.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// accept is what docker 20.10 sends when it pulls by tag.
const accept = "application/vnd.docker.distribution.manifest.v2+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, " +
	"application/vnd.oci.image.index.v1+json, " +
	"application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.v1+prettyjws, " +
	"application/json"

func main() {
	var (
		addr  = flag.String("addr", "127.0.0.1:5000", "registry address (host:port, plain HTTP)")
		repo  = flag.String("repo", "bench/small", "repository")
		setup = flag.Int("setup", 0, "push this many small images (tags t0..tN-1) and exit")
		tags  = flag.Int("tags", 100, "pull tags t0..tN-1 (as pushed by -setup)")
		n     = flag.Int("n", 1000, "pulls in all")
		c     = flag.Int("c", 16, "concurrent clients")
		blobs = flag.Bool("blobs", false, "a pull also GETs the config and the layer")
		tmo   = flag.Duration("timeout", 30*time.Second, "per-request timeout")
	)
	flag.Parse()
	base := "http://" + *addr
	var err error
	if *setup > 0 {
		err = push(newClient(*tmo), base, *repo, *setup)
	} else {
		err = load(base, *repo, *tags, *n, *c, *blobs, *tmo)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "regload:", err)
		os.Exit(1)
	}
}

// newClient: one connection kept alive, as one client process would have.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// --- setup -------------------------------------------------------------------

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

// smallImage: image i's layer (a gzip tar of one file), config, manifest.
func smallImage(i int) (layer, config, manifest []byte, err error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte(fmt.Sprintf("small image %d\n%s", i, strings.Repeat("x", 512)))
	if err = tw.WriteHeader(&tar.Header{Name: "etc/small", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return
	}
	if _, err = tw.Write(body); err != nil {
		return
	}
	if err = tw.Close(); err != nil {
		return
	}
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	if _, err = gw.Write(tb.Bytes()); err != nil {
		return
	}
	if err = gw.Close(); err != nil {
		return
	}
	layer = gb.Bytes()
	config, err = json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"sh"}, "Labels": map[string]string{"bench.index": fmt.Sprint(i)}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digestOf(tb.Bytes())}},
	})
	if err != nil {
		return
	}
	manifest, err = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{"application/vnd.oci.image.config.v1+json", digestOf(config), len(config)},
		"layers":        []descriptor{{"application/vnd.oci.image.layer.v1.tar+gzip", digestOf(layer), len(layer)}},
	})
	return
}

func push(cl *http.Client, base, repo string, count int) error {
	for i := range count {
		layer, config, manifest, err := smallImage(i)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{layer, config} {
			if err := pushBlob(cl, base, repo, b); err != nil {
				return fmt.Errorf("push blob of image %d: %w", i, err)
			}
		}
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v2/%s/manifests/t%d", base, repo, i), bytes.NewReader(manifest))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if err := do(cl, req, http.StatusCreated); err != nil {
			return fmt.Errorf("push manifest t%d: %w", i, err)
		}
	}
	return nil
}

func pushBlob(cl *http.Client, base, repo string, b []byte) error {
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/", base, repo), nil)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("POST: %w", err)
	}
	q := loc.Query()
	q.Set("digest", digestOf(b))
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	return do(cl, req, http.StatusCreated)
}

func do(cl *http.Client, req *http.Request, want int) error {
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// --- load ---------------------------------------------------------------------

// target: what one tag's pull fetches, learnt before the clock starts.
type target struct {
	tag, digest   string
	config, layer string // blob digests
}

func load(base, repo string, ntags, n, c int, blobs bool, tmo time.Duration) error {
	if ntags < 1 || n < 1 || c < 1 {
		return errors.New("-tags, -n and -c must be at least 1")
	}
	cl := newClient(tmo)
	targets := make([]target, ntags)
	for i := range targets {
		t := &targets[i]
		t.tag = fmt.Sprintf("t%d", i)
		b, dg, err := getManifest(cl, base, repo, t.tag)
		if err != nil {
			return err
		}
		var m struct {
			Config descriptor
			Layers []descriptor
		}
		if err := json.Unmarshal(b, &m); err != nil || len(m.Layers) != 1 {
			return fmt.Errorf("manifest %s: not one config and one layer", t.tag)
		}
		t.digest, t.config, t.layer = dg, m.Config.Digest, m.Layers[0].Digest
	}

	perReq := make([][]time.Duration, c)
	perPull := make([][]time.Duration, c)
	var next, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	clients := make([]*http.Client, c)
	for i := range clients {
		clients[i] = newClient(tmo)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := clients[w]
			for {
				k := next.Add(1) - 1
				if k >= int64(n) {
					return
				}
				t := &targets[k%int64(ntags)]
				p0 := time.Now()
				b, dg, err := getManifest(cl, base, repo, t.tag)
				p1 := time.Now()
				perReq[w] = append(perReq[w], p1.Sub(p0))
				if err == nil && (dg != t.digest || digestOf(b) != t.digest) {
					err = fmt.Errorf("manifest %s: got %s, want %s", t.tag, digestOf(b), t.digest)
				}
				if err != nil {
					fail(err)
					continue
				}
				if blobs {
					for _, d := range []string{t.config, t.layer} {
						b0 := time.Now()
						err := getBlob(cl, base, repo, d)
						perReq[w] = append(perReq[w], time.Since(b0))
						if err != nil {
							fail(err)
						}
					}
				}
				perPull[w] = append(perPull[w], time.Since(p0))
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	reqs, pulls := slices.Concat(perReq...), slices.Concat(perPull...)
	fmt.Printf("pulls=%d requests=%d clients=%d seconds=%.3f rps=%.0f pulls_per_s=%.0f p50_ms=%.2f p99_ms=%.2f pull_p50_ms=%.2f pull_p99_ms=%.2f errors=%d\n",
		n, len(reqs), c, secs, float64(len(reqs))/secs, float64(n)/secs,
		ms(quantile(reqs, 0.50)), ms(quantile(reqs, 0.99)),
		ms(quantile(pulls, 0.50)), ms(quantile(pulls, 0.99)), failed.Load())
	if firstErr != nil {
		return fmt.Errorf("%d failed; first: %w", failed.Load(), firstErr)
	}
	return nil
}

func getManifest(cl *http.Client, base, repo, ref string) (body []byte, digest string, err error) {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v2/%s/manifests/%s", base, repo, url.PathEscape(ref)), nil)
	req.Header.Set("Accept", accept)
	resp, err := cl.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET manifest %s: %s", ref, resp.Status)
	}
	return body, resp.Header.Get("Docker-Content-Digest"), nil
}

func getBlob(cl *http.Client, base, repo, digest string) error {
	resp, err := cl.Get(fmt.Sprintf("%s/v2/%s/blobs/%s", base, repo, digest))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: %s", digest, resp.Status)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("GET blob %s: content hashes to %s", digest, got)
	}
	return nil
}

// quantile: nearest-rank quantile of d (sorted in place).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(q*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
