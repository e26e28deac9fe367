package nn

import (
	"math"
	"math/rand/v2"
)

// layer is one stage of a feed-forward network. Activations are per-example blocks laid out one
// after another (batch × outSize); images are stored HWC. A layer with parameters holds views
// into the model's flat parameter and gradient vectors, bound by bind.
type layer interface {
	outShape() Shape
	numParams() int
	// bind points the layer at its blocks of the model's vectors; grads may be nil (in-place SGD
	// never writes gradients), and then backward must be called with a step.
	bind(params, grads []float32)
	initParams(rng *rand.Rand)
	// reserve sizes the layer's scratch buffers for batches of up to batch examples.
	reserve(batch int)
	forward(in, out []float32, batch int)
	// backward writes the gradient with respect to the input into dIn when dIn is not nil. With
	// step nil it overwrites the layer's parameter gradients with those of the batch; otherwise
	// dOut is already scaled by −lr and it applies the SGD step to the parameters in place.
	backward(in, out, dOut, dIn []float32, batch int, step *sgdInPlace)
	// cloneUnbound returns a layer with the same configuration, no parameters and no scratch.
	cloneUnbound() layer
}

// heNormal fills w with N(0, gain/fanIn) samples: He et al. 2015 (gain 2) before a ReLU, LeCun
// (gain 1) before the softmax.
func heNormal(w []float32, fanIn int, gain float64, rng *rand.Rand) {
	std := math.Sqrt(gain / float64(fanIn))
	for i := range w {
		w[i] = float32(rng.NormFloat64() * std)
	}
}

// dense is a fully connected layer y = x·W + b, followed by a ReLU when relu is set, with W stored
// in×out row-major so that the forward pass and the weight gradient run along contiguous rows.
type dense struct {
	in, out int
	relu    bool
	w, b    []float32
	gw, gb  []float32
	scratch []float32 // for the input gradient (gemmNTWide)
}

func newDense(in, out int, relu bool) *dense {
	return &dense{in: in, out: out, relu: relu}
}

// initGain is the He/LeCun gain for weights feeding a ReLU or not.
func initGain(relu bool) float64 {
	if relu {
		return 2
	}
	return 1
}

func (d *dense) outShape() Shape { return Shape{1, 1, d.out} }
func (d *dense) numParams() int  { return d.in*d.out + d.out }
func (d *dense) bind(p, g []float32) {
	nw := d.in * d.out
	d.w, d.b = p[:nw:nw], p[nw:nw+d.out:nw+d.out]
	d.gw, d.gb = nil, nil
	if g != nil {
		d.gw, d.gb = g[:nw:nw], g[nw:nw+d.out:nw+d.out]
	}
}
func (d *dense) initParams(rng *rand.Rand) {
	heNormal(d.w, d.in, initGain(d.relu), rng)
	clear(d.b)
}
func (d *dense) reserve(batch int) {
	if n := ntScratch(batch, d.in, d.out); len(d.scratch) < n {
		d.scratch = make([]float32, n)
	}
}
func (d *dense) cloneUnbound() layer { return newDense(d.in, d.out, d.relu) }

func (d *dense) forward(in, out []float32, batch int) {
	for r := 0; r < batch; r++ {
		copy(out[r*d.out:(r+1)*d.out], d.b)
	}
	gemm(batch, d.out, d.in, in, d.in, 1, d.w, d.out, out, d.out, true)
	if d.relu {
		reluForward(out[:batch*d.out])
	}
}

func (d *dense) backward(in, out, dOut, dIn []float32, batch int, step *sgdInPlace) {
	if d.relu { // from here on dOut is the gradient before the ReLU
		reluBackward(out, dOut[:batch*d.out])
	}
	if dIn != nil { // first, while W is unchanged
		gemmNTWide(batch, d.in, d.out, dOut, d.out, d.w, d.out, dIn, d.in, false, d.scratch)
	}
	gw, gb := d.gw, d.gb
	if step != nil {
		step.decay()
		gw, gb = d.w, d.b
	} else {
		clear(gb)
	}
	// dW = Xᵀ·dY: A is X read transposed (row stride 1, column stride in).
	gemm(d.in, d.out, batch, in, 1, d.in, dOut, d.out, gw, d.out, step != nil)
	for r := 0; r < batch; r++ {
		axpy(1, dOut[r*d.out:(r+1)*d.out], gb)
	}
}

// reluForward sets v[i] = max(v[i], 0) in place: the activation fused into the layer that
// produces v, applied while v is still in cache.
func reluForward(v []float32) {
	done := 0
	if n8 := len(v) &^ 7; useAsm && n8 > 0 {
		reluAVX(n8, &v[0], &v[0])
		done = n8
	}
	for i := done; i < len(v); i++ {
		v[i] = max(v[i], 0)
	}
}

// reluBackward zeroes the gradients g[i] where the activation out[i] is not positive, in place.
func reluBackward(out, g []float32) {
	out = out[:len(g)]
	done := 0
	if n8 := len(g) &^ 7; useAsm && n8 > 0 {
		// Branch-free masking: the signs of the activations are random, a branch mispredicts.
		reluBackAVX(n8, &out[0], &g[0], &g[0])
		done = n8
	}
	for i := done; i < len(g); i++ {
		if !(out[i] > 0) {
			g[i] = 0
		}
	}
}

// maxPool2 is 2×2 max-pooling with stride 2 over HWC images; an odd last row or column is dropped.
type maxPool2 struct {
	in  Shape
	arg []int32 // per output element, the index of the chosen input within its example
}

func (p *maxPool2) outShape() Shape         { return Shape{p.in.C, p.in.H / 2, p.in.W / 2} }
func (p *maxPool2) numParams() int          { return 0 }
func (p *maxPool2) bind(_, _ []float32)     {}
func (p *maxPool2) initParams(_ *rand.Rand) {}
func (p *maxPool2) cloneUnbound() layer     { return &maxPool2{in: p.in} }

func (p *maxPool2) reserve(batch int) {
	o := p.outShape()
	if n := batch * o.C * o.H * o.W; len(p.arg) < n {
		p.arg = make([]int32, n)
	}
}

func (p *maxPool2) forward(in, out []float32, batch int) {
	c, w := p.in.C, p.in.W
	o := p.outShape()
	inSize, outSize := c*p.in.H*w, o.C*o.H*o.W
	for e := 0; e < batch; e++ {
		x := in[e*inSize : (e+1)*inSize]
		y := out[e*outSize : (e+1)*outSize]
		arg := p.arg[e*outSize : (e+1)*outSize]
		if useAsm && c%8 == 0 && o.W > 0 {
			// Branch-free: which of the four candidates wins is random, a branch mispredicts.
			for oy := 0; oy < o.H; oy++ {
				base := 2 * oy * w * c
				maxPoolRowAVX(o.W, c, &x[base], w*c, &y[oy*o.W*c], &arg[oy*o.W*c], base)
			}
			continue
		}
		for oy := 0; oy < o.H; oy++ {
			for ox := 0; ox < o.W; ox++ {
				i00 := ((2*oy)*w + 2*ox) * c
				i01, i10 := i00+c, i00+w*c
				i11 := i10 + c
				ob := (oy*o.W + ox) * c
				for ch := 0; ch < c; ch++ {
					best, bi := x[i00+ch], i00+ch
					if v := x[i01+ch]; v > best {
						best, bi = v, i01+ch
					}
					if v := x[i10+ch]; v > best {
						best, bi = v, i10+ch
					}
					if v := x[i11+ch]; v > best {
						best, bi = v, i11+ch
					}
					y[ob+ch] = best
					arg[ob+ch] = int32(bi)
				}
			}
		}
	}
}

func (p *maxPool2) backward(_, _, dOut, dIn []float32, batch int, _ *sgdInPlace) {
	if dIn == nil {
		return
	}
	o := p.outShape()
	inSize, outSize := p.in.C*p.in.H*p.in.W, o.C*o.H*o.W
	clear(dIn[:batch*inSize])
	for e := 0; e < batch; e++ {
		dx := dIn[e*inSize : (e+1)*inSize]
		dy := dOut[e*outSize : (e+1)*outSize]
		arg := p.arg[e*outSize : (e+1)*outSize]
		for i, g := range dy {
			dx[arg[i]] += g
		}
	}
}

// conv2d is a stride-1 convolution with 'same' zero padding over HWC images, followed by a ReLU
// when relu is set. Weights are K·K·C × F, rows ordered (ky, kx, c).
//
// The forward pass and the weight gradient are implicit GEMMs on a zero-padded copy of the image:
// with the padded row width Wp = W + K − 1, the K·C values under kernel row ky at output pixel x
// are contiguous in the padded image, so for each kernel row the patch matrix is a strided view
// (no im2col copy). The input gradient goes through a column matrix and col2im.
type conv2d struct {
	in      Shape
	filters int
	k       int
	relu    bool
	w, b    []float32
	gw, gb  []float32
	pad     []float32 // (H+K−1) × Wp × C: the padded image; the border is never written
	dyPad   []float32 // H × Wp × F: dY with zero columns past W, for the weight gradient
	col     []float32 // HW × K·K·C column gradient for the input gradient
	wT      []float32 // Wᵀ (F × K·K·C), rebuilt each backward pass
}

func newConv2d(in Shape, filters, k int, relu bool) *conv2d {
	return &conv2d{in: in, filters: filters, k: k, relu: relu}
}

func (l *conv2d) outShape() Shape { return Shape{l.filters, l.in.H, l.in.W} }
func (l *conv2d) patch() int      { return l.k * l.k * l.in.C }
func (l *conv2d) numParams() int  { return l.patch()*l.filters + l.filters }
func (l *conv2d) bind(p, g []float32) {
	nw := l.patch() * l.filters
	l.w, l.b = p[:nw:nw], p[nw:nw+l.filters:nw+l.filters]
	l.gw, l.gb = nil, nil
	if g != nil {
		l.gw, l.gb = g[:nw:nw], g[nw:nw+l.filters:nw+l.filters]
	}
}
func (l *conv2d) initParams(rng *rand.Rand) {
	heNormal(l.w, l.patch(), initGain(l.relu), rng)
	clear(l.b)
}
func (l *conv2d) cloneUnbound() layer { return newConv2d(l.in, l.filters, l.k, l.relu) }

func (l *conv2d) reserve(int) {
	wp := l.in.W + l.k - 1
	if n := (l.in.H + l.k - 1) * wp * l.in.C; len(l.pad) < n {
		l.pad = make([]float32, n)
	}
	if n := l.in.H * wp * l.filters; len(l.dyPad) < n {
		l.dyPad = make([]float32, n)
	}
	if n := l.in.H * l.in.W * l.patch(); len(l.col) < n {
		l.col = make([]float32, n)
	}
	if n := l.patch() * l.filters; len(l.wT) < n {
		l.wT = make([]float32, n)
	}
}

// padImage copies one HWC image into the interior of l.pad; the zero border stays as allocated.
func (l *conv2d) padImage(x []float32) {
	h, w, c, p := l.in.H, l.in.W, l.in.C, l.k/2
	wp := w + l.k - 1
	for y := 0; y < h; y++ {
		copy(l.pad[((y+p)*wp+p)*c:((y+p)*wp+p+w)*c], x[y*w*c:(y+1)*w*c])
	}
}

// col2imAdd adds the column gradient in l.col back onto the image gradient dx.
func (l *conv2d) col2imAdd(dx []float32) {
	h, w, c, k := l.in.H, l.in.W, l.in.C, l.k
	pad, kkc := k/2, l.patch()
	for y := 0; y < h; y++ {
		for xx := 0; xx < w; xx++ {
			row := l.col[(y*w+xx)*kkc : (y*w+xx+1)*kkc]
			for ky := 0; ky < k; ky++ {
				sy := y + ky - pad
				if sy < 0 || sy >= h {
					continue
				}
				lo, hi := max(0, pad-xx), min(k, w+pad-xx)
				src := row[ky*k*c+lo*c : ky*k*c+hi*c]
				dst := dx[(sy*w+xx+lo-pad)*c : (sy*w+xx+hi-pad)*c]
				axpy(1, src, dst)
			}
		}
	}
}

func (l *conv2d) forward(in, out []float32, batch int) {
	h, w, c, k, f := l.in.H, l.in.W, l.in.C, l.k, l.filters
	hw, kc, rowLen := h*w, k*c, (w+k-1)*c
	inSize, outSize := hw*c, hw*f
	for e := 0; e < batch; e++ {
		l.padImage(in[e*inSize : (e+1)*inSize])
		y := out[e*outSize : (e+1)*outSize]
		for r := 0; r < hw; r++ {
			copy(y[r*f:(r+1)*f], l.b)
		}
		for oy := 0; oy < h; oy++ {
			yRow := y[oy*w*f : (oy+1)*w*f]
			for ky := 0; ky < k; ky++ {
				// Output row oy += patches under kernel row ky (W × K·C, row stride C) · W[ky].
				gemm(w, f, kc, l.pad[(oy+ky)*rowLen:], c, 1, l.w[ky*kc*f:], f, yRow, f, true)
			}
		}
		if l.relu {
			reluForward(y)
		}
	}
}

func (l *conv2d) backward(in, out, dOut, dIn []float32, batch int, step *sgdInPlace) {
	hw, kkc, f := l.in.H*l.in.W, l.patch(), l.filters
	inSize, outSize := hw*l.in.C, hw*f
	if dIn != nil {
		// Wᵀ of the weights before the step, once per batch, so that the column gradient is a
		// plain GEMM with a long inner row.
		for r := 0; r < kkc; r++ {
			for j := 0; j < f; j++ {
				l.wT[j*kkc+r] = l.w[r*f+j]
			}
		}
	}
	gw, gb := l.gw, l.gb
	if step != nil {
		step.decay()
		gw, gb = l.w, l.b
	} else {
		clear(gw)
		clear(gb)
	}
	h, w, c, k := l.in.H, l.in.W, l.in.C, l.k
	wp, kc := w+k-1, k*c
	// The weight gradient runs over padded-width positions q = y·Wp + x, so that the patch
	// matrix is one strided view per kernel row; dY is zero at x ≥ W, so the extra positions
	// (K−1 per row) add nothing.
	positions := (h-1)*wp + w
	for e := 0; e < batch; e++ {
		dy := dOut[e*outSize : (e+1)*outSize]
		if l.relu { // from here on dy is the gradient before the ReLU
			reluBackward(out[e*outSize:(e+1)*outSize], dy)
		}
		l.padImage(in[e*inSize : (e+1)*inSize])
		for oy := 0; oy < h; oy++ {
			copy(l.dyPad[oy*wp*f:(oy*wp+w)*f], dy[oy*w*f:(oy+1)*w*f])
		}
		for ky := 0; ky < k; ky++ {
			// dW[ky] += patchesᵀ (K·C × positions, read transposed) · dY.
			gemm(kc, f, positions, l.pad[ky*wp*c:], 1, c, l.dyPad, f, gw[ky*kc*f:], f, true)
		}
		for r := 0; r < hw; r++ {
			axpy(1, dy[r*f:(r+1)*f], gb)
		}
		if dIn != nil {
			// dCol = dY·Wᵀ, then scattered back onto the image.
			gemm(hw, kkc, f, dy, f, 1, l.wT, kkc, l.col, kkc, false)
			dx := dIn[e*inSize : (e+1)*inSize]
			clear(dx)
			l.col2imAdd(dx)
		}
	}
}
