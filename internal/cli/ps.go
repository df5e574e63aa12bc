package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// printProcTable prints the container's processes from /proc, so `ps`
// needs no host ps binary (whose output is no API).
func printProcTable(w io.Writer, pids []int) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "UID\tPID\tPPID\tSTAT\tCMD")
	for _, pid := range pids {
		base := "/proc/" + strconv.Itoa(pid)
		stat, err := os.ReadFile(base + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		uid := "?"
		if status, err := os.ReadFile(base + "/status"); err == nil {
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "Uid:"); ok {
					if fs := strings.Fields(v); len(fs) > 0 {
						uid = fs[0]
					}
				}
			}
		}
		cmd, _ := os.ReadFile(base + "/cmdline")
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if cmdline == "" {
			cmdline = "[" + s[strings.IndexByte(s, '(')+1:i] + "]"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", uid, pid, f[1], f[0], cmdline)
	}
	return tw.Flush()
}
