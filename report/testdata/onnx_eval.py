# Checks an ONNX file with onnx.checker (full shape inference) and evaluates it with a small
# NumPy interpreter of the operators Shoal's export uses; prints the argmax of the logits for
# the float32 inputs in argv[2] (raw little-endian, shape taken from the graph's input).
import sys
import numpy as np
import onnx
from onnx import numpy_helper

model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
g = model.graph
dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim[1:]]
x = np.fromfile(sys.argv[2], dtype="<f4").reshape([-1] + dims)
env = {"input": x}
for t in g.initializer:
    env[t.name] = numpy_helper.to_array(t)

def attr(n, name):
    for a in n.attribute:
        if a.name == name:
            return list(a.ints)

def conv(x, w, b, pad):
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, h, wd), dtype=np.float32)
    for ky in range(k):
        for kx in range(k):
            out += np.einsum("nchw,fc->nfhw", xp[:, :, ky:ky + h, kx:kx + wd], w[:, :, ky, kx])
    return out + b[None, :, None, None]

for n in g.node:
    a = [env[i] for i in n.input]
    op = n.op_type
    if op == "Sub": r = a[0] - a[1]
    elif op == "Mul": r = a[0] * a[1]
    elif op == "MatMul": r = a[0] @ a[1]
    elif op == "Add": r = a[0] + a[1]
    elif op == "Relu": r = np.maximum(a[0], 0)
    elif op == "Identity": r = a[0]
    elif op == "Transpose": r = np.transpose(a[0], attr(n, "perm"))
    elif op == "Flatten": r = a[0].reshape(a[0].shape[0], -1)
    elif op == "Conv": r = conv(a[0], a[1], a[2], attr(n, "pads")[0])
    elif op == "MaxPool":
        v = a[0]
        h, w = v.shape[2] // 2 * 2, v.shape[3] // 2 * 2
        v = v[:, :, :h, :w]
        r = v.reshape(v.shape[0], v.shape[1], h // 2, 2, w // 2, 2).max(axis=(3, 5))
    else: raise SystemExit("unsupported op " + op)
    env[n.output[0]] = r
print(" ".join(str(int(i)) for i in env[g.output[0].name].argmax(axis=1)))
