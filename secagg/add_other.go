//go:build !amd64

package secagg

func addWords(dst []uint32, b []byte) { addWordsGeneric(dst, b) }

func subWords(dst []uint32, b []byte) { subWordsGeneric(dst, b) }
