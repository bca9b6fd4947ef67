"""Feed-forward style network of Johnson et al. (pytorch/examples ``fast_neural_style``).

Architecture (unchanged from the reference): 9x9 conv, two stride-2 3x3 convs, five residual
blocks, two nearest-neighbour x2 upsamples each followed by a 3x3 conv, a final 9x9 conv. Every
conv is preceded by reflection padding (no zero borders that would show as dark frames) and every
conv but the last is followed by an affine InstanceNorm and ReLU. Options beyond the reference:
``residual`` (output = input + the net's change, starting as the identity) and ``colour_match`` (a
last whitening-colouring step onto the style's colour statistics, :mod:`segstyle.models.colour_transform`).

I/O convention (also what the exported ONNX graph takes and returns):

- input ``x``: float RGB, NCHW, values 0..1 (no mean/std normalisation; the registry records
  mean 0 / std 1). The reference works on 0..255; the convs are re-learnt, so the range is
  only a convention. Any H, W >= 5, odd too (the 9x9 conv's reflection padding needs 4 pixels
  each side; ``segstyle.pipelines.style.stylize`` edge-pads smaller images and crops back).
- output: float RGB, NCHW, the same N, H, W as the input. In ``train()`` mode the raw last conv
  (roughly 0..1, unbounded, so the loss still has gradients beyond the range); in ``eval()``
  mode clamped to 0..1 (an ONNX ``Clip``), which is what stylisation and export use. Consumers
  multiply by 255 and round to get 8-bit pixels.

Why the output is cropped: the two stride-2 convs and two x2 upsamples give ``4 * ceil(ceil(H/2)/2)``
rows, i.e. up to 3 extra rows/cols when H or W is not a multiple of 4. Cropping the bottom/right
keeps the pixel grid aligned (output pixel k still comes from the same low-resolution cell as in
the multiple-of-4 case) and is one ``Slice`` in ONNX, so the net stays fully convolutional with
dynamic H, W.

Why :class:`InstanceNorm32`: InstanceNorm sums squares over H*W values; in FP16 that overflows
(max 65504) for ordinary activations on large images, so an FP16 engine would output NaN/inf.
The module casts its input to float32, normalises, and casts back to the input dtype. In FP32
the casts are no-ops (the math and the state dict are exactly ``nn.InstanceNorm2d``'s); after
``.half()`` the exported graph reads ``Cast(fp32) -> InstanceNormalization (fp32) -> Cast(fp16)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from segstyle.models.colour_transform import ColourTransform
from segstyle.models.registry import register_model
from segstyle.core.errors import SegstyleError


class InstanceNorm32(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` computed in float32 whatever the input dtype (FP16-engine safe)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.instance_norm(
            x.float(),
            None, None,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            use_input_stats=True, momentum=0.0, eps=self.eps,
        )
        return y.to(x.dtype)


class ConvLayer(nn.Module):
    """Reflection pad + conv: 'same' padding without zero borders."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class UpsampleConvLayer(nn.Module):
    """Nearest x2 upsample then conv: avoids the checkerboard artifacts of transposed convs."""

    def __init__(self, cin: int, cout: int, kernel_size: int, upsample: int = 2):
        super().__init__()
        self.upsample = upsample
        self.conv = ConvLayer(cin, cout, kernel_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.upsample, mode="nearest"))


class ResidualBlock(nn.Module):
    """Two 3x3 conv + InstanceNorm with an identity shortcut (He et al., as in the reference)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = InstanceNorm32(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = InstanceNorm32(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


class TransformerNet(nn.Module):
    """0..1 RGB image in, stylised 0..1 RGB image of the same size out (see the module docstring)."""

    def __init__(self, num_residual: int = 5, base_channels: int = 32, residual: bool = False,
                 colour_match: bool = False):
        super().__init__()
        c = base_channels
        self.residual = residual
        # colour_match: the last step gives every output the style's colour mean and covariance
        # (models/colour_transform.py; its target is set from the style image before training).
        self.colour = ColourTransform() if colour_match else None
        self.conv1, self.in1 = ConvLayer(3, c, 9, 1), InstanceNorm32(c, affine=True)
        self.conv2, self.in2 = ConvLayer(c, 2 * c, 3, 2), InstanceNorm32(2 * c, affine=True)
        self.conv3, self.in3 = ConvLayer(2 * c, 4 * c, 3, 2), InstanceNorm32(4 * c, affine=True)
        self.res = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(num_residual)])
        self.deconv1, self.in4 = UpsampleConvLayer(4 * c, 2 * c, 3), InstanceNorm32(2 * c, affine=True)
        self.deconv2, self.in5 = UpsampleConvLayer(2 * c, c, 3), InstanceNorm32(c, affine=True)
        self.deconv3 = ConvLayer(c, 3, 9, 1)
        if residual:
            # Start as the identity (output = input): the network only has to learn the change the
            # style asks for, which takes tens of steps instead of the thousands the plain network
            # needs just to reproduce its input (see the module docstring).
            nn.init.zeros_(self.deconv3.conv.weight)
            nn.init.zeros_(self.deconv3.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        y = self.res(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        y = self.deconv3(y)[..., :h, :w]
        if self.residual:
            y = x + y
        if self.colour is not None:
            y = self.colour(y)
        if not self.training:
            y = y.clamp(0.0, 1.0)
        return y


@register_model(
    "transformer_net",
    task="style",
    description="Johnson et al. feed-forward style network (fast_neural_style), FP32 InstanceNorm",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_range="0..1 float RGB, NCHW, any H/W; output 0..1 float RGB, same shape (clamped in eval)",
)
def transformer_net(pretrained: bool = False, **kwargs) -> TransformerNet:
    """Build a :class:`TransformerNet`; it is trained per style, so no published weights exist."""
    if pretrained:
        raise SegstyleError("transformer_net has no pretrained weights (train one with `segstyle train-style`)")
    return TransformerNet(**kwargs)
