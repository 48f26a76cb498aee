"""A block kind of the tests' own, in one file: ``--blocks tests._user_blocks:DWSEP``.

Depthwise-separable units (a depthwise 3x3 Conv-BN-Act, then a pointwise 1x1 Conv-BN-Act), ``depth`` of them
in a chain, as in MobileNet. Torch is imported inside the builder, so reading results needs no torch.
"""

from edgeprof.spec.blocks import BlockKind


def build_dwsep(spec):
    from torch import nn

    from edgeprof.blocks.yolo import Conv

    units = []
    for _ in range(spec.depth):
        units += [Conv(spec.width, spec.width, 3, 1, g=spec.width, act=spec.act),
                  Conv(spec.width, spec.width, 1, 1, act=spec.act)]
    return nn.Sequential(*units)


DWSEP = BlockKind(
    name="dwsep",
    summary="depthwise-separable units, --depths of them",
    builder="tests._user_blocks:build_dwsep",
    sizes=("depth",),
    params=lambda spec: spec.depth * (9 * spec.width + spec.width * spec.width),
)
