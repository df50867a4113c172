//go:build !unix

package classify

// processCPU is not measured on this platform.
func processCPU() int64 { return 0 }
