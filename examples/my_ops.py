"""An example of a user's own ops, registered without editing the package.

    darts-forge search --plugin examples/my_ops.py \
        --primitives none,skip_connect,max_pool_3x3,sep_conv_3x3,conv_3x3_gelu

A factory takes ``(C, stride, affine)`` and returns a module mapping (B, C, H, W) to (B, C, H/stride, W/stride).
"""
import torch.nn as nn

from darts import register_op


class ConvGELU(nn.Module):
    """GELU -> 3x3 conv -> BN: a plain conv with a smooth activation."""

    def __init__(self, C, stride, affine):
        super().__init__()
        self.op = nn.Sequential(
            nn.GELU(),
            nn.Conv2d(C, C, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


@register_op("conv_3x3_gelu")
def conv_3x3_gelu(C, stride, affine):
    return ConvGELU(C, stride, affine)
