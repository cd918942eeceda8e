"""Can one multi-ratio LiteRT file store its weights once? A construction
tried on the CIFAR-10 presets, measured against `zoo.export_litert`'s file.

`zoo.export_litert` writes a signature per ratio, each the static sub-net of
its ratio, and TensorFlow's converter stores each signature's weights as its
own constants: the file is as large as one file per ratio. This script
reads the file's own buffer table to find which weights of the narrower
signatures are blocks of the full-width signature's weights (the first
output and input channels), exactly or up to one scale per output channel
(each operating point's batch norm, which the converter folds into the
weights), then rewrites the file so that those signatures read the
full-width buffers through builtin `SLICE` (and `MUL` for the scale)
operators instead of keeping their own copies. It reports, per preset:

- the bytes of the narrower signatures' weights that are exact blocks,
  blocks up to a per-channel scale, or neither;
- the rewritten file's size against one full-width file, from its buffer
  table, and its outputs against the original file's;
- batch-1 latency of every signature (XNNPACK, one thread) in both files,
  and in the original file without XNNPACK (the builtin kernels a
  convolution with computed weights runs on).

Usage: `python benchmarks/litert_shared_weights.py [--quick]`
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from tensorflow.lite.python import schema_py_generated as schema  # noqa: E402
from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402

import zoo  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402
from zoo.litert_export import signature_name  # noqa: E402

PRESETS = ("resnet20_cifar10", "mobilenet_cifar10", "vgg16_cifar10")
WEIGHTED_OPS = {
    schema.BuiltinOperator.CONV_2D: 0,  # output channels: axis 0 of OHWI
    schema.BuiltinOperator.DEPTHWISE_CONV_2D: 3,  # channels: axis 3 of 1HWC
    schema.BuiltinOperator.FULLY_CONNECTED: 0,  # outputs: axis 0 of [out, in]
}
FULL = signature_name(1.0)


def constant(model, tensor):
    buffer = model.buffers[tensor.buffer]
    if tensor.type != schema.TensorType.FLOAT32 or buffer.data is None or len(buffer.data) == 0:
        return None
    return np.frombuffer(np.asarray(buffer.data, np.uint8).tobytes(), np.float32).reshape(
        tensor.shape
    )


def opcode(model, operator):
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def block_scale(weights, full, channel_axis):
    """`None`, or the per-channel scale `s` (all ones when exact) with
    `weights == s * full[:a, :b, ...]` along `channel_axis`."""
    if full.ndim != weights.ndim or any(w > f for w, f in zip(weights.shape, full.shape)):
        return None
    block = full[tuple(slice(0, n) for n in weights.shape)]
    if np.array_equal(block, weights):
        return np.ones(weights.shape[channel_axis], np.float32)
    w = np.moveaxis(weights, channel_axis, 0).reshape(weights.shape[channel_axis], -1)
    b = np.moveaxis(block, channel_axis, 0).reshape(weights.shape[channel_axis], -1)
    scale = (w * b).sum(1) / np.maximum((b * b).sum(1), 1e-30)
    if np.allclose(w, scale[:, None] * b, rtol=1e-5, atol=1e-7):
        return scale.astype(np.float32)
    return None


def find_block(weights, axis, candidates):
    """The first full-width weight `weights` is a scaled block of:
    `(tensor index, array, scale)`, or `None`."""
    for tensor, array, candidate_axis in candidates:
        if candidate_axis == axis:
            scale = block_scale(weights, array, axis)
            if scale is not None:
                return tensor, array, scale
    return None


def full_width_weights(model, subgraph):
    """`[(tensor index, array, channel axis)]` of the full-width signature's weights."""
    found = []
    for operator in subgraph.operators:
        axis = WEIGHTED_OPS.get(opcode(model, operator))
        if axis is not None:
            array = constant(model, subgraph.tensors[operator.inputs[1]])
            if array is not None:
                found.append((operator.inputs[1], array, axis))
    return found


def add_buffer(model, array):
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def add_tensor(subgraph, name, shape, tensor_type, buffer=0):
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, list(shape), tensor_type, buffer
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def opcode_index(model, builtin):
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def add_operator(model, subgraph, builtin, inputs, outputs, options=None):
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode_index(model, builtin)
    operator.inputs, operator.outputs = list(inputs), list(outputs)
    if options is not None:
        operator.builtinOptionsType, operator.builtinOptions = options
    return operator


def share_weights(model):
    """Rewrites `model` (a `ModelT`) in place; returns the bytes of the
    narrower signatures' weights by kind: exact, scaled, neither."""
    subgraphs = {s.signatureKey.decode(): s.subgraphIndex for s in model.signatureDefs}
    full_subgraph = model.subgraphs[subgraphs[FULL]]
    candidates = full_width_weights(model, full_subgraph)
    kinds = {"exact": 0, "scaled": 0, "neither": 0}
    for name, index in subgraphs.items():
        if name == FULL:
            continue
        subgraph = model.subgraphs[index]
        new_operators = []
        for operator in subgraph.operators:
            axis = WEIGHTED_OPS.get(opcode(model, operator))
            weights = (
                None if axis is None else constant(model, subgraph.tensors[operator.inputs[1]])
            )
            if weights is None:
                continue
            match = find_block(weights, axis, candidates)
            if match is None:
                kinds["neither"] += weights.nbytes
                continue
            tensor, array, scale = match
            exact = bool(np.all(scale == 1.0))
            kinds["exact" if exact else "scaled"] += weights.nbytes
            old = subgraph.tensors[operator.inputs[1]]
            model.buffers[old.buffer].data = None
            source = add_tensor(
                subgraph,
                f"{old.name.decode()}/shared",
                array.shape,
                schema.TensorType.FLOAT32,
                full_subgraph.tensors[tensor].buffer,
            )
            rank = weights.ndim
            begin = add_tensor(
                subgraph,
                f"{old.name.decode()}/begin",
                [rank],
                schema.TensorType.INT32,
                add_buffer(model, np.zeros(rank, np.int32)),
            )
            size = add_tensor(
                subgraph,
                f"{old.name.decode()}/size",
                [rank],
                schema.TensorType.INT32,
                add_buffer(model, np.asarray(weights.shape, np.int32)),
            )
            sliced = add_tensor(
                subgraph, f"{old.name.decode()}/sliced", weights.shape, schema.TensorType.FLOAT32
            )
            new_operators.append(
                add_operator(
                    model, subgraph, schema.BuiltinOperator.SLICE, [source, begin, size], [sliced]
                )
            )
            result = sliced
            if not exact:
                shape = [1] * rank
                shape[axis] = weights.shape[axis]
                factor = add_tensor(
                    subgraph,
                    f"{old.name.decode()}/scale",
                    shape,
                    schema.TensorType.FLOAT32,
                    add_buffer(model, scale.reshape(shape)),
                )
                result = add_tensor(
                    subgraph,
                    f"{old.name.decode()}/scaled",
                    weights.shape,
                    schema.TensorType.FLOAT32,
                )
                options = schema.MulOptionsT()
                new_operators.append(
                    add_operator(
                        model,
                        subgraph,
                        schema.BuiltinOperator.MUL,
                        [sliced, factor],
                        [result],
                        (schema.BuiltinOptions.MulOptions, options),
                    )
                )
            operator.inputs[1] = result
        subgraph.operators = new_operators + subgraph.operators
    return kinds


def buffer_bytes(model):
    return sum(len(b.data) for b in model.buffers if b.data is not None)


def signature_latency(path, images, repeats, builtin_only=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = {}
    if builtin_only:
        options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(path, num_threads=1, **options)
    latency, outputs = {}, {}
    for name in interpreter.get_signature_list():
        run = interpreter.get_signature_runner(name)
        outputs[name] = run(images=images)["logits"]
        for _ in range(10):
            run(images=images[:1])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(images=images[:1])
            times.append(time.perf_counter() - start)
        latency[name] = 1000 * float(np.median(times))
    return latency, outputs


def preset_results(preset, quick):
    model = zoo.load(preset)
    images = zoo.datasets.load_arrays("cifar10", "test[:16]")[0].astype("float32")
    repeats = 20 if quick else 200
    with tempfile.TemporaryDirectory() as folder:
        original = os.path.join(folder, "all.tflite")
        full_only = os.path.join(folder, "full.tflite")
        shared = os.path.join(folder, "shared.tflite")
        zoo.export_litert(model, original)
        zoo.export_litert(model, full_only, ratios=[1.0])
        rewritten = flatbuffer_utils.read_model(original)
        kinds = share_weights(rewritten)
        flatbuffer_utils.write_model(rewritten, shared)
        sizes = {
            "original_file": os.path.getsize(original),
            "shared_file": os.path.getsize(shared),
            "full_width_file": os.path.getsize(full_only),
            "original_buffers": buffer_bytes(flatbuffer_utils.read_model(original)),
            "shared_buffers": buffer_bytes(flatbuffer_utils.read_model(shared)),
            "full_width_buffers": buffer_bytes(flatbuffer_utils.read_model(full_only)),
        }
        latency_original, out_original = signature_latency(original, images, repeats)
        latency_shared, out_shared = signature_latency(shared, images, repeats)
        latency_builtin, _ = signature_latency(original, images, repeats, builtin_only=True)
    difference = {
        name: float(np.max(np.abs(out_shared[name] - out_original[name])))
        / float(np.max(np.abs(out_original[name])))
        for name in out_original
    }
    return {
        "weights_bytes": kinds,
        "bytes": sizes,
        "max_relative_difference": difference,
        "latency_ms": {
            "original": latency_original,
            "shared": latency_shared,
            "original_without_xnnpack": latency_builtin,
        },
    }


def markdown(results):
    lines = [
        "Weights of the narrower signatures (MB): blocks of the full-width weights exactly, "
        "up to one scale per output channel (batch norm folded per operating point), or neither.",
        "",
        "| preset | exact block | block up to a per-channel scale | neither |",
        "| --- | --- | --- | --- |",
    ]
    for preset, result in results["presets"].items():
        k = result["weights_bytes"]
        lines.append(
            f"| `{preset}` | {k['exact'] / 1e6:.3f} | {k['scaled'] / 1e6:.3f} | {k['neither'] / 1e6:.3f} |"
        )
    lines += [
        "",
        "Sizes against one full-width float file (file bytes; buffer-table bytes in brackets), "
        "and the largest output difference of the rewritten file, relative to the largest logit.",
        "",
        "| preset | `export_litert` (all ratios) | shared weights (all ratios) | largest difference |",
        "| --- | --- | --- | --- |",
    ]
    for preset, result in results["presets"].items():
        b = result["bytes"]
        lines.append(
            f"| `{preset}` | {b['original_file'] / b['full_width_file']:.2f}x "
            f"({b['original_buffers'] / b['full_width_buffers']:.2f}x) | "
            f"{b['shared_file'] / b['full_width_file']:.2f}x "
            f"({b['shared_buffers'] / b['full_width_buffers']:.2f}x) | "
            f"{max(result['max_relative_difference'].values()):.1e} |"
        )
    lines += [
        "",
        "Batch-1 latency (median, ms, one thread): `export_litert`'s file with XNNPACK, the "
        "shared-weight file with XNNPACK, and `export_litert`'s file on the builtin kernels alone.",
        "",
        "| preset | signature | `export_litert`, XNNPACK | shared weights | builtin kernels |",
        "| --- | --- | --- | --- | --- |",
    ]
    for preset, result in results["presets"].items():
        latency = result["latency_ms"]
        for name in sorted(latency["original"], reverse=True):
            lines.append(
                f"| `{preset}` | `{name}` | {latency['original'][name]:.2f} | "
                f"{latency['shared'][name]:.2f} | {latency['original_without_xnnpack'][name]:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(quick=False):
    presets = PRESETS[:1] if quick else PRESETS
    results = {"machine": machine(), "threads": 1, "presets": {}}
    for preset in presets:
        results["presets"][preset] = preset_results(preset, quick)
        print(preset, results["presets"][preset]["bytes"], flush=True)
    name = "litert_shared_weights_quick" if quick else "litert_shared_weights"
    write_results(name, results, markdown(results), readme=not quick)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="resnet20 only, fewer repeats")
    main(parser.parse_args().quick)
