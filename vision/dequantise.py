"""``python -m vision.dequantise IN.onnx OUT.onnx``: an int8 ONNX detector back to float, once.

Ultralytics' int8 exports are ONNX Runtime's dynamic quantisation: each convolution is
``DynamicQuantizeLinear`` on its input, ``ConvInteger`` with uint8 weights, a ``Cast`` to float,
and a ``Mul`` by the product of the two scales. ONNX Runtime's ``ConvInteger`` kernels are slower
than its float ones on these CPUs (the shared exports ran up to 19% faster dequantised,
``docs/benchmarks.md``, ``docs/vision.md``); with its weights dequantised (``(w - zero_point) * scale``) into a plain
``Conv``, the network is the same but for the rounding of activations, and runs at full-precision
speed. The class names and other metadata are kept. Weights quantised per channel or per tensor
are both handled.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def dequantise(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """The model with every ``ConvInteger`` chain replaced by a float ``Conv``: (model, count)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    drop: set[int] = set()
    replaced: dict[int, onnx.NodeProto] = {}
    new_inits: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "ConvInteger":
            continue
        x_q, w_q, _, w_zp = (list(node.input) + [""] * 4)[:4]
        quantise = producer[x_q]
        (cast,) = consumers[node.output[0]]
        (scale_mul,) = consumers[cast.output[0]]
        if quantise.op_type != "DynamicQuantizeLinear" or cast.op_type != "Cast" or scale_mul.op_type != "Mul":
            raise ValueError(f"{node.name}: not the dynamic quantisation pattern this tool knows")
        scales = producer[next(i for i in scale_mul.input if i != cast.output[0])]  # x_scale * w_scale
        w_scale_name = next(i for i in scales.input if i in inits)
        weights = numpy_helper.to_array(inits[w_q]).astype(np.float32)
        zero = numpy_helper.to_array(inits[w_zp]).astype(np.float32) if w_zp else np.float32(0)
        scale = numpy_helper.to_array(inits[w_scale_name]).astype(np.float32)
        if zero.ndim == 1:  # per output channel
            zero, scale = zero.reshape(-1, 1, 1, 1), scale.reshape(-1, 1, 1, 1)
        float_name = f"{w_q}_dequantised"
        new_inits.append(numpy_helper.from_array((weights - zero) * scale, float_name))
        conv = helper.make_node(
            "Conv", [quantise.input[0], float_name], [scale_mul.output[0]], name=f"{node.name}_float"
        )
        conv.attribute.extend(node.attribute)
        replaced[id(node)] = conv
        drop.update({id(cast), id(scale_mul), id(scales)})

    kept = [replaced.get(id(n), n) for n in graph.node if id(n) not in drop]
    used = {name for n in kept for name in n.input} | {o.name for o in graph.output}
    # A quantiser whose outputs nothing reads any more goes too (several convolutions may share one).
    kept = [n for n in kept if n.op_type != "DynamicQuantizeLinear" or any(o in used for o in n.output)]
    used = {name for n in kept for name in n.input} | {o.name for o in graph.output}
    initializers = [i for i in list(graph.initializer) + new_inits if i.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    return model, len(replaced)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an int8 ONNX export (ConvInteger)")
    parser.add_argument("target", type=Path, help="where to write the float model")
    args = parser.parse_args()
    model, count = dequantise(onnx.load(args.source))
    if count == 0:
        sys.exit(f"{args.source}: no ConvInteger to dequantise")
    onnx.save(model, args.target)
    print(f"{args.target}: {count} convolutions back to float")


if __name__ == "__main__":
    main()
