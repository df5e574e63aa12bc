package mount

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   []string
		want Options
	}{
		{in: nil, want: Options{}},
		{in: []string{"ro", "nosuid", "nodev"}, want: Options{Flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV}},
		{in: []string{"ro", "rw"}, want: Options{}},
		{in: []string{"nosuid", "suid", "noexec"}, want: Options{Flags: unix.MS_NOEXEC}},
		{in: []string{"rbind", "ro"}, want: Options{Flags: unix.MS_RDONLY, Bind: true, Recursive: true}},
		{in: []string{"bind"}, want: Options{Bind: true}},
		{in: []string{"rslave", "private"}, want: Options{Propagation: []uintptr{unix.MS_SLAVE | unix.MS_REC, unix.MS_PRIVATE}}},
		{in: []string{"size=64m", "mode=755", "lowerdir=/a:/b"}, want: Options{Data: []string{"size=64m", "mode=755", "lowerdir=/a:/b"}}},
		{in: []string{"defaults"}, want: Options{}},
	}
	for _, tt := range tests {
		if got := Parse(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	if got := Parse([]string{"size=1m", "mode=1777"}).DataString(); got != "size=1m,mode=1777" {
		t.Errorf("DataString = %q", got)
	}
}
