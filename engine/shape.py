"""The network's shape as settings, and what it costs, without torch.

A :class:`NetShape` is what a student varies when designing under a parameter budget (the
report: "adjusting both the number and size of the network layers"): the stages of
BasicBlocks (blocks, channels and stride per stage), the stem's channels, where the
Squeeze-and-Excitation blocks sit, their reduction, and a width multiplier on every
channel count. The default is the report's network: exactly 4,993,166 parameters.

Everything here is arithmetic on the shape (parameters, FLOPs, activation memory, a
budget line), so ``cifar-tui model`` and the run form answer without importing torch;
:class:`engine.model.SEResNet` builds the same network (a test checks that the two agree).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

SE_MODES = ("stem", "blocks", "none")
MAX_STAGES = 6
IMAGE_SIZE = 32
# A shape past these cannot be trained on any machine cifar-tui targets (they are refused
# whatever the budget, before anything is built, instead of an out-of-memory crash).
MAX_CHANNELS = 4096  # per layer, after the width multiplier
MAX_BLOCKS = 200  # in all stages together
MAX_PARAMS = 200_000_000
MAX_ACTIVATION_BYTES = 512 << 20  # per training image
DEFAULT_MAX_PARAMS = 5_000_000  # the course's budget


class ShapeError(ValueError):
    """A shape that cannot be built or trained. One line that names the setting."""


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at a width multiplier (at least 4 so the SE bottleneck exists)."""
    return max(4, int(round(channels * width)))


@dataclass(frozen=True)
class NetShape:
    blocks: tuple[int, ...] = (4, 3, 2, 3)
    channels: tuple[int, ...] = (64, 128, 128, 256)
    strides: tuple[int, ...] = (1, 2, 1, 2)
    stem_channels: int = 64
    se: str = "stem"
    se_reduction: int = 16
    width: float = 1.0
    num_classes: int = field(default=10, compare=False)

    # ------------------------------------------------------------------ building

    @classmethod
    def parse(cls, **given: Any) -> "NetShape":
        """A shape from user settings (``blocks="4,3,2,3"`` or a list, ...); None keeps the
        default. Raises :class:`ShapeError`."""
        kw: dict[str, Any] = {}
        for key in ("blocks", "channels", "strides"):
            v = given.get(key)
            if v is not None:
                kw[key] = _int_list(key, v)
        for key in ("stem_channels", "se_reduction", "num_classes"):
            v = given.get(key)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ShapeError(f"--{key.replace('_', '-')} must be a whole number (got {str(v)[:40]!r})")
                kw[key] = v
        if given.get("se") is not None:
            kw["se"] = given["se"]
        if given.get("width") is not None:
            kw["width"] = given["width"]
        return cls(**kw).validate()

    @classmethod
    def from_record(cls, record: Any, *, width: float = 1.0, num_classes: int = 10) -> "NetShape":
        """The shape a checkpoint or config recorded (None: the report's network at ``width``,
        as written before shapes were recorded). Raises :class:`ShapeError`."""
        if record is None:
            return cls(width=width, num_classes=num_classes).validate()
        if not isinstance(record, dict):
            raise ShapeError("the recorded network shape is not a record of settings")
        known = {"blocks", "channels", "strides", "stem_channels", "se", "se_reduction", "width"}
        return cls.parse(**{k: v for k, v in record.items() if k in known}, num_classes=num_classes)

    def to_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("num_classes")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def validate(self) -> "NetShape":
        n = len(self.blocks)
        if not 1 <= n <= MAX_STAGES:
            raise ShapeError(f"--blocks gives {n} stages; a network has 1 to {MAX_STAGES}")
        for key in ("channels", "strides"):
            if len(getattr(self, key)) != n:
                raise ShapeError(f"--{key} gives {len(getattr(self, key))} values for {n} stages (--blocks); "
                                 f"give one per stage")
        if any(b < 1 for b in self.blocks):
            raise ShapeError("--blocks: every stage needs at least 1 block")
        if sum(self.blocks) > MAX_BLOCKS:
            raise ShapeError(f"--blocks: {sum(self.blocks)} blocks in all cannot be trained here; use at most {MAX_BLOCKS}")
        if any(s not in (1, 2) for s in self.strides):
            raise ShapeError("--strides: each stage's stride is 1 or 2")
        if sum(s == 2 for s in self.strides) > 4:
            raise ShapeError("--strides: more than 4 stride-2 stages would shrink a 32x32 image below 2x2")
        if self.se not in SE_MODES:
            raise ShapeError(f"--se {str(self.se)[:20]!r}: use one of {', '.join(SE_MODES)}")
        if not isinstance(self.width, (int, float)) or isinstance(self.width, bool) or not (
                math.isfinite(self.width) and 0 < self.width <= 8):
            raise ShapeError(f"--width must be a positive number up to 8 (got {self.width!r})")
        if not 1 <= self.se_reduction <= 1024:
            raise ShapeError("--se-reduction must be between 1 and 1024")
        if not 2 <= self.num_classes <= 1000:
            raise ShapeError("a network has 2 to 1000 classes")
        for name, c in (("--stem-channels", self.stem_channels), *(("--channels", c) for c in self.channels)):
            if c < 1:
                raise ShapeError(f"{name} must be at least 1")
            if scaled(c, self.width) > MAX_CHANNELS:
                raise ShapeError(f"{name} {c} at width {self.width:g} gives {scaled(c, self.width):,} channels; "
                                 f"a layer of more than {MAX_CHANNELS:,} cannot be trained here")
        if (p := self.params()) > MAX_PARAMS:
            raise ShapeError(f"this network has {p:,} parameters; more than {MAX_PARAMS:,} cannot be trained here")
        if (a := self.activation_bytes()) > MAX_ACTIVATION_BYTES:
            raise ShapeError(f"this network keeps {a / 2**20:,.0f} MiB of activations per training image; "
                             f"more than {MAX_ACTIVATION_BYTES >> 20} MiB cannot fit in memory")
        return self

    # ------------------------------------------------------------------ layers

    def layers(self) -> list[dict[str, Any]]:
        """The stem, each stage and the head: channels out, spatial size out, parameters,
        forward FLOPs (2 per multiply-add of convolutions and the linear head) and the bytes
        of activations training keeps per image (fp32; each conv's output, its BatchNorm's
        and its ReLU's, and the SE gate's)."""
        w, r = self.width, self.se_reduction
        size = IMAGE_SIZE
        stem = scaled(self.stem_channels, w)
        out = [_layer("stem", 1, stem, 1, size, *_add(_conv(3, stem, 3, size), _bn(stem, size),
                                                      _se(stem, r, size) if self.se == "stem" else (0, 0, 0)))]
        cin = stem
        for i, (n, c, s) in enumerate(zip(self.blocks, self.channels, self.strides), 1):
            cout = scaled(c, w)
            total = (0, 0, 0)
            for b in range(n):
                stride = s if b == 0 else 1
                size = -(-size // stride)
                parts = [_conv(cin, cout, 3, size), _bn(cout, size), _conv(cout, cout, 3, size), _bn(cout, size)]
                if stride != 1 or cin != cout:
                    parts += [_conv(cin, cout, 1, size), _bn(cout, size)]
                if self.se == "blocks":
                    parts.append(_se(cout, r, size))
                parts.append((0, 0, cout * size * size * 4))  # the addition's ReLU output
                total = _add(total, *parts)
                cin = cout
            out.append(_layer(f"stage {i}", n, cout, s, size, *total))
        out.append(_layer("head", 1, self.num_classes, 1, 1, cin * self.num_classes + self.num_classes,
                          2 * cin * self.num_classes, 4 * (cin + self.num_classes)))
        return out

    def params(self) -> int:
        return sum(x["params"] for x in self.layers())

    def flops(self) -> int:
        return sum(x["flops"] for x in self.layers())

    def activation_bytes(self) -> int:
        return sum(x["activation_bytes"] for x in self.layers())

    def summary(self, max_params: int = DEFAULT_MAX_PARAMS) -> dict[str, Any]:
        layers = self.layers()
        return {"params": sum(x["params"] for x in layers), "flops": sum(x["flops"] for x in layers),
                "activation_bytes": sum(x["activation_bytes"] for x in layers),
                "max_params": max_params, "budget": budget_line(sum(x["params"] for x in layers), max_params),
                "within_budget": sum(x["params"] for x in layers) <= max_params,
                "shape": self.to_record(),
                "stages": [{"blocks": x["blocks"], "channels": x["channels"], "stride": x["stride"],
                            "output": [x["channels"], x["size"], x["size"]], "params": x["params"]}
                           for x in layers if x["name"].startswith("stage")],
                "layers": layers}

    def describe(self) -> str:
        """One short line, e.g. ``4,3,2,3 x 64,128,128,256 /1,2,1,2 SE stem``."""
        j = lambda xs: ",".join(str(x) for x in xs)  # noqa: E731
        w = "" if self.width == 1 else f" width {self.width:g}"
        return f"{j(self.blocks)} x {j(self.channels)} /{j(self.strides)} stem {self.stem_channels} SE {self.se}{w}"


def budget_line(params: int, max_params: int) -> str:
    if params <= max_params:
        return f"{params:,} of {max_params:,} ({100 * params / max_params:.1f}%)"
    return f"over by {params - max_params:,} ({params:,} of {max_params:,})"


def _int_list(key: str, v: Any) -> tuple[int, ...]:
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(",")]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ShapeError(f"--{key} takes whole numbers separated by commas, such as 4,3,2,3 "
                             f"(got {v[:40]!r})") from None
    if isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v) and len(v) <= 64:
        return tuple(v)
    raise ShapeError(f"--{key} takes whole numbers separated by commas, such as 4,3,2,3")


def _conv(cin: int, cout: int, k: int, size: int) -> tuple[int, int, int]:
    """(parameters, FLOPs, activation bytes) of a bias-free k x k conv with output size."""
    return k * k * cin * cout, 2 * k * k * cin * cout * size * size, 4 * cout * size * size


def _bn(c: int, size: int) -> tuple[int, int, int]:
    return 2 * c, 0, 2 * 4 * c * size * size  # its output and the ReLU's after it


def _se(c: int, r: int, size: int) -> tuple[int, int, int]:
    h = max(1, c // r)
    return c * h + h + h * c + c, 2 * (c * h + h * c), 4 * c * size * size  # the gated output


def _add(*parts: tuple[int, int, int]) -> tuple[int, int, int]:
    return (sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))


def _layer(name: str, blocks: int, channels: int, stride: int, size: int, params: int, flops: int,
           act: int) -> dict[str, Any]:
    return {"name": name, "blocks": blocks, "channels": channels, "stride": stride, "size": size,
            "params": params, "flops": flops, "activation_bytes": act}
