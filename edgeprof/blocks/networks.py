"""Whole YOLO-scale networks made of edgeprof's blocks: a YOLOv8-style detector at the n and s scales.

Backbone: a stride-2 stem, four stages of stride-2 Conv + C2f, SPPF. Neck: upsampling and
concatenation down to P3, then stride-2 convs back up to P5 (a PAN). Head: for each of P3, P4, P5 a box
branch (Conv, Conv, 1x1 conv to 4 x 16 distribution bins) and a class branch (Conv, Conv, 1x1 conv to 80
classes), flattened and concatenated; class scores go through a final Sigmoid, which is part of the
detector's output, not an activation of a conv block (``edgeprof swap`` leaves it alone). Channel and
depth multipliers are YOLOv8's; the activation is passed to every Conv, one fresh module per layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeprof.blocks.yolo import SPPF, C2f, Conv

# name -> (depth multiple, width multiple, max channels), as YOLOv8's model files define them
YOLO_SCALES: dict[str, tuple[float, float, int]] = {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024)}
NUM_CLASSES = 80
REG_MAX = 16


def _ch(c: int, width: float, max_channels: int) -> int:
    return int(math.ceil(min(c, max_channels) * width / 8) * 8)


def _n(n: int, depth: float) -> int:
    return max(round(n * depth), 1)


class YoloDetector(nn.Module):
    """A YOLOv8-style detector; ``forward`` returns (batch, 4 * 16 + 80, anchors)."""

    def __init__(self, scale: str = "n", act="silu", nc: int = NUM_CLASSES) -> None:
        super().__init__()
        d, w, mc = YOLO_SCALES[scale]
        c = [_ch(x, w, mc) for x in (64, 128, 256, 512, 1024)]
        self.stem = Conv(3, c[0], 3, 2, act=act)
        self.down2, self.c2f2 = Conv(c[0], c[1], 3, 2, act=act), C2f(c[1], c[1], _n(3, d), True, act=act)
        self.down3, self.c2f3 = Conv(c[1], c[2], 3, 2, act=act), C2f(c[2], c[2], _n(6, d), True, act=act)
        self.down4, self.c2f4 = Conv(c[2], c[3], 3, 2, act=act), C2f(c[3], c[3], _n(6, d), True, act=act)
        self.down5, self.c2f5 = Conv(c[3], c[4], 3, 2, act=act), C2f(c[4], c[4], _n(3, d), True, act=act)
        self.sppf = SPPF(c[4], c[4], 5, act=act)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.neck4 = C2f(c[4] + c[3], c[3], _n(3, d), act=act)
        self.neck3 = C2f(c[3] + c[2], c[2], _n(3, d), act=act)
        self.pan3 = Conv(c[2], c[2], 3, 2, act=act)
        self.neck4b = C2f(c[2] + c[3], c[3], _n(3, d), act=act)
        self.pan4 = Conv(c[3], c[3], 3, 2, act=act)
        self.neck5b = C2f(c[3] + c[4], c[4], _n(3, d), act=act)
        c2, c3 = max(16, c[2] // 4, REG_MAX * 4), max(c[2], min(nc, 100))
        self.box = nn.ModuleList(
            nn.Sequential(Conv(ch, c2, 3, act=act), Conv(c2, c2, 3, act=act), nn.Conv2d(c2, 4 * REG_MAX, 1))
            for ch in (c[2], c[3], c[4])
        )
        self.cls = nn.ModuleList(
            nn.Sequential(Conv(ch, c3, 3, act=act), Conv(c3, c3, 3, act=act), nn.Conv2d(c3, nc, 1))
            for ch in (c[2], c[3], c[4])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c2f2(self.down2(self.stem(x)))
        p3 = self.c2f3(self.down3(x))
        p4 = self.c2f4(self.down4(p3))
        p5 = self.sppf(self.c2f5(self.down5(p4)))
        n4 = self.neck4(torch.cat([self.up(p5), p4], 1))
        n3 = self.neck3(torch.cat([self.up(n4), p3], 1))
        n4b = self.neck4b(torch.cat([self.pan3(n3), n4], 1))
        n5b = self.neck5b(torch.cat([self.pan4(n4b), p5], 1))
        boxes, scores = [], []
        for feat, box, cls in zip((n3, n4b, n5b), self.box, self.cls, strict=True):
            boxes.append(box(feat).flatten(2))
            scores.append(cls(feat).flatten(2))
        return torch.cat([torch.cat(boxes, 2), torch.cat(scores, 2).sigmoid()], 1)


def build_yolo(spec) -> YoloDetector:
    """The whole network ``spec.block`` names (``yolo-n``, ``yolo-s``), for the block-kind registry."""
    return YoloDetector(spec.block.split("-", 1)[1], act=spec.act)
