package monitor

/*
#cgo CFLAGS: -Wall -O2
extern void berth_monitor(int argc, char **argv);
// glibc passes argc and argv to constructors.
static void __attribute__((constructor)) berth_monitor_init(int argc, char **argv) { berth_monitor(argc, argv); }
*/
import "C"
