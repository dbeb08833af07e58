"""IC-GAN and CC-IC-GAN view generators (DA IC-GAN): BigGAN generator + ResNet-50 feature extractor.

On disk (ic_gan's release layout, read by ``from_pretrained`` and written by ``save_pretrained``)::

    DIR/G_ema_best.pth         generator state_dict (ic_gan: G_ema_best0.pth / G_ema_best1.pth)
    DIR/state_dict_best.pth    {"itr", "epoch", ..., "best_FID", "config": {ic_gan config}}
    DIR/swav_800ep_pretrain.pth.tar   IC-GAN's encoder: SwAV ResNet-50 (keys "module.*")
    DIR/resnet50-19c8e357.pth         CC-IC-GAN's encoder: torchvision supervised ResNet-50

Noise, per row from ``torch_generator(seed)`` on the CPU, by ``truncation_mode``:

* ``"scaled"`` (default): ``z = truncation * N(0, I)``. This is ic_gan's ``z_var``
  (``inference/generate_images.py`` and ``prepare_z_y`` call ``normal_(0, std=z_var)``) and the
  sigma of DA IC-GAN (0.8 for IC-GAN, 1.0 for CC-IC-GAN).
* ``"truncated"``: ``z ~ N(0, I)`` truncated to ``[-2 t, 2 t]`` (unit scale), what ic_gan's demo
  notebook (``truncnorm.rvs(-2*truncation, 2*truncation)``) and the first seed's released IC-GAN
  script (truncation 0.7) draw. Sampled by inverse CDF in float64, so one uniform per entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genview.generator.base import (
    ViewGenerator,
    WeightsInfo,
    WeightsNotFoundError,
    read_random_marker,
    sha256_files,
)
from genview.generator.biggan import (
    BigGANConfig,
    BigGANGenerator,
    cache_spectral_norms,
    config_from_ic_gan,
    config_to_ic_gan,
)
from genview.generator.resnet_features import (
    ResNetFeatures,
    crop_and_resize,
    load_resnet_features,
    load_state_dict_strict,
    normalize_for_encoder,
    save_swav_checkpoint,
    save_torchvision_checkpoint,
)
from genview.generator.builtin import CC_ICGAN, ICGAN
from genview.generator.seeding import torch_generator

GENERATOR_FILE = "G_ema_best.pth"
STATE_FILE = "state_dict_best.pth"

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: How z is drawn from the truncation value (see the module docstring).
TRUNCATION_MODES = ("scaled", "truncated")


def truncated_normal(size: int, bound: float, generator: torch.Generator) -> torch.Tensor:
    """Return `size` float32 draws of N(0, 1) truncated to [-bound, bound] (scipy's truncnorm(-b, b)).

    Inverse CDF: u ~ U(Phi(-b), Phi(b)), z = Phi^-1(u), in float64; bound 0 gives zeros.
    """
    if bound <= 0:
        return torch.zeros(size)
    uniform = torch.rand(size, generator=generator, dtype=torch.float64)
    low = torch.special.ndtr(torch.tensor(-bound, dtype=torch.float64))
    high = torch.special.ndtr(torch.tensor(bound, dtype=torch.float64))
    z = torch.special.ndtri(low + uniform * (high - low))
    return z.clamp(-bound, bound).float()


@contextlib.contextmanager
def _seeded(seed: int):
    """Run a block with the global CPU RNG seeded, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _encoder_spec(kind: str) -> dict[str, Any]:
    """File name, glob and description of the encoder for an ic_gan ``feature_extractor`` value."""
    specs = {
        "selfsupervised": {
            "file": "swav_800ep_pretrain.pth.tar",
            "glob": "swav*.pth*",
            "what": "SwAV ResNet-50 (https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar)",
            "save": save_swav_checkpoint,
        },
        "classification": {
            "file": "resnet50-19c8e357.pth",
            "glob": "resnet50*.pth",
            "what": "torchvision ResNet-50 (https://download.pytorch.org/models/resnet50-19c8e357.pth)",
            "save": save_torchvision_checkpoint,
        },
    }
    if kind not in specs:
        raise ValueError(f"unsupported ic_gan feature_extractor {kind!r}; known: {sorted(specs)}")
    return specs[kind]


def _suffix(name: str, prefix: str) -> str:
    return name[len(prefix) : -len(".pth")]


def _load_ic_gan_state(path: Path) -> dict[str, Any]:
    """Read ``state_dict_best*.pth`` (config + training metrics).

    ic_gan pickles Python objects there (e.g. the ``G_activation`` nn.ReLU, numpy metrics), which
    ``weights_only`` loading refuses; the file then is unpickled in full, as ic_gan itself does.
    """
    try:
        with torch.serialization.safe_globals([nn.ReLU]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        warnings.warn(f"{path} holds pickled Python objects besides tensors; loading it with full unpickling (trust this file)")
        state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path}: expected ic_gan's state_dict file, a dict with a 'config' dict")
    return state


def find_checkpoint_files(directory: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Return (G_ema file, state_dict file, loaded state) of an ic_gan weights directory.

    Files pair up by suffix (``G_ema_best0.pth`` with ``state_dict_best0.pth``); ``*best*`` pairs
    win, and among several the lowest ``best_FID`` wins, as in ic_gan's ``load_model_inference``.
    """
    gens = {_suffix(p.name, "G_ema"): p for p in directory.glob("G_ema*.pth")}
    states = {_suffix(p.name, "state_dict"): p for p in directory.glob("state_dict*.pth")}
    pairs = sorted(set(gens) & set(states))
    best = [s for s in pairs if "best" in s]
    candidates = best or pairs
    if not candidates:
        found = sorted(p.name for p in list(gens.values()) + list(states.values()))
        raise WeightsNotFoundError(
            f"no IC-GAN generator weights in {directory}: expected a G_ema*.pth file with its "
            f"state_dict_best*.pth (e.g. {GENERATOR_FILE} + {STATE_FILE}, ic_gan's G_ema_best0.pth + "
            f"state_dict_best0.pth); found {found or 'neither'}. Point --weights at the directory of "
            "ic_gan's icgan_biggan_imagenet_res256 / cc_icgan_biggan_imagenet_res256 release, or make "
            "random ones with `genview models init`."
        )
    loaded = {s: _load_ic_gan_state(states[s]) for s in candidates}

    def fid(suffix: str) -> float:
        value = loaded[suffix].get("best_FID")
        return float(value) if value is not None else math.inf

    chosen = min(candidates, key=lambda s: (fid(s), s))
    return gens[chosen], states[chosen], loaded[chosen]


def find_encoder_file(directory: Path, kind: str, encoder_weights: str | os.PathLike | None) -> Path:
    """Return the feature-extractor file: ``encoder_weights`` if given, else the one in ``directory``."""
    spec = _encoder_spec(kind)
    if encoder_weights is not None:
        path = Path(encoder_weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"--encoder-weights {path} is not a file; expected {spec['what']} ({spec['file']})")
        return path
    exact = directory / spec["file"]
    if exact.is_file():
        return exact
    matches = sorted(p for p in directory.glob(spec["glob"]) if p.is_file())
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise WeightsNotFoundError(
            f"several encoder files match {spec['glob']} in {directory}: {[p.name for p in matches]}; "
            "choose one with --encoder-weights"
        )
    raise WeightsNotFoundError(
        f"feature extractor not found: expected {spec['file']} ({spec['what']}) in {directory}; "
        "put it there or pass its path with --encoder-weights"
    )


class _ICGANBase(ViewGenerator):
    """Shared implementation of IC-GAN and CC-IC-GAN."""

    #: ic_gan's ``class_cond`` of the checkpoints this class runs.
    class_cond: ClassVar[bool]
    #: ic_gan's ``feature_extractor`` when the config does not name one.
    default_feature_extractor: ClassVar[str]
    default_truncation: ClassVar[float]

    def __init__(
        self,
        network: BigGANGenerator,
        encoder: ResNetFeatures,
        weights: WeightsInfo,
        feature_extractor: str,
        device: str | torch.device = "cpu",
        truncation: float | None = None,
        truncation_mode: str = "scaled",
        dtype: str = "auto",
        channels_last: bool = True,
        tf32: bool = True,
        compile: bool = False,
    ):
        if network.config.class_cond != self.class_cond:
            other = "cc-icgan" if network.config.class_cond else "icgan"
            raise ValueError(
                f"this checkpoint has class_cond={network.config.class_cond}: it is a "
                f"{'CC-IC-GAN' if network.config.class_cond else 'IC-GAN'}; use --model {other}"
            )
        if encoder.feature_dim != network.config.instance_sz:
            raise ValueError(
                f"feature extractor gives {encoder.feature_dim}-d features but the generator expects "
                f"instance_sz={network.config.instance_sz}"
            )
        truncation = self.default_truncation if truncation is None else float(truncation)
        if not math.isfinite(truncation) or truncation < 0:
            raise ValueError(f"truncation must be a finite number >= 0, got {truncation}")
        if truncation_mode not in TRUNCATION_MODES:
            raise ValueError(f"truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, got {truncation_mode!r}")
        if dtype != "auto" and dtype not in _DTYPES:
            raise ValueError(f"dtype must be auto or one of {sorted(_DTYPES)}, got {dtype!r}")
        self._device = torch.device(device)
        dtype = resolve_dtype(dtype, self._device)
        if self._device.type != "cuda" and dtype != "float32":
            # Reduced-precision autocast is a CUDA speed-up; elsewhere run (and record) float32.
            warnings.warn(f"dtype={dtype} applies on CUDA only; running {self._device} in float32")
            dtype = "float32"
        self._dtype_name = dtype
        self._truncation = truncation
        self._truncation_mode = truncation_mode
        self._channels_last = bool(channels_last) and self._device.type == "cuda"
        self.feature_extractor = feature_extractor
        self.weights = weights
        self.network = network.to(self._device).eval()
        self.encoder = encoder.to(self._device).eval()
        if self._channels_last:
            self.network.to(memory_format=torch.channels_last)
            self.network.memory_format = torch.channels_last
            self.encoder.to(memory_format=torch.channels_last)
        # Eval-mode spectral norms never change: computed once here, not in every forward.
        cache_spectral_norms(self.network)
        # TF32 is a CUDA matmul/conv precision choice; set explicitly (not left to torch's defaults) and recorded.
        self._tf32 = bool(tf32) and self._device.type == "cuda"
        if self._device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self._tf32
            torch.backends.cudnn.allow_tf32 = self._tf32
        # torch.compile needs a CUDA toolchain to pay off (and a C++ compiler on CPU): CUDA only; CUDA
        # graphs ("reduce-overhead") replay each batch shape's kernels without per-kernel launch cost.
        self._compiled = bool(compile) and self._device.type == "cuda"
        self._forward = torch.compile(self.network, mode="reduce-overhead") if self._compiled else self.network

    # ----------------------------------------------------------------- construction

    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> None:
        # encoder_weights is declared (the service checks it as a path) but is from_pretrained's own argument.
        if "encoder_weights" in params:
            raise ValueError(f"{cls.model_name}: encoder_weights applies to from_pretrained only")
        cls.check_params(params)

    @classmethod
    def view_cost(cls, preset: str, encoder_calls: float, params: dict[str, Any]):
        """ResNet-50 feature extractor + one BigGAN pass per view (`genview.generator.cost`)."""
        from genview.generator.cost import icgan_cost

        return icgan_cost(cls.model_name, preset, encoder_calls, params)

    @classmethod
    def preset_config(cls, preset: str) -> tuple[BigGANConfig, dict[str, Any]]:
        """Return (generator config, encoder architecture) of a named preset: ``full`` or ``tiny``."""
        if preset == "full":
            # The published ImageNet 256x256 models (icgan_res256.json / cc_icgan_res256.json).
            config = BigGANConfig(class_cond=cls.class_cond)
            encoder = {"layers": [3, 4, 6, 3], "planes": [64, 128, 256, 512], "stem_width": 64}
            n_fc = 1000
        elif preset == "tiny":
            # Same structure, toy widths: 32x32 output, 64-d features, 10 classes; fast on a CPU.
            config = BigGANConfig(
                resolution=32, G_ch=8, dim_z=32, G_attn="16", n_classes=10, shared_dim=16,
                shared_dim_feat=32, instance_sz=64, class_cond=cls.class_cond,
            )
            encoder = {"layers": [1, 1, 1, 1], "planes": [8, 16, 16, 16], "stem_width": 8}
            n_fc = 10
        else:
            raise ValueError(f"unknown {cls.model_name} preset {preset!r}; known: full, tiny")
        # Only torchvision's supervised files carry a classifier; SwAV's backbone has none.
        encoder["num_classes"] = n_fc if cls.default_feature_extractor == "classification" else None
        return config, encoder

    @classmethod
    def from_preset(cls, preset: str, seed: int = 0, device: str | torch.device = "cpu", **params: Any) -> "_ICGANBase":
        """Build a randomly initialised model of a preset, deterministically from ``seed``.

        On ``device="meta"`` nothing is allocated or initialised (for parameter and FLOP counts).
        """
        cls._check_params(params)
        config, encoder_arch = cls.preset_config(preset)
        device = torch.device(device)
        if device.type == "meta":
            with torch.device("meta"):
                network, encoder = BigGANGenerator(config), ResNetFeatures(**encoder_arch)
        else:
            # Built on the CPU under a fixed seed (spectral-norm u0 vectors included), then moved.
            with _seeded(seed):
                network = BigGANGenerator(config)
                network.init_weights()
                encoder = ResNetFeatures(**encoder_arch)
        descriptor = json.dumps({"model": cls.model_name, "preset": preset, "seed": int(seed)}, sort_keys=True)
        weights = WeightsInfo(
            id=f"preset:{preset}:seed={int(seed)}",
            # Random weights are a function of (model, preset, seed): hash that descriptor.
            sha256=hashlib.sha256(descriptor.encode()).hexdigest(),
            random_init=True,
            preset=preset,
        )
        return cls(network, encoder, weights, cls.default_feature_extractor, device=device, **params)

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        device: str | torch.device = "cpu",
        encoder_weights: str | os.PathLike | None = None,
        **params: Any,
    ) -> "_ICGANBase":
        """Load ic_gan's release layout from directory ``path`` (strict); the encoder from there or ``encoder_weights``."""
        cls._check_params(params)
        directory = Path(path)
        if not directory.is_dir():
            raise WeightsNotFoundError(
                f"--weights {path} is not a directory; expected the directory holding G_ema*.pth and "
                "state_dict_best*.pth (ic_gan's release layout)"
            )
        gen_file, state_file, state = find_checkpoint_files(directory)
        ic_config = state["config"]
        config = config_from_ic_gan(ic_config, source=str(state_file))
        kind = ic_config.get("feature_extractor", cls.default_feature_extractor)
        encoder_file = find_encoder_file(directory, kind, encoder_weights)

        network = BigGANGenerator(config)
        load_state_dict_strict(network, torch.load(gen_file, map_location="cpu", weights_only=True), str(gen_file))
        encoder = load_resnet_features(encoder_file)
        marker = read_random_marker(directory)
        weights = WeightsInfo(
            id=str(path),
            sha256=sha256_files([gen_file, state_file, encoder_file]),
            random_init=marker is not None,
            preset=None if marker is None else marker.get("preset"),
        )
        return cls(network, encoder, weights, kind, device=device, **params)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``G_ema_best.pth``, ``state_dict_best.pth`` and the encoder file in ic_gan's formats."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        torch.save(state, directory / GENERATOR_FILE)
        config = config_to_ic_gan(
            self.network.config,
            feature_extractor=self.feature_extractor,
            backbone_feature_extractor="resnet50",
            z_var=self._truncation,
        )
        # The training-state fields ic_gan keeps beside the config, at its initial values.
        torch.save(
            {"itr": 0, "epoch": 0, "save_num": 0, "save_best_num": 0, "best_IS": 0, "best_FID": 999999, "config": config},
            directory / STATE_FILE,
        )
        spec = _encoder_spec(self.feature_extractor)
        spec["save"](self.encoder, directory / spec["file"])

    # ----------------------------------------------------------------- properties

    @property
    def params(self) -> dict[str, Any]:
        """Generation settings in force."""
        params = {"truncation": self._truncation, "truncation_mode": self._truncation_mode, "dtype": self._dtype_name}
        if self._device.type == "cuda":
            # CUDA-only settings, recorded where they apply (CPU stores keep their identity unchanged).
            params.update(tf32=self._tf32, compile=self._compiled)
        return params

    @property
    def image_size(self) -> int:
        """Side of the generated images."""
        return self.network.config.resolution

    @property
    def device(self) -> torch.device:
        """Device the networks run on."""
        return self._device

    @property
    def embedding_dim(self) -> int:
        """Size of the condition embeddings."""
        return self.encoder.feature_dim

    # ----------------------------------------------------------------- inference

    def _run(self, fn, *batches: torch.Tensor | None) -> torch.Tensor:
        """Apply ``fn`` to the whole batch on every device.

        Kernels pick their blocking (hence summation order) from the batch size, so a row's pixels
        may differ by one level between batch sizes; its noise and condition never do. Byte-identical
        output whatever the batch comes from running rows one at a time (the engine's ``--exact``).
        """
        return fn(*batches)

    def _autocast(self):
        if self._device.type == "cuda" and self._dtype_name != "float32":
            return torch.autocast(device_type="cuda", dtype=_DTYPES[self._dtype_name])
        return contextlib.nullcontext()

    def embed(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Return L2-normalised ResNet features [N, D] (float32, CPU) with ic_gan's preprocessing."""
        return self.embed_on_device(images).cpu()

    def embed_on_device(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Return L2-normalised ResNet features [N, D] (float32) left on the model's device."""
        pixels = crop_and_resize(images, self.image_size)
        if pixels.shape[0] == 0:
            return torch.empty(0, self.embedding_dim, device=self._device)
        with torch.no_grad():
            x = normalize_for_encoder(pixels.to(self._device))
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # The encoder stays float32 (no autocast): its features are compared by cosine to pick views.
            feats = self._run(self.encoder, x)
            return F.normalize(feats.float(), dim=1)

    def sample_z(self, seeds: Sequence[int]) -> torch.Tensor:
        """Return z [B, z_dim] (CPU), row i from ``torch_generator(seeds[i])`` as ``truncation_mode`` says."""
        z_dim = self.network.config.z_dim
        if not seeds:
            return torch.empty(0, z_dim)
        if self._truncation_mode == "truncated":
            return torch.stack([truncated_normal(z_dim, 2.0 * self._truncation, torch_generator(s)) for s in seeds])
        rows = [torch.randn(z_dim, generator=torch_generator(seed)) for seed in seeds]
        return torch.stack(rows) * self._truncation

    def _check_labels(self, labels: torch.Tensor | Sequence[int] | None, batch: int) -> torch.Tensor | None:
        """Return the labels the network takes: IC-GAN has no class input, so none (labels are ignored)."""
        return None

    def generate(
        self,
        embeddings: torch.Tensor,
        seeds: Sequence[int],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return uint8 images [B, 3, S, S] (CPU), row i from embeddings[i] and noise from seeds[i]."""
        return self.generate_on_device(embeddings, seeds, labels=labels).cpu().contiguous()

    def generate_on_device(
        self,
        embeddings: torch.Tensor,
        seeds: Sequence[int],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return uint8 images [B, 3, S, S] left on the model's device (see `generate`)."""
        cfg = self.network.config
        if embeddings.dim() != 2 or embeddings.shape[1] != cfg.instance_sz:
            raise ValueError(f"embeddings must be [B, {cfg.instance_sz}], got {tuple(embeddings.shape)}")
        if len(seeds) != embeddings.shape[0]:
            raise ValueError(f"got {len(seeds)} seeds for {embeddings.shape[0]} embeddings")
        label_tensor = self._check_labels(labels, embeddings.shape[0])
        z = self.sample_z(seeds)
        if z.shape[0] == 0:
            return torch.empty(0, 3, cfg.resolution, cfg.resolution, dtype=torch.uint8, device=self._device)
        with torch.no_grad():
            feats = embeddings.to(self._device, torch.float32)
            if self._device.type == "cuda":
                # From pinned memory the upload is asynchronous: it does not wait for the previous
                # batch's kernels, so the engine can queue this batch while that one runs.
                z = z.pin_memory().to(self._device, non_blocking=True)
            else:
                z = z.to(self._device)
            if label_tensor is not None:
                label_tensor = label_tensor.to(self._device)
            with self._autocast():
                images = self._run(self._forward, z, feats, label_tensor)
            return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def resolve_dtype(name: str, device: torch.device) -> str:
    """Return the dtype an ``auto`` request runs: bfloat16 on CUDA GPUs that support it, else float32.

    bf16 keeps float32's range, so BigGAN's batch norms and the unscaled attention logits cannot
    overflow as in float16; spectral norms are taken in float32 and the encoder runs in float32.
    """
    if name != "auto":
        return name
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


class ICGANGenerator(_ICGANBase):
    """IC-GAN: BigGAN conditioned on a SwAV ResNet-50 instance feature; labels are ignored."""

    declaration = ICGAN
    class_cond: ClassVar[bool] = False
    default_feature_extractor: ClassVar[str] = "selfsupervised"
    #: DA IC-GAN's truncation sigma for IC-GAN.
    default_truncation: ClassVar[float] = 0.8


class CCICGANGenerator(_ICGANBase):
    """CC-IC-GAN: BigGAN conditioned on a supervised ResNet-50 instance feature and a class label."""

    declaration = CC_ICGAN
    class_cond: ClassVar[bool] = True
    default_feature_extractor: ClassVar[str] = "classification"
    #: DA IC-GAN's truncation sigma for CC-IC-GAN.
    default_truncation: ClassVar[float] = 1.0

    def _check_labels(self, labels: torch.Tensor | Sequence[int] | None, batch: int) -> torch.Tensor:
        n_classes = self.network.config.n_classes
        if labels is None:
            raise ValueError(
                f"cc-icgan needs class labels: pass labels as int64 class indices in [0, {n_classes}) "
                "(sources need a label_index)"
            )
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
            raise ValueError(f"cc-icgan labels must be integer class indices, got dtype {labels.dtype}")
        if labels.shape != (batch,):
            raise ValueError(f"cc-icgan labels must have shape [{batch}], got {tuple(labels.shape)}")
        if batch and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            bad = sorted({int(v) for v in labels if not 0 <= int(v) < n_classes})
            raise ValueError(f"cc-icgan labels out of range [0, {n_classes}): {bad[:10]}")
        return labels.to(torch.int64)
