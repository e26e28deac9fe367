#include "textflag.h"

// func addWordsAsm(dst *uint32, src *byte, n int)
// dst[i] += src[i] (little-endian uint32 words) for i < n, n a multiple of 16. SSE2 only
// (baseline amd64), 64 bytes per iteration.
TEXT ·addWordsAsm(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   addDone

addLoop:
	MOVOU 0(DI), X0
	MOVOU 16(DI), X1
	MOVOU 32(DI), X2
	MOVOU 48(DI), X3
	MOVOU 0(SI), X4
	MOVOU 16(SI), X5
	MOVOU 32(SI), X6
	MOVOU 48(SI), X7
	PADDL X4, X0
	PADDL X5, X1
	PADDL X6, X2
	PADDL X7, X3
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	ADDQ  $64, DI
	ADDQ  $64, SI
	DECQ  CX
	JNZ   addLoop

addDone:
	RET

// func subWordsAsm(dst *uint32, src *byte, n int)
// dst[i] -= src[i] for i < n, n a multiple of 16.
TEXT ·subWordsAsm(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   subDone

subLoop:
	MOVOU 0(DI), X0
	MOVOU 16(DI), X1
	MOVOU 32(DI), X2
	MOVOU 48(DI), X3
	MOVOU 0(SI), X4
	MOVOU 16(SI), X5
	MOVOU 32(SI), X6
	MOVOU 48(SI), X7
	PSUBL X4, X0
	PSUBL X5, X1
	PSUBL X6, X2
	PSUBL X7, X3
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	ADDQ  $64, DI
	ADDQ  $64, SI
	DECQ  CX
	JNZ   subLoop

subDone:
	RET
