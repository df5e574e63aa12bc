package cli

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/berth-dev/berth/internal/registry"
)

// progressLines shows a pull's or push's per-layer status as Docker does:
// on a terminal, one line per layer redrawn in place with a bar while it
// transfers; otherwise one plain line per change of status, without the
// byte counts (logs and CI keep no carriage returns).
type progressLines struct {
	w   *os.File
	tty bool

	mu    sync.Mutex
	order []string       // layer IDs, in the order their lines were printed
	index map[string]int // ID -> line
	last  map[string]string
}

func newProgressLines(w *os.File) *progressLines {
	return &progressLines{w: w, tty: term.IsTerminal(int(w.Fd())), index: map[string]int{}, last: map[string]string{}}
}

// pullEvent and pushEvent are registry.WithProgress callbacks.
func (p *progressLines) pullEvent(e registry.Event) {
	switch e.Status {
	case registry.StatusResolving, registry.StatusDigest:
		return // the verb prints these itself
	}
	p.show(e)
}

func (p *progressLines) show(e registry.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	transferring := e.Total > 0
	if !p.tty {
		if transferring || p.last[e.ID] == e.Status {
			return
		}
		p.last[e.ID] = e.Status
		fmt.Fprintf(p.w, "%s: %s\n", e.ID, e.Status)
		return
	}
	line := e.ID + ": " + e.Status
	if transferring {
		line += " " + progressBar(e.Current, e.Total)
	}
	i, ok := p.index[e.ID]
	if !ok {
		p.index[e.ID] = len(p.order)
		p.order = append(p.order, e.ID)
		fmt.Fprintf(p.w, "%s\n", line)
		return
	}
	// Up to the layer's line, rewrite it, back down below the last line.
	up := len(p.order) - i
	fmt.Fprintf(p.w, "\x1b[%dA\r\x1b[K%s\r\x1b[%dB", up, line, up)
}

// progressBar is Docker's "[=====>      ]  12.3MB/60MB".
func progressBar(cur, total int64) string {
	const width = 50
	done := int(cur * width / total)
	if done > width {
		done = width
	}
	bar := strings.Repeat("=", done)
	if done < width {
		bar += ">" + strings.Repeat(" ", width-done-1)
	}
	return fmt.Sprintf("[%s] %8s/%s", bar, humanSize(cur), humanSize(total))
}

// finish ends the display; the lines stay as drawn.
func (p *progressLines) finish() {}
