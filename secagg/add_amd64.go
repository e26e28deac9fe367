package secagg

// addWordsAsm and subWordsAsm add or subtract n (a multiple of 16) little-endian uint32 words of
// src into dst with SSE2, four times fewer instructions than the scalar loop; see add_amd64.s.
//
//go:noescape
func addWordsAsm(dst *uint32, src *byte, n int)

//go:noescape
func subWordsAsm(dst *uint32, src *byte, n int)

// addWords adds the little-endian 32-bit words of b into dst (mod 2^32); len(b) ≥ 4*len(dst).
func addWords(dst []uint32, b []byte) {
	b = b[:4*len(dst)]
	n := len(dst) &^ 15
	if n > 0 {
		addWordsAsm(&dst[0], &b[0], n)
	}
	addWordsGeneric(dst[n:], b[4*n:])
}

// subWords subtracts the little-endian 32-bit words of b from dst (mod 2^32).
func subWords(dst []uint32, b []byte) {
	b = b[:4*len(dst)]
	n := len(dst) &^ 15
	if n > 0 {
		subWordsAsm(&dst[0], &b[0], n)
	}
	subWordsGeneric(dst[n:], b[4*n:])
}
