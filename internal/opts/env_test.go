package opts

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/errdefs"
)

func lookupIn(env map[string]string) LookupFunc {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestParseEnvFile(t *testing.T) {
	lookup := lookupIn(map[string]string{"HOSTVAR": "from host", "EMPTY": ""})
	tests := []struct {
		name string
		in   string
		want []string
		err  string
	}{
		{name: "plain", in: "A=1\nB=two words\n", want: []string{"A=1", "B=two words"}},
		{name: "verbatim", in: `Q="quoted"` + "\nS='single'\nT=trailing  \nU=a=b\nV=\n",
			want: []string{`Q="quoted"`, "S='single'", "T=trailing  ", "U=a=b", "V="}},
		{name: "comments and blanks", in: "# a comment\n\n   \n\t# indented comment\nA=1\n", want: []string{"A=1"}},
		{name: "leading whitespace", in: "   A=1\n\tB=2", want: []string{"A=1", "B=2"}},
		{name: "crlf", in: "A=1\r\nB=2\r\n", want: []string{"A=1", "B=2"}}, // bufio drops the \r, as in Docker
		{name: "bom", in: "\xEF\xBB\xBFA=1\n", want: []string{"A=1"}},
		{name: "from host", in: "HOSTVAR\nEMPTY\nUNSET\n", want: []string{"HOSTVAR=from host", "EMPTY="}},
		{name: "empty file", in: "", want: []string{}},
		{name: "hash inside", in: "A=1 # not a comment\n", want: []string{"A=1 # not a comment"}},
		{name: "space in name", in: "A=1\nMY VAR=2\n", err: `line 2: variable "MY VAR" contains whitespace`},
		{name: "trailing space in name", in: "A =1\n", err: `line 1: variable "A " contains whitespace`},
		{name: "bare name with space", in: "# c\n\nA B\n", err: `line 3: variable "A B" contains whitespace`},
		{name: "no name", in: "A=1\n=2\n", err: "line 2 has no variable name"},
		{name: "invalid utf8", in: "A=1\nB=\xff\n", err: "line 2 is not valid UTF-8"},
		{name: "long line", in: "A=1\nB=" + strings.Repeat("x", 70000) + "\n", err: "line 2 is longer than 64 KiB"},
	}
	for _, tt := range tests {
		got, err := ParseEnvFile(strings.NewReader(tt.in), lookup)
		if tt.err != "" {
			if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: ParseEnvFile = %q, %v; want an error with %q", tt.name, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: ParseEnvFile = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}

	got, err := ParseEnvFile(strings.NewReader("A=1\nHOSTVAR\n"), nil)
	if err != nil || !reflect.DeepEqual(got, []string{"A=1"}) {
		t.Errorf("nil lookup: %q, %v; want bare names dropped", got, err)
	}
}

func TestParseEnv(t *testing.T) {
	lookup := lookupIn(map[string]string{"HOSTVAR": "h", "EMPTY": ""})
	got, err := ParseEnv([]string{"A=1", "B=", "HOSTVAR", "EMPTY", "UNSET", "C=x=y", `D="q"`, "with space=ok"}, lookup)
	want := []string{"A=1", "B=", "HOSTVAR=h", "EMPTY=", "UNSET", "C=x=y", `D="q"`, "with space=ok"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseEnv = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"=x", "", "="} {
		if _, err := ParseEnv([]string{bad}, lookup); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseEnv(%q) error = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	engine := []string{"PATH=/usr/bin", "HOSTNAME=abc"}
	tests := []struct {
		name        string
		image, user []string
		want        []string
	}{
		{name: "nothing", want: []string{"PATH=/usr/bin", "HOSTNAME=abc"}},
		{name: "image only", image: []string{"PATH=/opt/bin:/usr/bin", "LANG=C"},
			want: []string{"PATH=/opt/bin:/usr/bin", "HOSTNAME=abc", "LANG=C"}},
		{name: "user overrides image", image: []string{"A=image", "B=image"}, user: []string{"B=user", "C=user"},
			want: []string{"PATH=/usr/bin", "HOSTNAME=abc", "B=user", "C=user", "A=image"}},
		{name: "bare key unsets the image's", image: []string{"A=image", "B=image"}, user: []string{"A"},
			want: []string{"PATH=/usr/bin", "HOSTNAME=abc", "B=image"}},
		{name: "bare key unsets the engine's", user: []string{"HOSTNAME"}, want: []string{"PATH=/usr/bin"}},
		{name: "bare key alone vanishes", user: []string{"NOPE"}, want: []string{"PATH=/usr/bin", "HOSTNAME=abc"}},
		{name: "last value wins", user: []string{"A=1", "A=2"}, want: []string{"PATH=/usr/bin", "HOSTNAME=abc", "A=2"}},
		{name: "set then unset", user: []string{"A=1", "A"}, want: []string{"PATH=/usr/bin", "HOSTNAME=abc"}},
		{name: "unset then set", user: []string{"PATH", "PATH=/x"}, want: []string{"PATH=/x", "HOSTNAME=abc"}},
		{name: "empty value kept", user: []string{"A="}, want: []string{"PATH=/usr/bin", "HOSTNAME=abc", "A="}},
	}
	for _, tt := range tests {
		engineCopy := append([]string{}, engine...)
		got := MergeEnv(engineCopy, tt.image, tt.user)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: MergeEnv = %q, want %q", tt.name, got, tt.want)
		}
		if !reflect.DeepEqual(engineCopy, engine) {
			t.Errorf("%s: MergeEnv changed its engine argument to %q", tt.name, engineCopy)
		}
	}
}

func TestParseLabels(t *testing.T) {
	file, err := ParseLabelFile(strings.NewReader("# labels\ncom.example.a=1\nbare\ncom.example.b=x y\n"))
	if err != nil || !reflect.DeepEqual(file, []string{"com.example.a=1", "com.example.b=x y"}) {
		t.Fatalf("ParseLabelFile = %q, %v", file, err)
	}
	got, err := ParseLabels(append(file, "com.example.a=2", "flag", "empty=", "eq=a=b"))
	want := map[string]string{"com.example.a": "2", "com.example.b": "x y", "flag": "", "empty": "", "eq": "a=b"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseLabels = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "=v", "  =v", "a b=c", "a\tb"} {
		if _, err := ParseLabels([]string{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseLabels(%q) error = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if _, err := ParseLabelFile(strings.NewReader("a b=c\n")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ParseLabelFile with a space in a name: %v", err)
	}
}
