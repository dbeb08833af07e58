"""BigGAN generator of IC-GAN / CC-IC-GAN, with the module layout of facebookresearch/ic_gan.

Written for genview; the module tree is laid out so that ``state_dict()`` has exactly the keys and
shapes of ic_gan's ``BigGAN_PyTorch/BigGAN.py::Generator`` (``shared``, ``shared_feat``, ``linear``,
``blocks.{i}.{j}.*``, ``output_layer.{0,2}.*``, spectral-norm buffers ``u0``/``sv0``, batch-norm
buffers ``stored_mean``/``stored_var``), so the published ``G_ema*.pth`` files load strictly.

The network is inference-only: it always runs in eval mode, where ic_gan (a) normalises with the
stored batch-norm statistics and (b) computes each spectral norm from the stored ``u0`` with one
power-iteration step *without* writing ``u0`` back (ic_gan only updates it in training mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

#: Channel multipliers and stage resolutions of ic_gan's ``G_arch`` (BigGAN.py), per output size.
_ARCH_MULTIPLIERS: dict[int, tuple[list[int], list[int]]] = {
    512: ([16, 16, 8, 8, 4, 2, 1], [16, 8, 8, 4, 2, 1, 1]),
    256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
    128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
    64: ([16, 16, 8, 4], [16, 8, 4, 2]),
    32: ([4, 4, 4], [4, 4, 4]),
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One upsampling stage of the generator: a residual block, optionally followed by self-attention."""

    in_channels: int
    out_channels: int
    resolution: int
    attention: bool


def generator_stages(ch: int, attention: str, resolution: int) -> list[Stage]:
    """Return the stages of ic_gan's ``G_arch(ch, attention)[resolution]`` (attention given as e.g. ``"64"`` or ``"32_64"``)."""
    if resolution not in _ARCH_MULTIPLIERS:
        raise ValueError(f"unsupported BigGAN resolution {resolution}; ic_gan defines {sorted(_ARCH_MULTIPLIERS)}")
    ins, outs = _ARCH_MULTIPLIERS[resolution]
    attn_res = {int(item) for item in str(attention).split("_") if item.strip()}
    return [
        Stage(ch * i, ch * o, 8 * 2**index, 8 * 2**index in attn_res)
        for index, (i, o) in enumerate(zip(ins, outs))
    ]


@dataclasses.dataclass(frozen=True)
class BigGANConfig:
    """Architecture settings, named as in ic_gan's config (``state_dict_best*.pth['config']``).

    Defaults are the published ImageNet 256x256 IC-GAN (``icgan_res256.json`` + ic_gan's parser defaults).
    ``instance_sz`` is the instance-feature size; ic_gan hard-codes 2048 (``shared_feat = SNLinear(2048, ...)``).
    """

    resolution: int = 256
    G_ch: int = 96
    dim_z: int = 120
    bottom_width: int = 4
    hier: bool = True
    G_attn: str = "64"
    n_classes: int = 1000
    shared_dim: int = 128
    shared_dim_feat: int = 512
    instance_sz: int = 2048
    class_cond: bool = False
    instance_cond: bool = True
    SN_eps: float = 1e-6
    BN_eps: float = 1e-5

    @property
    def stages(self) -> list[Stage]:
        """The generator's stages."""
        return generator_stages(self.G_ch, self.G_attn, self.resolution)

    @property
    def num_slots(self) -> int:
        """How many pieces z is split into (1 + one per stage with ``hier``)."""
        return len(self.stages) + 1 if self.hier else 1

    @property
    def z_chunk_size(self) -> int:
        """Size of each z piece with ``hier`` (0 without)."""
        return self.dim_z // self.num_slots if self.hier else 0

    @property
    def z_dim(self) -> int:
        """Size of z actually used: ic_gan rounds ``dim_z`` down to a multiple of the slot count (120 -> 119)."""
        return self.z_chunk_size * self.num_slots if self.hier else self.dim_z

    @property
    def class_embed_dim(self) -> int:
        """Size of the class embedding ``shared`` (ic_gan: ``shared_dim`` or ``dim_z`` when 0)."""
        return self.shared_dim if self.shared_dim > 0 else self.dim_z

    @property
    def condition_dim(self) -> int:
        """Input size of every conditional batch-norm's gain/bias layers."""
        size = self.z_chunk_size
        if self.class_cond:
            size += self.class_embed_dim
        if self.instance_cond:
            size += self.shared_dim_feat
        return size

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (ic_gan key names)."""
        return dataclasses.asdict(self)


#: ic_gan config values genview's network implements; any other value is refused, not approximated.
_REQUIRED_SETTINGS: dict[str, tuple[Any, ...]] = {
    "model": ("BigGAN",),
    "model_backbone": ("biggan",),
    "G_param": ("SN",),
    "norm_style": ("bn",),
    "G_shared": (True,),
    "G_shared_feat": (True,),
    "cross_replica": (False,),
    "mybn": (False,),
    "num_G_SVs": (1,),
    "G_nl": ("relu", "inplace_relu", "ir"),
    "instance_cond": (True,),
}

#: Keys read from an ic_gan config that ic_gan's ``Generator`` signature gives a default for.
_GENERATOR_DEFAULTS: dict[str, Any] = {
    "bottom_width": 4,
    "n_classes": 1000,
    "SN_eps": 1e-12,
    "BN_eps": 1e-5,
    "instance_sz": 2048,
}

_REQUIRED_KEYS = ("resolution", "G_ch", "dim_z", "hier", "G_attn", "shared_dim", "shared_dim_feat", "class_cond", "instance_cond")


def config_from_ic_gan(config: Mapping[str, Any], source: str = "config") -> BigGANConfig:
    """Build a BigGANConfig from an ic_gan config dict; refuse settings this network does not implement.

    Keys missing from ``config`` get the default of ic_gan's ``Generator`` signature (what
    ``Generator(**config)`` would use); the required architecture keys must be present.
    """
    missing = [key for key in _REQUIRED_KEYS if key not in config]
    if missing:
        raise ValueError(f"{source}: ic_gan config lacks {', '.join(missing)}")
    for key, allowed in _REQUIRED_SETTINGS.items():
        if key in config and config[key] not in allowed:
            raise ValueError(
                f"{source}: unsupported ic_gan setting {key}={config[key]!r} "
                f"(genview implements {key} in {list(allowed)})"
            )
    values = {key: config.get(key, default) for key, default in _GENERATOR_DEFAULTS.items()}
    values.update({key: config[key] for key in _REQUIRED_KEYS})
    return BigGANConfig(
        resolution=int(values["resolution"]),
        G_ch=int(values["G_ch"]),
        dim_z=int(values["dim_z"]),
        bottom_width=int(values["bottom_width"]),
        hier=bool(values["hier"]),
        G_attn=str(values["G_attn"]),
        n_classes=int(values["n_classes"]),
        shared_dim=int(values["shared_dim"]),
        shared_dim_feat=int(values["shared_dim_feat"]),
        instance_sz=int(values["instance_sz"]),
        class_cond=bool(values["class_cond"]),
        instance_cond=bool(values["instance_cond"]),
        SN_eps=float(values["SN_eps"]),
        BN_eps=float(values["BN_eps"]),
    )


def config_to_ic_gan(config: BigGANConfig, **extra: Any) -> dict[str, Any]:
    """Return the ic_gan-style config dict (architecture keys plus the fixed settings ic_gan reads)."""
    out = config.to_dict()
    out.update(
        {
            "model": "BigGAN",
            "model_backbone": "biggan",
            "G_param": "SN",
            "norm_style": "bn",
            "G_shared": True,
            "G_shared_feat": True,
            "cross_replica": False,
            "mybn": False,
            "num_G_SVs": 1,
            "num_G_SV_itrs": 1,
            "G_nl": "relu",
            "G_init": "ortho",
            "G_depth": 1,
            "G_eval_mode": True,
            "ema": True,
            "use_ema": True,
        }
    )
    out.update(extra)
    return out


def _normalized_weight(weight: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    """Return weight / sigma, sigma from one power-iteration step from ``u`` (ic_gan's eval-mode ``SN.W_``).

    Computed in float32 with autocast off: the singular value estimate is a small reduction
    that bf16 would distort, and it is cheap next to the convolutions.
    """
    no_autocast = (
        torch.autocast(device_type=weight.device.type, enabled=False)
        if weight.device.type in ("cuda", "cpu")
        else contextlib.nullcontext()  # e.g. "meta" (parameter/FLOP counting) has no autocast
    )
    with no_autocast:
        w_mat = weight.float().flatten(1)
        u = u.float()
        v = F.normalize(u @ w_mat, eps=eps)
        u_next = F.normalize(v @ w_mat.t(), eps=eps)
        sigma = ((v @ w_mat.t()) @ u_next.t()).squeeze()
        return weight.float() / sigma


def _init_sn_cache(module: nn.Module) -> None:
    """Give an SN layer an (empty) cache of its normalised weight, dropped whenever a state_dict is loaded."""
    # Non-persistent: the checkpoint format (ic_gan's keys) is unchanged, and .to() moves the cache along.
    module.register_buffer("weight_sn", None, persistent=False)
    module.register_load_state_dict_post_hook(lambda mod, _keys: setattr(mod, "weight_sn", None))


def _sn_weight(module: nn.Module) -> torch.Tensor:
    """Return the layer's normalised weight: the cached one when `cache_spectral_norms` has run, else computed now."""
    cached = module.weight_sn
    if cached is not None:
        return cached
    return _normalized_weight(module.weight, module.u0, module.eps)


def cache_spectral_norms(network: nn.Module) -> int:
    """Compute every SN layer's normalised weight once and keep it; return how many layers were cached.

    In eval mode ic_gan's spectral norm is a pure function of (weight, u0), which never change at
    inference, yet recomputing it costs a power-iteration step per layer per forward (49 layers in
    IC-GAN 256). The cache holds exactly what `_normalized_weight` returns, so outputs are identical.
    """
    count = 0
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (SNConv2d, SNLinear)):
                module.weight_sn = None  # recompute from the current weights, not an older cache
                module.weight_sn = _normalized_weight(module.weight, module.u0, module.eps).detach()
                count += 1
    return count


class SNConv2d(nn.Conv2d):
    """Conv2d with ic_gan's spectral norm (buffers ``u0`` [1, out] and ``sv0`` [1])."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        bias: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.eps = eps
        self.register_buffer("u0", torch.randn(1, out_channels))
        self.register_buffer("sv0", torch.ones(1))
        _init_sn_cache(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the spectrally normalised weight."""
        return self._conv_forward(x, _sn_weight(self), self.bias)


class SNLinear(nn.Linear):
    """Linear with ic_gan's spectral norm (buffers ``u0`` [1, out] and ``sv0`` [1])."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-6):
        super().__init__(in_features, out_features, bias=bias)
        self.eps = eps
        self.register_buffer("u0", torch.randn(1, out_features))
        self.register_buffer("sv0", torch.ones(1))
        _init_sn_cache(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the spectrally normalised linear map."""
        return F.linear(x, _sn_weight(self), self.bias)


class ConditionalBatchNorm(nn.Module):
    """ic_gan's ``ccbn``: stored-statistics batch norm with gain ``1 + gain(y)`` and bias ``bias(y)``."""

    def __init__(self, channels: int, condition_dim: int, eps: float = 1e-5, sn_eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gain = SNLinear(condition_dim, channels, bias=False, eps=sn_eps)
        self.bias = SNLinear(condition_dim, channels, bias=False, eps=sn_eps)
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Normalise x with the stored statistics, then apply the per-sample gain and bias from y."""
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, False, 0.1, self.eps)
        return out * gain + bias


class OutputBatchNorm(nn.Module):
    """ic_gan's unconditional ``bn`` of the output layer (parameters ``gain``/``bias``, stored statistics)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with the stored statistics and the learned affine."""
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, False, 0.1, self.eps)


class SelfAttention(nn.Module):
    """SA-GAN non-local block as released in BigGAN (keys ``theta``, ``phi``, ``g``, ``o``, ``gamma``)."""

    def __init__(self, channels: int, sn_eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.theta = SNConv2d(channels, channels // 8, kernel_size=1, padding=0, bias=False, eps=sn_eps)
        self.phi = SNConv2d(channels, channels // 8, kernel_size=1, padding=0, bias=False, eps=sn_eps)
        self.g = SNConv2d(channels, channels // 2, kernel_size=1, padding=0, bias=False, eps=sn_eps)
        self.o = SNConv2d(channels // 2, channels, kernel_size=1, padding=0, bias=False, eps=sn_eps)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from every position to the 2x2-max-pooled positions; add ``gamma`` times the result."""
        batch, _, height, width = x.shape
        query = self.theta(x).flatten(2).transpose(1, 2)  # [B, HW, C/8]
        key = F.max_pool2d(self.phi(x), [2, 2]).flatten(2).transpose(1, 2)  # [B, HW/4, C/8]
        value = F.max_pool2d(self.g(x), [2, 2]).flatten(2).transpose(1, 2)  # [B, HW/4, C/2]
        # BigGAN's softmax(theta^T phi) has no 1/sqrt(d) scaling, hence scale=1.
        attended = F.scaled_dot_product_attention(query, key, value, scale=1.0)
        attended = attended.transpose(1, 2).reshape(batch, self.channels // 2, height, width)
        return self.gamma * self.o(attended) + x


class GBlock(nn.Module):
    """Residual up-block: ccbn-ReLU-up-conv3x3-ccbn-ReLU-conv3x3, plus up-conv1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, condition_dim: int, bn_eps: float, sn_eps: float):
        super().__init__()
        self.conv1 = SNConv2d(in_channels, out_channels, eps=sn_eps)
        self.conv2 = SNConv2d(out_channels, out_channels, eps=sn_eps)
        # Every generator stage upsamples, so ic_gan always has the learnable shortcut.
        self.conv_sc = SNConv2d(in_channels, out_channels, kernel_size=1, padding=0, eps=sn_eps)
        self.bn1 = ConditionalBatchNorm(in_channels, condition_dim, eps=bn_eps, sn_eps=sn_eps)
        self.bn2 = ConditionalBatchNorm(out_channels, condition_dim, eps=bn_eps, sn_eps=sn_eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Apply the block conditioned on y."""
        h = F.relu(self.bn1(x, y))
        h = F.interpolate(h, scale_factor=2)
        x = F.interpolate(x, scale_factor=2)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.conv_sc(x)


class BigGANGenerator(nn.Module):
    """IC-GAN / CC-IC-GAN generator G(z, instance feature[, class]) -> image in [-1, 1]."""

    def __init__(self, config: BigGANConfig):
        super().__init__()
        if not config.instance_cond:
            raise ValueError("BigGANGenerator implements instance-conditioned models only (instance_cond=True)")
        self.config = config
        stages = config.stages
        sn_eps, bn_eps = config.SN_eps, config.BN_eps
        # ic_gan always builds the class embedding when G_shared, even for IC-GAN, where it is unused.
        self.shared = nn.Embedding(config.n_classes, config.class_embed_dim)
        self.shared_feat = SNLinear(config.instance_sz, config.shared_dim_feat, eps=sn_eps)
        self.linear = SNLinear(
            config.z_dim // config.num_slots, stages[0].in_channels * config.bottom_width**2, eps=sn_eps
        )
        blocks = []
        for stage in stages:
            layers: list[nn.Module] = [
                GBlock(stage.in_channels, stage.out_channels, config.condition_dim, bn_eps, sn_eps)
            ]
            if stage.attention:
                layers.append(SelfAttention(stage.out_channels, sn_eps=sn_eps))
            blocks.append(nn.ModuleList(layers))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(
            OutputBatchNorm(stages[-1].out_channels, eps=bn_eps),
            nn.ReLU(),
            SNConv2d(stages[-1].out_channels, 3, eps=sn_eps),
        )
        #: channels_last on CUDA (set by the view generator); activations follow the weights' layout.
        self.memory_format = torch.contiguous_format
        self.eval()

    def train(self, mode: bool = True) -> "BigGANGenerator":
        """Stay in eval mode: genview only runs inference (training-mode BN/SN semantics are not implemented)."""
        if mode:
            raise RuntimeError("BigGANGenerator is inference-only; it cannot be put in training mode")
        return super().train(False)

    def init_weights(self) -> None:
        """Initialise like ic_gan (orthogonal weights for convs, linears and embeddings) from the global RNG."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.init.orthogonal_(module.weight)

    def forward(self, z: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Return images [B, 3, R, R] in [-1, 1] from z [B, z_dim], features [B, instance_sz], labels [B]."""
        cfg = self.config
        conditions = []
        if cfg.class_cond:
            if labels is None:
                raise ValueError("a class-conditional generator needs labels")
            conditions.append(self.shared(labels))
        conditions.append(self.shared_feat(feats))
        y = torch.cat(conditions, dim=1)
        if cfg.hier:
            chunks = torch.split(z, cfg.z_chunk_size, dim=1)
            z = chunks[0]
            # ic_gan concatenates the condition first, then the z chunk.
            ys = [torch.cat([y, chunk], dim=1) for chunk in chunks[1:]]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z).view(z.size(0), -1, cfg.bottom_width, cfg.bottom_width)
        h = h.contiguous(memory_format=self.memory_format)
        for index, layers in enumerate(self.blocks):
            for layer in layers:
                h = layer(h, ys[index])
        return torch.tanh(self.output_layer(h))
