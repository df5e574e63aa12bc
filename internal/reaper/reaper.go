package reaper

/*
#cgo CFLAGS: -Wall -O2
extern void berth_reaper(int argc, char **argv);
// glibc passes main's arguments to ELF constructors, static binaries included.
void __attribute__((constructor)) berth_reaper_init(int argc, char **argv, char **envp) { berth_reaper(argc, argv); }
*/
import "C"
