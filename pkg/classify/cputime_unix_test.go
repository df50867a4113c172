//go:build unix

package classify

import "syscall"

// processCPU returns the CPU time this process has used, user and system,
// in nanoseconds. On a shared machine a benchmark's wall time grows with
// other people's load; its CPU time per message grows far less, so the
// benchmarks report both.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
