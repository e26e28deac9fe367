package data

import (
	"syscall"
	"unsafe"
)

// madvHugepage is MADV_HUGEPAGE from <linux/mman.h> (not exported by package syscall).
const madvHugepage = 14

// hugePageMin is the size from which allocFloats asks for transparent huge pages.
const hugePageMin = 16 << 20

// allocFloats returns a zeroed []float32 of length n. A large slice is advised to use
// transparent huge pages (when the kernel's THP mode is "madvise"): first-touch page faults,
// not decoding, dominate loading MNIST on virtual machines, and 2 MiB pages make 512× fewer of
// them. The advice is only a hint; failure is harmless and ignored.
func allocFloats(n int) []float32 {
	x := make([]float32, n)
	if 4*n >= hugePageMin {
		_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*n), madvHugepage)
	}
	return x
}
