package opts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/berth-dev/berth/internal/errdefs"
)

// LookupFunc finds a variable of the user's environment; os.LookupEnv is
// the one the CLI passes.
type LookupFunc func(key string) (value string, ok bool)

// ParseEnv reads -e/--env values as Docker's client does. "KEY=VALUE" is
// kept verbatim, quotes and all. A bare "KEY" takes KEY's value from
// lookup; when KEY is not set there it stays bare, which Docker reads as
// "unset KEY": MergeEnv then removes it from the image's environment too,
// and never passes a bare entry to the process. Names are not otherwise
// checked, as in Docker: the program in the container decides what a
// valid name is.
func ParseEnv(values []string, lookup LookupFunc) ([]string, error) {
	out := make([]string, 0, len(values))
	for _, v := range values {
		key, _, hasValue := strings.Cut(v, "=")
		if key == "" {
			return nil, fmt.Errorf("invalid environment variable %q: the name is empty, write KEY=VALUE or KEY: %w", v, errdefs.ErrInvalidArgument)
		}
		if !hasValue && lookup != nil {
			if val, ok := lookup(key); ok {
				v = key + "=" + val
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// ParseEnvFile reads an --env-file with Docker's rules: one KEY=VALUE per
// line, kept verbatim (no quote removal, no interpolation, trailing spaces
// are part of the value); leading whitespace, blank lines and lines
// starting with "#" are skipped; a bare "KEY" takes its value from lookup
// and is dropped when lookup does not have it (nil lookup drops them all).
// A name with whitespace, a line with no name, invalid UTF-8 and lines
// over 64 KiB are errors naming the line.
func ParseEnvFile(r io.Reader, lookup LookupFunc) ([]string, error) {
	return parseKVFile(r, lookup, "env file")
}

// ParseLabelFile reads a --label-file: the format of ParseEnvFile, except
// that a bare "KEY" is dropped, as Docker does (it looks nothing up). Pass
// the result, then the -l values, to ParseLabels.
func ParseLabelFile(r io.Reader) ([]string, error) {
	return parseKVFile(r, nil, "label file")
}

// ParseLabels turns -l/--label values (and ParseLabelFile's lines) into a
// map. "KEY=VALUE" sets KEY; a bare "KEY" sets it to the empty string; a
// later value for a key replaces an earlier one.
func ParseLabels(values []string) (map[string]string, error) {
	labels := make(map[string]string, len(values))
	for _, v := range values {
		key, val, _ := strings.Cut(v, "=")
		// Docker checks the name with leading whitespace trimmed but keeps
		// the value as typed.
		trimmed := strings.TrimLeft(key, " \t")
		if trimmed == "" {
			return nil, fmt.Errorf("invalid label %q: the name is empty, write KEY=VALUE: %w", v, errdefs.ErrInvalidArgument)
		}
		if strings.ContainsAny(trimmed, " \t") {
			return nil, fmt.Errorf("invalid label %q: the name contains whitespace: %w", v, errdefs.ErrInvalidArgument)
		}
		labels[key] = val
	}
	return labels, nil
}

// maxLine is bufio.Scanner's default, which is Docker's limit too.
const maxLine = bufio.MaxScanTokenSize

// parseKVFile is docker/cli's pkg/kvfile.
func parseKVFile(r io.Reader, lookup LookupFunc, what string) ([]string, error) {
	out := []string{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 4096), maxLine)
	line := 0
	for s.Scan() {
		line++
		b := s.Bytes()
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("reading %s: line %d is not valid UTF-8: %w", what, line, errdefs.ErrInvalidArgument)
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF}) // a byte order mark
		}
		// Only leading whitespace goes: trailing whitespace is part of the value.
		text := strings.TrimLeftFunc(string(b), unicode.IsSpace)
		if text == "" || text[0] == '#' {
			continue
		}
		key, _, hasValue := strings.Cut(text, "=")
		if key == "" {
			return nil, fmt.Errorf("reading %s: line %d has no variable name: write KEY=VALUE: %w", what, line, errdefs.ErrInvalidArgument)
		}
		if strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("reading %s: line %d: variable %q contains whitespace: %w", what, line, key, errdefs.ErrInvalidArgument)
		}
		if hasValue {
			out = append(out, text)
			continue
		}
		if lookup != nil {
			if val, ok := lookup(key); ok {
				out = append(out, key+"="+val)
			}
		}
	}
	if err := s.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("reading %s: line %d is longer than %d KiB: %w", what, line+1, maxLine>>10, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return out, nil
}

// MergeEnv builds a container process's environment the way Docker's
// daemon does. engine holds the variables the engine sets (PATH, HOSTNAME,
// TERM with a tty), image the image config's Env, user the --env-file
// lines followed by the -e values (ParseEnvFile, then ParseEnv).
//
// The user's variables replace the image's of the same name, and both
// replace the engine's in place; the order is the engine's, then the
// user's, then the image's that remain. A bare "KEY" from the user unsets
// KEY, hiding the image's and the engine's value. Unlike Docker, a name
// given twice keeps only its last value instead of appearing twice.
func MergeEnv(engine, image, user []string) []string {
	// Docker's merge of the container config with the image's: the user's
	// entries, then the image's whose name the user did not mention.
	mentioned := make(map[string]bool, len(user))
	for _, e := range user {
		k, _, _ := strings.Cut(e, "=")
		mentioned[k] = true
	}
	config := append([]string{}, user...)
	for _, e := range image {
		if k, _, _ := strings.Cut(e, "="); !mentioned[k] {
			config = append(config, e)
		}
	}

	// Docker's ReplaceOrAppendEnvValues(engine, config).
	out := append([]string{}, engine...)
	index := make(map[string]int, len(out))
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	removed := make([]bool, len(out), len(out)+len(config))
	for _, e := range config {
		k, _, hasValue := strings.Cut(e, "=")
		i, seen := index[k]
		switch {
		case !hasValue:
			if seen {
				removed[i] = true
			}
		case seen:
			out[i], removed[i] = e, false
		default:
			index[k] = len(out)
			out = append(out, e)
			removed = append(removed, false)
		}
	}
	kept := out[:0]
	for i, e := range out {
		if !removed[i] && strings.Contains(e, "=") {
			kept = append(kept, e)
		}
	}
	return kept
}
