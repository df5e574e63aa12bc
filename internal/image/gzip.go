package image

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// gzipWriter compresses with every core, as pigz does: the input is cut
// into blocks that are deflated independently, each ended by a sync flush
// so the pieces join into one deflate stream, and written in order inside
// a single gzip member. Any gzip reader reads the result; the ratio is
// within a fraction of a percent of one serial stream (no dictionary is
// carried between 1 MiB blocks). Output is a function of the input alone,
// so importing the same tarball twice stores one blob.
//
// Import spends most of its time compressing: with two cores this takes
// it from one core's speed to about 1.5-2 times that (measured on a busy
// two-core machine: 2.9 s with GOMAXPROCS=1, 2.0 s with 2, for 200 MiB of
// /usr/bin).
type gzipWriter struct {
	w     io.Writer
	level int
	block []byte
	crc   uint32
	size  uint32 // input length mod 2^32, as gzip's ISIZE
	sem   chan struct{}
	queue chan chan []byte // compressed blocks, in input order
	done  chan error       // the writer goroutine's result
	err   error
}

const gzipBlock = 1 << 20

var flatePool = sync.Pool{}

func newGzipWriter(w io.Writer, level int) *gzipWriter {
	n := runtime.GOMAXPROCS(0)
	z := &gzipWriter{
		w:     w,
		level: level,
		block: make([]byte, 0, gzipBlock),
		sem:   make(chan struct{}, n),
		queue: make(chan chan []byte, n),
		done:  make(chan error, 1),
	}
	go z.drain()
	return z
}

// drain writes the header, then each block as it completes, in order.
func (z *gzipWriter) drain() {
	// ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=unknown, as Go's gzip.
	_, err := z.w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	for c := range z.queue {
		b := <-c
		if err == nil {
			_, err = z.w.Write(b)
		}
	}
	z.done <- err
}

func (z *gzipWriter) Write(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n := len(p)
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.size += uint32(n)
	for len(p) > 0 {
		k := min(len(p), gzipBlock-len(z.block))
		z.block = append(z.block, p[:k]...)
		p = p[k:]
		if len(z.block) == gzipBlock {
			z.submit()
		}
	}
	return n, nil
}

func (z *gzipWriter) submit() {
	in := z.block
	z.block = make([]byte, 0, gzipBlock)
	c := make(chan []byte, 1)
	z.sem <- struct{}{}
	z.queue <- c
	go func() {
		defer func() { <-z.sem }()
		var out bytes.Buffer
		out.Grow(len(in)/2 + 64)
		fw, _ := flatePool.Get().(*flate.Writer)
		if fw == nil {
			var err error
			if fw, err = flate.NewWriter(&out, z.level); err != nil {
				panic(err) // only for an invalid level, which is a constant here
			}
		} else {
			fw.Reset(&out)
		}
		fw.Write(in) // a bytes.Buffer does not fail
		fw.Flush()   // sync flush: byte-aligned, and not the final block
		flatePool.Put(fw)
		c <- out.Bytes()
	}()
}

// Close writes the last block, the final empty deflate block and the
// trailer. It does not close the underlying writer.
func (z *gzipWriter) Close() error {
	if z.err != nil {
		return z.err
	}
	if len(z.block) > 0 {
		z.submit()
	}
	close(z.queue)
	if err := <-z.done; err != nil {
		z.err = err
		return err
	}
	var tail [10]byte
	tail[0], tail[1] = 0x03, 0x00 // a final, empty block with fixed Huffman codes
	binary.LittleEndian.PutUint32(tail[2:], z.crc)
	binary.LittleEndian.PutUint32(tail[6:], z.size)
	_, err := z.w.Write(tail[:])
	z.err = io.ErrClosedPipe
	if err != nil {
		return err
	}
	return nil
}
