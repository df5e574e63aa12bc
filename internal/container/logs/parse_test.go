package logs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/errdefs"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.FixedZone("X", 2*3600))
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"10m", now.Add(-10 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"-5s", now.Add(5 * time.Second)},
		{"0", time.Unix(0, 0)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"10", time.Unix(10, 0)},
		{"1700000000.5", time.Unix(1700000000, 5e8)},
		{"1700000000.123456789123", time.Unix(1700000000, 123456789)},
		{"2026-11-22T07:31:10Z", time.Date(2026, 11, 22, 7, 31, 10, 0, time.UTC)},
		{"2026-11-22T07:31:10.123456789Z", time.Date(2026, 11, 22, 7, 31, 10, 123456789, time.UTC)},
		{"2026-11-22T07:31:10+01:00", time.Date(2026, 11, 22, 6, 31, 10, 0, time.UTC)},
		{"2026-11-22T07:31:10.5-03:30", time.Date(2026, 11, 22, 11, 1, 10, 5e8, time.UTC)},
		{"2026-11-22T07:31Z", time.Date(2026, 11, 22, 7, 31, 0, 0, time.UTC)},
		{"2026-11-22T07:31+01:00", time.Date(2026, 11, 22, 6, 31, 0, 0, time.UTC)},
		{"2026-11-22T07Z", time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)},
		{"2026-11-22Z", time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)},
		// Without a zone: in now's location.
		{"2026-11-22", time.Date(2026, 11, 22, 0, 0, 0, 0, now.Location())},
		{"2026-11-22T07:31:10", time.Date(2026, 11, 22, 7, 31, 10, 0, now.Location())},
		{"2026-11-22T07:31:10.25", time.Date(2026, 11, 22, 7, 31, 10, 25e7, now.Location())},
		{"2026-11-22T07:31", time.Date(2026, 11, 22, 7, 31, 0, 0, now.Location())},
		{"2026-11-22T07", time.Date(2026, 11, 22, 7, 0, 0, 0, now.Location())},
	} {
		got, err := ParseTime(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"yesterday", "10y", "1e9", "10x", "2026-13-01", "2026-11-22T25:00:00Z", "1700000000.", "1.2.3", "2026-11-22 07:31:10", "abc.def"} {
		_, err := ParseTime(bad, now)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseTime(%q): %v, want invalid argument naming the value", bad, err)
		}
	}
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		want rec
	}{
		{`{"log":"hi\n","stream":"stdout","time":"2026-11-22T07:31:10.123456789Z"}`, true,
			rec{Stdout, time.Date(2026, 11, 22, 7, 31, 10, 123456789, time.UTC), "hi\n"}},
		{`{"log":"","stream":"stderr","time":"2026-11-22T07:31:10Z"}`, true,
			rec{Stderr, time.Date(2026, 11, 22, 7, 31, 10, 0, time.UTC), ""}},
		{`{"log":"\u00e9\"\\\/\b\f\r\t","stream":"stdout","time":"2026-11-22T07:31:10.1Z"}`, true,
			rec{Stdout, time.Date(2026, 11, 22, 7, 31, 10, 1e8, time.UTC), "é\"\\/\b\f\r\t"}},
		{`{"log":"\ud800","stream":"stdout","time":"2026-11-22T07:31:10Z"}`, true,
			rec{Stdout, time.Date(2026, 11, 22, 7, 31, 10, 0, time.UTC), "\ufffd"}},
		{"{\"log\":\"\xff\",\"stream\":\"stdout\",\"time\":\"2026-11-22T07:31:10Z\"}", true,
			rec{Stdout, time.Date(2026, 11, 22, 7, 31, 10, 0, time.UTC), "\ufffd"}},
		{`{"log":"x","stream":"stdout","time":"2026-11-22T07:31:10.1234567891Z"}`, true,
			rec{Stdout, time.Date(2026, 11, 22, 7, 31, 10, 123456789, time.UTC), "x"}},
		{`{"log":"x","stream":"stdout","time":"2024-02-29T00:00:00Z"}`, true,
			rec{Stdout, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "x"}},
		{`{"log":"x","stream":"stdout","time":"2026-02-29T00:00:00Z"}`, false, rec{}},
		{`{"log":"x","stream":"stdout","time":"2026-11-22T24:00:00Z"}`, false, rec{}},
		{`{"log":"x","stream":"stdout","time":"2026-11-22T07:31:60Z"}`, false, rec{}},
		{`{"log":"x","stream":"stdout","time":"2026-11-22T07:31:10"}`, false, rec{}},
		{`{"log":null,"stream":"stdout","time":"2026-11-22T07:31:10Z"}`, false, rec{}},
		{`{"log":"x","stream":"stdout","time":"2026-11-22T07:31:10Z"} x`, false, rec{}},
		{`{"log":"x\q","stream":"stdout","time":"2026-11-22T07:31:10Z"}`, false, rec{}},
	} {
		var e Entry
		var scratch []byte
		ok := parseLine([]byte(tc.line), &e, &scratch)
		got := rec{e.Stream, e.Time, string(e.Log)}
		if ok != tc.ok || (ok && (got.Stream != tc.want.Stream || !got.Time.Equal(tc.want.Time) || got.Log != tc.want.Log)) {
			t.Errorf("parseLine(%s) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
		checkAgainstJSON(t, []byte(tc.line))
	}
}

// checkAgainstJSON fails when the hand parser and encoding/json disagree
// about line.
func checkAgainstJSON(t *testing.T, line []byte) {
	t.Helper()
	var fast, slow Entry
	var s1, s2 []byte
	okFast := parseLine(line, &fast, &s1)
	okSlow := parseSlow(line, &slow, &s2)
	if okFast != okSlow {
		t.Fatalf("%q: parseLine says %v, encoding/json %v", line, okFast, okSlow)
	}
	if okFast && (fast.Stream != slow.Stream || !fast.Time.Equal(slow.Time) || !bytes.Equal(fast.Log, slow.Log) ||
		fast.Time.Location() != time.UTC || slow.Time.Location() != time.UTC) {
		t.Fatalf("%q: parseLine %v %v %q, encoding/json %v %v %q", line,
			fast.Stream, fast.Time, fast.Log, slow.Stream, slow.Time, slow.Log)
	}
}

// FuzzRead checks the line parser against encoding/json, then Read over
// the input as a whole log file against the reference: every complete
// line, no longer than the cap, that encoding/json makes an entry of.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		`{"log":"hello\n","stream":"stdout","time":"2026-11-22T07:31:10.123456789Z"}` + "\n",
		`{"log":"a\u003cb\"c\\\n","stream":"stderr","time":"2026-11-22T07:31:10Z"}` + "\n" + `{"log":"par`,
		`{"log":"\ud83d\ude00","stream":"stdout","time":"2026-11-22T07:31:10+01:00"}` + "\n",
		`{"time":"2026-11-22T07:31:10.5Z","stream":"stdout","log":"x"}` + "\n\n{}\nnot json\n",
		"{\"log\":\"\xc3\x28\",\"stream\":\"stdout\",\"time\":\"2026-02-29T00:00:00Z\"}\n",
		`{"log":"x","stream":"stdout","time":"2026-11-22T07:31:10,5Z"}` + "\n",
		`{"LOG":"x","Stream":"stdout","time":"2026-11-22T07:31:10.1234567891Z","log":"y"}` + "\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir() // one file, rewritten: a directory per input halves the rate
	f.Fuzz(func(t *testing.T, data []byte) {
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			checkAgainstJSON(t, line)
		}

		var want []string
		lines := bytes.Split(data, []byte("\n"))
		for _, line := range lines[:len(lines)-1] { // the last has no newline
			var e Entry
			var s []byte
			if len(line) <= maxLine && parseSlow(line, &e, &s) {
				want = append(want, e.Stream+" "+e.Time.Format(time.RFC3339Nano)+" "+string(e.Log))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, id+"-json.log"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tail := range []int{-1, 0, 1, 2} {
			var got []string
			err := Read(context.Background(), dir, id, ReadOpts{Tail: tail}, func(e Entry) error {
				got = append(got, e.Stream+" "+e.Time.Format(time.RFC3339Nano)+" "+string(e.Log))
				return nil
			})
			w := want
			if tail >= 0 {
				w = want[len(want)-min(tail, len(want)):]
			}
			if err != nil || !slices.Equal(got, w) {
				t.Fatalf("tail %d: got %q, %v; want %q", tail, got, err, w)
			}
		}
	})
}
