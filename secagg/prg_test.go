package secagg

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"golang.org/x/crypto/chacha20"
)

func TestMaskCancels(t *testing.T) {
	var e maskExpander
	acc := make([]uint32, 10007) // not a multiple of the chunk size
	for i := range acc {
		acc[i] = uint32(i * 7)
	}
	key := [prgKeySize]byte{1, 2, 3}
	if err := e.apply(acc, &key, +1); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i := range acc {
		if acc[i] != uint32(i*7) {
			changed++
		}
	}
	if changed < len(acc)-10 {
		t.Fatalf("mask left %d of %d words unchanged", len(acc)-changed, len(acc))
	}
	if err := e.apply(acc, &key, -1); err != nil {
		t.Fatal(err)
	}
	for i := range acc {
		if acc[i] != uint32(i*7) {
			t.Fatalf("word %d: mask did not cancel", i)
		}
	}
}

// The mask must equal the AES-128-CTR keystream with a zero IV, read as little-endian words.
func TestMaskIsAESCTR(t *testing.T) {
	key := [prgKeySize]byte{9}
	block, _ := aes.NewCipher(key[:])
	ks := make([]byte, 4*5000)
	cipher.NewCTR(block, make([]byte, 16)).XORKeyStream(ks, ks)
	var e maskExpander
	acc := make([]uint32, 5000)
	if err := e.apply(acc, &key, +1); err != nil {
		t.Fatal(err)
	}
	for i := range acc {
		want := uint32(ks[4*i]) | uint32(ks[4*i+1])<<8 | uint32(ks[4*i+2])<<16 | uint32(ks[4*i+3])<<24
		if acc[i] != want {
			t.Fatalf("word %d = %x, want %x", i, acc[i], want)
		}
	}
}

var benchBuf = make([]byte, 16384)

// BenchmarkPRGAES128CTR and BenchmarkPRGChaCha20 measure the two candidate mask PRGs.
func BenchmarkPRGAES128CTR(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 16))
	s := cipher.NewCTR(block, make([]byte, 16))
	t := startCPU(b, int64(len(benchBuf)))
	for b.Loop() {
		s.XORKeyStream(benchBuf, benchBuf)
	}
	t.stop()
}

func BenchmarkPRGChaCha20(b *testing.B) {
	s, _ := chacha20.NewUnauthenticatedCipher(make([]byte, 32), make([]byte, 12))
	t := startCPU(b, int64(len(benchBuf)))
	for b.Loop() {
		s.XORKeyStream(benchBuf, benchBuf)
	}
	t.stop()
}

// BenchmarkMaskExpand measures expanding one 100,000-entry mask into an accumulator
// (PRG plus the addition); compare its MB/s with BenchmarkPRGAES128CTR.
func BenchmarkMaskExpand(b *testing.B) {
	var e maskExpander
	acc := make([]uint32, 100_001)
	key := [prgKeySize]byte{1}
	t := startCPU(b, int64(4*len(acc)))
	for b.Loop() {
		_ = e.apply(acc, &key, +1)
	}
	t.stop()
}

func TestAddSubWordsMatchGeneric(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 100, 4096, 4099} {
		src := make([]byte, 4*n)
		for i := range src {
			src[i] = byte(i*131 + 7)
		}
		a := make([]uint32, n)
		b := make([]uint32, n)
		for i := range a {
			a[i] = uint32(i) * 2654435761
			b[i] = a[i]
		}
		addWords(a, src)
		addWordsGeneric(b, src)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("n=%d: addWords word %d = %x, generic %x", n, i, a[i], b[i])
			}
		}
		subWords(a, src)
		subWordsGeneric(b, src)
		for i := range a {
			if a[i] != b[i] || a[i] != uint32(i)*2654435761 {
				t.Fatalf("n=%d: subWords word %d wrong", n, i)
			}
		}
	}
}

func BenchmarkAddWords(b *testing.B) {
	dst := make([]uint32, chunkWords)
	src := make([]byte, 4*chunkWords)
	t := startCPU(b, int64(len(src)))
	for b.Loop() {
		addWords(dst, src)
	}
	t.stop()
}

func BenchmarkAddWordsGeneric(b *testing.B) {
	dst := make([]uint32, chunkWords)
	src := make([]byte, 4*chunkWords)
	t := startCPU(b, int64(len(src)))
	for b.Loop() {
		addWordsGeneric(dst, src)
	}
	t.stop()
}
