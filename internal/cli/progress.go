package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// progressReader reports how much of a long input (load, import) has been
// read: a bar redrawn in place on a terminal, a plain line every few
// seconds otherwise (logs and CI keep no carriage returns).
type progressReader struct {
	r     io.Reader
	n     atomic.Int64
	total int64 // 0 when unknown (stdin)
	label string
	w     *os.File
	tty   bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

// newProgress starts reporting reads of r to w (nil w: no reporting).
func newProgress(r io.Reader, total int64, label string, w *os.File) *progressReader {
	p := &progressReader{r: r, total: total, label: label, w: w, stop: make(chan struct{})}
	if w == nil {
		return p
	}
	p.tty = term.IsTerminal(int(w.Fd()))
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw(false)
			case <-p.stop:
				return
			}
		}
	}()
	return p
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	return n, err
}

func (p *progressReader) draw(final bool) {
	n := p.n.Load()
	if !p.tty {
		if final {
			return // the command's own result line says it is done
		}
		if p.total > 0 {
			fmt.Fprintf(p.w, "%s: %s of %s (%d%%)\n", p.label, humanSize(n), humanSize(p.total), n*100/p.total)
		} else {
			fmt.Fprintf(p.w, "%s: %s\n", p.label, humanSize(n))
		}
		return
	}
	line := fmt.Sprintf("%s %s", p.label, humanSize(n))
	if p.total > 0 {
		const width = 40
		done := int(n * width / p.total)
		if done > width {
			done = width
		}
		bar := strings.Repeat("=", done)
		if done < width {
			bar += ">" + strings.Repeat(" ", width-done-1)
		}
		line = fmt.Sprintf("%s [%s] %s/%s", p.label, bar, humanSize(n), humanSize(p.total))
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s%s", line, end)
}

// done stops reporting; on a terminal it leaves the final bar drawn.
func (p *progressReader) done() {
	if p.w == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.draw(true)
}
