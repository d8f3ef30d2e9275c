"""A TensorFlow.js graph model, converted once to safetensors and run with torch.

TFJS stores a frozen TF graph (`modelTopology.node`) and its weights in a binary file,
often as float16. `convert_tfjs_graph` writes the weights as float32 safetensors and the
nodes (with their attributes decoded) as JSON; `TfjsGraph` runs them. TFJS-only fused ops
(`_FusedConv2D`, `FusedDepthwiseConv2dNative`) are split into convolution, bias and
activation. Tensors stay NHWC as in TF; convolutions see a channels-last view.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from safetensors.torch import load_file

_BYTES = {"float32": 4, "int32": 4, "float16": 2, "uint8": 1, "uint16": 2, "bool": 1}
_NUMPY = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8, "uint16": np.uint16, "bool": np.bool_}
_ATTRS = ("strides", "dilations", "padding", "fused_ops", "epsilon", "keep_dims", "align_corners", "half_pixel_centers",
          "ksize", "begin_mask", "end_mask", "shrink_axis_mask", "new_axis_mask", "ellipsis_mask", "DstT", "sorted", "batch_dims")


def _attr_value(value: dict):
    if "list" in value:
        items = value["list"]
        if "i" in items:
            return [int(v) for v in items["i"]]
        if "s" in items:
            return [base64.b64decode(v).decode() for v in items["s"]]
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    return None


def _read_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    weights = {}
    for group in model["weightsManifest"]:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            size = count * _BYTES[stored]
            array = np.frombuffer(data[offset : offset + size], dtype=_NUMPY[stored]).reshape(spec["shape"])
            offset += size
            if quant and stored in ("uint8", "uint16") and "scale" in quant:
                array = array.astype(np.float32) * quant["scale"] + quant.get("min", 0.0)
            weights[spec["name"]] = array.astype(np.float32 if spec["dtype"] == "float32" else _NUMPY[spec["dtype"]])
    return weights


def convert_tfjs_graph(model_json: Path, weights_out: Path, graph_out: Path) -> None:
    model = json.loads(model_json.read_text())
    weights = _read_weights(model, model_json.parent)
    nodes = []
    for node in model["modelTopology"]["node"]:
        attrs = {k: _attr_value(v) for k, v in node.get("attr", {}).items() if k in _ATTRS}
        nodes.append({"name": node["name"], "op": node["op"], "inputs": [i for i in node.get("input", []) if not i.startswith("^")], "attrs": attrs})
    missing = [n["name"] for n in nodes if n["op"] == "Const" and n["name"] not in weights]
    if missing:
        raise ValueError(f"constants without weights: {missing[:5]}")
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(weights_out))
    graph_out.write_text(json.dumps({"signature": model.get("signature", {}), "nodes": nodes}))


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _legacy_resize_bilinear(x: torch.Tensor, size: list[int], align_corners: bool, half_pixel: bool) -> torch.Tensor:
    """TF's ResizeBilinear on NHWC, including its legacy (no half-pixel) sampling."""
    if half_pixel and not align_corners:
        out = F.interpolate(x.permute(0, 3, 1, 2), size=tuple(size), mode="bilinear", align_corners=False)
        return out.permute(0, 2, 3, 1)
    _, h, w, _ = x.shape

    def grid(n_in, n_out):
        scale = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
        src = torch.arange(n_out, dtype=torch.float32) * scale
        low = src.floor().clamp(max=n_in - 1).long()
        return low, (low + 1).clamp(max=n_in - 1), (src - low).clamp(0, 1)

    y0, y1, fy = grid(h, size[0])
    x0, x1, fx = grid(w, size[1])
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bottom = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bottom * fy[None, :, None, None]


def _strided_slice(x, begin, end, strides, attrs):
    if attrs.get("ellipsis_mask", 0) or attrs.get("new_axis_mask", 0):
        raise NotImplementedError("StridedSlice with ellipsis or new-axis masks")
    index = []
    for axis, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist())):
        if attrs.get("shrink_axis_mask", 0) >> axis & 1:
            index.append(b)
            continue
        index.append(slice(None if attrs.get("begin_mask", 0) >> axis & 1 else b,
                           None if attrs.get("end_mask", 0) >> axis & 1 else e, s))
    return x[tuple(index)]


_DTYPES = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_BOOL": torch.bool}


class TfjsGraph:
    """Runs a converted graph: `graph({"input": nhwc}, ["output"])` → {"output": tensor}."""

    def __init__(self, weights: Path, graph: Path):
        spec = json.loads(graph.read_text())
        self.signature = spec["signature"]
        self.nodes = {n["name"]: n for n in spec["nodes"]}
        self.consts = load_file(str(weights))
        self._kernels: dict[str, torch.Tensor] = {}

    def _kernel(self, name: str, depthwise: bool) -> torch.Tensor:
        if name not in self._kernels:
            w = self.consts[name]  # HWIO, or HW C M for depthwise
            if depthwise:
                h, k, c, m = w.shape
                self._kernels[name] = w.permute(2, 3, 0, 1).reshape(c * m, 1, h, k).contiguous()
            else:
                self._kernels[name] = w.permute(3, 2, 0, 1).contiguous()
        return self._kernels[name]

    def _conv(self, node, x, depthwise):
        attrs = node["attrs"]
        weight = self._kernel(node["inputs"][1], depthwise)
        stride, dilation = attrs["strides"][1], (attrs.get("dilations") or [1, 1, 1, 1])[1]
        x = x.permute(0, 3, 1, 2)
        if attrs["padding"] == "SAME":
            top, bottom = _same_padding(x.shape[2], weight.shape[2], stride, dilation)
            left, right = _same_padding(x.shape[3], weight.shape[3], stride, dilation)
            x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, weight, stride=stride, dilation=dilation, groups=x.shape[1] if depthwise else 1)
        y = y.permute(0, 2, 3, 1)
        for op in attrs.get("fused_ops", []):  # the split of TFJS's fused ops
            if op == "BiasAdd":
                y = y + self.consts[node["inputs"][2]]
            elif op == "Relu":
                y = F.relu(y)
            elif op == "Relu6":
                y = F.relu6(y)
            elif op == "Sigmoid":
                y = torch.sigmoid(y)
            else:
                raise NotImplementedError(f"fused op {op}")
        return y

    def _run(self, node, args):
        op, attrs = node["op"], node["attrs"]
        if op in ("Conv2D", "_FusedConv2D"):
            return self._conv(node, args[0], depthwise=False)
        if op in ("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            return self._conv(node, args[0], depthwise=True)
        simple = {
            "Identity": lambda: args[0], "Add": lambda: args[0] + args[1], "AddV2": lambda: args[0] + args[1],
            "Sub": lambda: args[0] - args[1], "Mul": lambda: args[0] * args[1], "RealDiv": lambda: args[0] / args[1],
            "FloorDiv": lambda: torch.div(args[0], args[1], rounding_mode="floor"),
            "FloorMod": lambda: torch.remainder(args[0], args[1]), "Equal": lambda: args[0] == args[1],
            "Relu": lambda: F.relu(args[0]), "Relu6": lambda: F.relu6(args[0]), "Sigmoid": lambda: torch.sigmoid(args[0]),
            "Mean": lambda: args[0].mean(dim=[int(a) for a in args[1].flatten().tolist()], keepdim=bool(attrs.get("keep_dims"))),
            "ConcatV2": lambda: torch.cat(args[:-1], dim=int(args[-1])),
            "Reshape": lambda: args[0].reshape([int(s) for s in args[1].tolist()]),
            "Cast": lambda: args[0].to(_DTYPES[attrs["DstT"]]),
            "ExpandDims": lambda: args[0].unsqueeze(int(args[1])),
            "StridedSlice": lambda: _strided_slice(args[0], args[1], args[2], args[3], attrs),
            "GatherV2": lambda: torch.index_select(args[0], int(args[2]), args[1].flatten().long()).reshape(
                *args[0].shape[: int(args[2])], *args[1].shape, *args[0].shape[int(args[2]) + 1 :]),
        }
        if op in simple:
            return simple[op]()
        if op == "ResizeBilinear":
            return _legacy_resize_bilinear(args[0], args[1].tolist(), bool(attrs.get("align_corners")), bool(attrs.get("half_pixel_centers")))
        if op == "MaxPool":
            k, s = attrs["ksize"][1], attrs["strides"][1]
            x = args[0].permute(0, 3, 1, 2)
            if attrs["padding"] == "SAME":
                top, bottom = _same_padding(x.shape[2], k, s, 1)
                left, right = _same_padding(x.shape[3], k, s, 1)
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
            return F.max_pool2d(x, k, s).permute(0, 2, 3, 1)
        if op == "TopKV2":
            values, indices = torch.topk(args[0], int(args[1]), dim=-1, sorted=True)
            return [values, indices.to(torch.int32)]
        raise NotImplementedError(f"TFJS op {op} ({node['name']})")

    @torch.inference_mode()
    def __call__(self, feeds: dict[str, torch.Tensor], outputs: list[str]) -> dict[str, torch.Tensor]:
        values: dict[str, object] = dict(feeds)

        def value(ref: str):
            name, _, port = ref.partition(":")
            result = values[name]
            return result[int(port or 0)] if isinstance(result, list) else result

        stack = list(outputs)
        while stack:
            name = stack[-1].partition(":")[0]
            if name in values:
                stack.pop()
                continue
            node = self.nodes[name]
            if node["op"] == "Const":
                values[name] = self.consts[name]
                stack.pop()
                continue
            pending = [i for i in node["inputs"] if i.partition(":")[0] not in values]
            if pending:
                stack.extend(pending)
                continue
            values[name] = self._run(node, [value(i) for i in node["inputs"]])
            stack.pop()
        return {name: value(name) for name in outputs}
