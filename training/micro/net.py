"""The microcontroller-class network: a MobileNetV2 (inverted residuals, ReLU6) built here, not taken
from keras.applications, because:
  * there are no ImageNet weights for alpha < 1 on this machine, so it trains from scratch anyway;
  * keras.applications pads stride-2 convolutions with an explicit ZeroPadding2D, which becomes a PAD op
    whose output is a second copy of the largest activation in the TFLM arena; 'same' padding does not;
  * its last 1x1 conv is fixed at 1280 channels (~143 K of the ~410 K weights at alpha 0.35), which this
    2-class problem does not need;
  * its BatchNorm momentum 0.999 needs far more steps than a few-minute CPU run gives.
Channel rounding follows MobileNetV2 (`make_divisible`, multiples of 8). Keras is imported inside the
functions that build the network, so that importing training stays light.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# (expansion t, output channels c, repeats n, first stride s) — MobileNetV2 Table 2
MOBILENETV2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class NetConfig:
    size: int = 96
    alpha: float = 0.35
    last_channels: int = 1280
    dropout: float = 0.2
    bn_momentum: float = 0.9

    def to_dict(self) -> dict:
        return asdict(self)


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def build_micro_net(cfg: NetConfig, num_classes: int, channels: int = 3):
    """Normalised image (size, size, channels) -> logits (no softmax: the loss and the export add it)."""
    import keras
    from keras import layers

    def bn_relu(x, name: str, relu: bool = True):
        x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input((cfg.size, cfg.size, channels), name="image")
    x = layers.Conv2D(
        make_divisible(32 * cfg.alpha), 3, strides=2, padding="same", use_bias=False, name="stem"
    )(inputs)
    x = bn_relu(x, "stem")
    c_in = int(x.shape[-1])
    k = 0
    for t, c, n, s in MOBILENETV2_BLOCKS:
        c_out = make_divisible(c * cfg.alpha)
        for i in range(n):
            name, block_in = f"block{k}", x
            if t != 1:
                x = layers.Conv2D(c_in * t, 1, use_bias=False, name=f"{name}_expand")(x)
                x = bn_relu(x, f"{name}_expand")
            x = layers.DepthwiseConv2D(
                3, strides=s if i == 0 else 1, padding="same", use_bias=False, name=f"{name}_dw"
            )(x)
            x = bn_relu(x, f"{name}_dw")
            x = layers.Conv2D(c_out, 1, use_bias=False, name=f"{name}_project")(x)
            x = bn_relu(x, f"{name}_project", relu=False)
            if i > 0 and c_in == c_out:
                x = layers.Add(name=f"{name}_add")([block_in, x])
            c_in, k = c_out, k + 1
    x = layers.Conv2D(cfg.last_channels, 1, use_bias=False, name="last")(x)
    x = bn_relu(x, "last")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if cfg.dropout > 0:
        x = layers.Dropout(cfg.dropout, name="dropout")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=f"micro_mnv2_a{cfg.alpha}_{cfg.size}_{cfg.last_channels}")


def with_softmax(model):
    """The exported form: probabilities in label order, like the main model."""
    import keras

    probs = keras.layers.Softmax(name="probs")(model.output)
    return keras.Model(model.input, probs, name=model.name)
