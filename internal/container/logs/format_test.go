package logs

import (
	"strings"
	"testing"
	"time"
)

func TestFormatter(t *testing.T) {
	at := time.Date(2026, 11, 22, 7, 31, 10, 5e8, time.FixedZone("X", 3600))
	entries := []Entry{
		{Stdout, at, []byte("one\n")},
		{Stderr, at, []byte("err part ")}, // a line split at 16 KiB...
		{Stdout, at, []byte("two\n")},     // ...with stdout in between
		{Stderr, at, []byte("end\n")},
	}
	for _, tc := range []struct {
		timestamps       bool
		stdout, combined string
	}{
		{false, "one\ntwo\n", "one\nerr part two\nend\n"},
		{true,
			"2026-11-22T06:31:10.500000000Z one\n2026-11-22T06:31:10.500000000Z two\n",
			"2026-11-22T06:31:10.500000000Z one\n2026-11-22T06:31:10.500000000Z err part " +
				"2026-11-22T06:31:10.500000000Z two\nend\n"},
	} {
		var stdout, stderr, combined strings.Builder
		sep := Formatter{Stdout: &stdout, Stderr: &stderr, Timestamps: tc.timestamps}
		one := Formatter{Stdout: &combined, Stderr: &combined, Timestamps: tc.timestamps}
		for _, e := range entries {
			if err := sep.Write(e); err != nil {
				t.Fatal(err)
			}
			one.Write(e)
		}
		if stdout.String() != tc.stdout {
			t.Errorf("timestamps %v: stdout %q, want %q", tc.timestamps, stdout.String(), tc.stdout)
		}
		if combined.String() != tc.combined {
			t.Errorf("timestamps %v: combined %q, want %q", tc.timestamps, combined.String(), tc.combined)
		}
	}
	// A nil writer drops its stream.
	var out strings.Builder
	f := Formatter{Stdout: &out}
	for _, e := range entries {
		if err := f.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != "one\ntwo\n" {
		t.Errorf("stdout only: %q", out.String())
	}
}
