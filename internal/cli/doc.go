// Package cli is berth's command line: one file per verb group, each
// parsing flags and calling the engine packages. It holds no engine logic.
package cli
