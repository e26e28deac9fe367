#include "textflag.h"

// func addScaledAVX2(acc []float64, u []float32, w float64)
// acc[j] += w * float64(u[j]) for j < len(u) rounded down to a multiple of 16.
TEXT ·addScaledAVX2(SB), NOSPLIT, $0-56
	MOVQ acc_base+0(FP), DI
	MOVQ u_base+24(FP), SI
	MOVQ u_len+32(FP), CX
	VBROADCASTSD w+48(FP), Y0
	SHRQ $4, CX
	JZ   done

loop:
	VCVTPS2PD (SI), Y1
	VCVTPS2PD 16(SI), Y2
	VCVTPS2PD 32(SI), Y3
	VCVTPS2PD 48(SI), Y4
	VMOVUPD (DI), Y5
	VMOVUPD 32(DI), Y6
	VMOVUPD 64(DI), Y7
	VMOVUPD 96(DI), Y8
	VFMADD231PD Y1, Y0, Y5
	VFMADD231PD Y2, Y0, Y6
	VFMADD231PD Y3, Y0, Y7
	VFMADD231PD Y4, Y0, Y8
	VMOVUPD Y5, (DI)
	VMOVUPD Y6, 32(DI)
	VMOVUPD Y7, 64(DI)
	VMOVUPD Y8, 96(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func addScaled4AVX2(acc *float64, u *[4]*float32, w *[4]float64, n int)
// acc[j] += w[0]·u[0][j] + w[1]·u[1][j] + w[2]·u[2][j] + w[3]·u[3][j] for j < n rounded down to
// a multiple of 8: four updates per pass, so the accumulator is loaded and stored once for four.
TEXT ·addScaled4AVX2(SB), NOSPLIT, $0-32
	MOVQ acc+0(FP), DI
	MOVQ u+8(FP), R8
	MOVQ w+16(FP), R9
	MOVQ n+24(FP), CX
	MOVQ 0(R8), R10
	MOVQ 8(R8), R11
	MOVQ 16(R8), R12
	MOVQ 24(R8), R13
	VBROADCASTSD 0(R9), Y0
	VBROADCASTSD 8(R9), Y1
	VBROADCASTSD 16(R9), Y2
	VBROADCASTSD 24(R9), Y3
	SHRQ $3, CX
	JZ   done4

loop4:
	VMOVUPD (DI), Y4
	VMOVUPD 32(DI), Y5
	VCVTPS2PD (R10), Y6
	VCVTPS2PD 16(R10), Y7
	VFMADD231PD Y6, Y0, Y4
	VFMADD231PD Y7, Y0, Y5
	VCVTPS2PD (R11), Y8
	VCVTPS2PD 16(R11), Y9
	VFMADD231PD Y8, Y1, Y4
	VFMADD231PD Y9, Y1, Y5
	VCVTPS2PD (R12), Y10
	VCVTPS2PD 16(R12), Y11
	VFMADD231PD Y10, Y2, Y4
	VFMADD231PD Y11, Y2, Y5
	VCVTPS2PD (R13), Y12
	VCVTPS2PD 16(R13), Y13
	VFMADD231PD Y12, Y3, Y4
	VFMADD231PD Y13, Y3, Y5
	VMOVUPD Y4, (DI)
	VMOVUPD Y5, 32(DI)
	ADDQ $32, R10
	ADDQ $32, R11
	ADDQ $32, R12
	ADDQ $32, R13
	ADDQ $64, DI
	DECQ CX
	JNZ  loop4

done4:
	VZEROUPPER
	RET
