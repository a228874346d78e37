"""Legacy YOLOv5 checkpoints (ultralytics/yolov5 repository, e.g. the models published for
historical illustration extraction), loaded without that repository and without torch.hub.

Those checkpoints pickle whole modules under the names `models.yolo.*` and `models.common.*`.
Unpickling only needs classes of those names with the same attributes and a `forward`; the
weights and structure come from the file. The unpickler maps both module names to this file and
refuses any other non-torch class, so a checkpoint cannot name arbitrary code to run.
"""
from __future__ import annotations

import math
import pickle
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from .common import Detection, Options

# -- the modules a YOLOv5 checkpoint names (forward only: state comes from the pickle) -------------


class Conv(nn.Module):
    def forward(self, x):
        bn = getattr(self, "bn", None)  # fused checkpoints have no batch norm
        return self.act(bn(self.conv(x)) if bn is not None else self.conv(x))


class Bottleneck(nn.Module):
    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class SPP(nn.Module):
    def forward(self, x):
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


class Focus(nn.Module):
    def forward(self, x):
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


class Concat(nn.Module):
    def forward(self, x):
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """Anchor-based head: (batch, anchors x cells, 5 + classes) boxes as xywh in input pixels."""

    def forward(self, xs):
        out = []
        for i in range(self.nl):
            x = self.m[i](xs[i])
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous().sigmoid()
            yv, xv = torch.meshgrid(torch.arange(ny, device=x.device), torch.arange(nx, device=x.device), indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(x.dtype) - 0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).to(x.dtype)
            xy = (x[..., :2] * 2 + grid) * self.stride[i]
            wh = (x[..., 2:4] * 2) ** 2 * anchor_grid
            out.append(torch.cat((xy, wh, x[..., 4:]), 4).view(bs, -1, self.no))
        return torch.cat(out, 1)


class DetectionModel(nn.Module):
    def forward(self, x):
        saved = []
        for m in self.model:
            if m.f != -1:
                x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
            x = m(x)
            saved.append(x if m.i in self.save else None)
        return x


Model = DetectionModel  # older checkpoints
_LEGACY = {name: obj for name, obj in globals().items() if isinstance(obj, type) and issubclass(obj, nn.Module)}
_ALLOWED_PREFIXES = ("torch", "collections", "numpy", "_codecs", "copyreg", "pathlib", "argparse")
_SAFE_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "slice", "bool", "int", "float", "complex", "str",
                  "bytes", "bytearray", "range", "object", "NoneType"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module in ("models.yolo", "models.common", "models.experimental"):
            if name in _LEGACY:
                return _LEGACY[name]
            raise pickle.UnpicklingError(f"unsupported YOLOv5 module {module}.{name}")
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return super().find_class("builtins", name)
        if module.split(".")[0] in _ALLOWED_PREFIXES:
            return super().find_class(module, name)
        if module.startswith("utils."):  # e.g. utils.activations / utils.general helpers in old files
            raise pickle.UnpicklingError(f"unsupported YOLOv5 object {module}.{name}")
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")


_pickle_module = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="yolov5_pickle")


def load_checkpoint(path: Path) -> nn.Module:
    ckpt = torch.load(path, map_location="cpu", pickle_module=_pickle_module, weights_only=False)
    net = (ckpt.get("ema") or ckpt["model"]) if isinstance(ckpt, dict) else ckpt
    return net.float().eval()


class LegacyYolov5:
    """Letterbox, forward, NMS, boxes back in image pixels: what yolov5's detect.py does."""

    def __init__(self, path: Path, device: str):
        self.device = torch.device(device)
        self.net = load_checkpoint(path).to(self.device)
        self.half = self.device.type == "cuda"
        if self.half:
            self.net.half()
        names = self.net.names
        self.names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
        self.stride = int(max(float(s) for s in self.net.stride))

    def _letterbox(self, image: Image.Image, size: int) -> tuple[torch.Tensor, float, tuple[float, float]]:
        gain = min(size / image.width, size / image.height)
        w, h = round(image.width * gain), round(image.height * gain)
        pw, ph = (math.ceil(w / self.stride) * self.stride - w) / 2, (math.ceil(h / self.stride) * self.stride - h) / 2
        canvas = Image.new("RGB", (w + round(2 * pw), h + round(2 * ph)), (114, 114, 114))
        canvas.paste(image.resize((w, h), Image.BILINEAR), (round(pw - 0.1), round(ph - 0.1)))
        array = torch.from_numpy(np.asarray(canvas).transpose(2, 0, 1).copy())
        return array, gain, (round(pw - 0.1), round(ph - 0.1))

    @torch.inference_mode()
    def detect(self, images: Sequence[Image.Image], options: Options) -> list[list[Detection]]:
        results = []
        for image in images:
            tensor, gain, (pad_x, pad_y) = self._letterbox(image, options.imgsz)
            x = tensor.to(self.device).unsqueeze(0)
            x = (x.half() if self.half else x.float()) / 255
            pred = self.net(x)[0].float()
            pred = pred[pred[:, 4] > options.conf]
            scores, cls = (pred[:, 5:] * pred[:, 4:5]).max(1)
            keep = scores > options.conf
            if options.classes:
                keep &= torch.isin(cls, torch.tensor(options.classes, device=cls.device))
            pred, scores, cls = pred[keep], scores[keep], cls[keep]
            xy, wh = pred[:, :2], pred[:, 2:4]
            boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
            kept = torchvision.ops.batched_nms(boxes, scores, cls, options.iou)[:options.max_det]
            boxes = (boxes[kept] - torch.tensor([pad_x, pad_y, pad_x, pad_y], device=boxes.device)) / gain
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.height)
            results.append([Detection(int(c), float(s), *map(float, b))
                            for b, s, c in zip(boxes.tolist(), scores[kept].tolist(), cls[kept].tolist(), strict=True)])
        return results
