"""View policies: which images of a sample a training step sees, and with which augmentation.

* ``PairPolicy`` -- seed 000's joint-embedding SSL views: view 1 the source, view 2 one of the K
  generated views with probability p (or both views generated with probability p each), then
  the standard augmentation of a Table 3 strategy.
* ``SinglePolicy`` -- one image per sample (supervised DA IC-GAN, seed 004): a generated view with
  probability p_G, or exactly as a ``FixedCountBatchSampler`` asks.
* ``TripletPolicy`` -- Gen-SIS interpolation (seed 003): primary, secondary, interpolated view, alpha.
* ``MultiViewPolicy`` -- any number of crops from a multi-view transform as the SSL libraries build
  it (lightly's ``SimCLRTransform``/``DINOTransform``, solo-learn's ``NCropAugmentation`` pipelines),
  in lightly's ``(views, target, name)`` or solo-learn's ``(index, views, target)`` layout.

Which generated view a source gets is drawn from an RNG seeded by (seed, epoch, source id) only, so
it changes every epoch, repeats with the seed, and does not depend on rank, worker or shuffle order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from genview.trainer_client import augment
from genview.trainer_client.samples import RawSample
from genview.trainer_client.store_index import StoreFormatError

#: Seed 000, Table 3 strategies -> the standard augmentation that follows the generative one.
STRATEGIES = {
    "generative_standard": "standard",  # Generative & Standard (68.11 top-1, the default)
    "generative_crop": "crop",  # Generative & Random Crop (67.15)
    "generative_only": "none",  # Only generative (63.80)
}

Transform = Callable[[Image.Image], Any]


def choice_rng(seed: int, epoch: int, source_id: int) -> np.random.Generator:
    """Return the RNG of one source's view choice in one epoch (independent of everything else)."""
    if seed < 0 or epoch < 0 or source_id < 0:
        raise ValueError(f"seed, epoch and source id must be >= 0, got {seed}, {epoch}, {source_id}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), int(source_id), 0x6756])))


@dataclass(frozen=True)
class ViewContext:
    """What a policy needs besides the sample: epoch and seed, eligible views, a forced decision."""

    epoch: int
    seed: int
    k: int
    eligible: tuple[int, ...] | None = None  # None: all K views are eligible
    generated: bool | None = None  # set by FixedCountBatchSampler: overrides the p draw

    @property
    def views(self) -> tuple[int, ...]:
        """Eligible view indices."""
        return tuple(range(self.k)) if self.eligible is None else self.eligible

    def rng(self, source_id: int) -> np.random.Generator:
        """Return this epoch's choice RNG for a source."""
        return choice_rng(self.seed, self.epoch, source_id)


def per_view_transforms(transform: Any) -> list[Transform]:
    """Split a multi-view transform into one callable per view, as the SSL libraries build them.

    Accepts lightly's ``MultiViewTransform`` family (``SimCLRTransform``, ``DINOTransform``, ...: a
    ``transforms`` list, one per view), solo-learn's ``NCropAugmentation`` (``transform`` applied
    ``num_crops`` times) and ``FullTransformPipeline`` (a ``transforms`` list of those), or a
    list/tuple of per-image callables.
    """
    if isinstance(transform, (list, tuple)):
        views: list[Transform] = []
        for item in transform:
            views += per_view_transforms(item) if _is_multi_view(item) else [item]
        return views
    if hasattr(transform, "num_crops") and callable(getattr(transform, "transform", None)):
        return [transform.transform] * int(transform.num_crops)  # solo-learn NCropAugmentation
    if isinstance(getattr(transform, "transforms", None), (list, tuple)) and _is_multi_view(transform):
        return per_view_transforms(list(transform.transforms))  # lightly MultiViewTransform, solo-learn pipeline
    raise TypeError(
        f"{type(transform).__name__} is not a multi-view transform genview can split: pass lightly's "
        "MultiViewTransform (SimCLRTransform, ...), solo-learn's NCropAugmentation/FullTransformPipeline, or a "
        "list of per-view transforms"
    )


def _is_multi_view(transform: Any) -> bool:
    """True for the multi-view transform shapes ``per_view_transforms`` splits (not a torchvision Compose)."""
    if hasattr(transform, "num_crops") and callable(getattr(transform, "transform", None)):
        return True
    # By class name, so neither library has to be installed; torchvision's Compose also has a
    # `transforms` list, but of steps applied in sequence to one image.
    names = {c.__name__ for c in type(transform).__mro__}
    return isinstance(getattr(transform, "transforms", None), (list, tuple)) and bool(
        names & {"MultiViewTransform", "FullTransformPipeline"})


def _one_view(output: Any, which: str) -> Any:
    if isinstance(output, (list, tuple)):
        raise TypeError(
            f"the {which} transform returned {len(output)} views for one image: it is a multi-view transform "
            "(e.g. lightly's SimCLRTransform); pass it whole as PairPolicy(transforms=...) or use MultiViewPolicy"
        )
    return output


def _check_probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


class _Images:
    """Decodes each member of a sample at most once."""

    def __init__(self, sample: RawSample):
        self.sample = sample
        self._cache: dict[int, Image.Image] = {}

    def get(self, view: int) -> Image.Image:
        """Return view `view`, or the source for -1."""
        if view not in self._cache:
            self._cache[view] = self.sample.source() if view < 0 else self.sample.view(view)
        return self._cache[view]


class PairPolicy:
    """Two views per source for joint-embedding SSL (seed 000, Eq. 1 and Tables 3, 11).

    ``both=False`` (seed 000's default): view 1 is the source, view 2 a generated view with
    probability ``p`` (else the source); Table 11 "One View" (p=1 and p=0.75 best). ``both=True``:
    each view is generated with probability p independently (Table 11 "Both Views", p=0.5 best);
    two generated views of one source are distinct when it has two eligible views. ``strategy``
    picks what follows the generative step on both views (Table 3): "generative_standard",
    "generative_crop" or "generative_only". ``transforms`` (view 1, view 2) replaces the preset.
    A source with no eligible view (filters) uses its real image.
    """

    def __init__(
        self,
        p: float = 1.0,
        both: bool = False,
        strategy: str = "generative_standard",
        preset: str = "simclr",
        crop_size: int = 224,
        transforms: Sequence[Transform] | Any | None = None,
    ):
        self.p = _check_probability("p", p)
        self.both = bool(both)
        if transforms is not None and (_is_multi_view(transforms) or not isinstance(transforms, (list, tuple))):
            transforms = per_view_transforms(transforms)
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.preset = preset if transforms is None else None  # None in config: custom transforms
        self.crop_size = int(crop_size)
        if transforms is None:
            transforms = augment.preset(preset, self.crop_size, STRATEGIES[strategy])
        if len(transforms) != 2:
            raise ValueError(f"transforms must be a (view 1, view 2) pair, got {len(transforms)} views "
                             "(for more crops use MultiViewPolicy)")
        self.transforms = tuple(transforms)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able settings (custom transforms are not serialised)."""
        return {"p": self.p, "both": self.both, "strategy": self.strategy, "preset": self.preset, "crop_size": self.crop_size}

    def choose(self, sample: RawSample, ctx: ViewContext) -> tuple[int, int]:
        """Return (view 1, view 2) indices for this epoch; -1 means the source image."""
        rng = ctx.rng(sample.source_id)
        views = ctx.views
        if ctx.generated is not None:
            gen1, gen2 = (ctx.generated and self.both), ctx.generated
        else:
            draw1, draw2 = rng.random(), rng.random()
            gen1, gen2 = (self.both and draw1 < self.p), draw2 < self.p
        if not views:
            return -1, -1
        if gen1 and gen2:
            if len(views) >= 2:
                first, second = rng.choice(len(views), size=2, replace=False)
                return views[int(first)], views[int(second)]
            return views[0], views[0]
        pick = views[int(rng.integers(len(views)))]
        return (pick if gen1 else -1), (pick if gen2 else -1)

    def __call__(self, sample: RawSample, ctx: ViewContext) -> dict[str, Any]:
        """Return {view1, view2, view1_index, view2_index, source_id, label_index, key}."""
        first, second = self.choose(sample, ctx)
        images = _Images(sample)
        return {
            "view1": _one_view(self.transforms[0](images.get(first)), "view 1"),
            "view2": _one_view(self.transforms[1](images.get(second)), "view 2"),
            "view1_index": first,
            "view2_index": second,
            "source_id": sample.source_id,
            "label_index": sample.label_index,
            "key": sample.key,
        }


class SinglePolicy:
    """One image per source: a generated view with probability p_G, else the source (seed 004, DA IC-GAN).

    Use with ``FixedCountBatchSampler`` to get exactly ceil(batch * p_G) generated images per batch
    instead of a per-sample coin (seed 004, App. A.2). Default augmentation: DA IC-GAN's
    RRCrop + Hflip recipe; pass ``transform`` to replace it.
    """

    def __init__(self, p: float = 1.0, preset: str = "rrcrop", crop_size: int = 224, transform: Transform | None = None):
        self.p = _check_probability("p", p)
        self.preset = preset if transform is None else None
        self.crop_size = int(crop_size)
        self.transform = transform if transform is not None else augment.preset(preset, self.crop_size)[0]

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {"p": self.p, "preset": self.preset, "crop_size": self.crop_size}

    def choose(self, sample: RawSample, ctx: ViewContext) -> int:
        """Return the view index for this epoch; -1 means the source image."""
        rng = ctx.rng(sample.source_id)
        draw = rng.random()
        generated = ctx.generated if ctx.generated is not None else draw < self.p
        views = ctx.views
        if not generated or not views:
            return -1
        return views[int(rng.integers(len(views)))]

    def __call__(self, sample: RawSample, ctx: ViewContext) -> dict[str, Any]:
        """Return {image, view_index, source_id, label_index, key}."""
        view = self.choose(sample, ctx)
        image = sample.source() if view < 0 else sample.view(view)
        return {
            "image": self.transform(image),
            "view_index": view,
            "source_id": sample.source_id,
            "label_index": sample.label_index,
            "key": sample.key,
        }


def stored_primary_weights(meta: dict[str, Any]) -> list[float] | None:
    """Return a sample's per-view primary weights (Gen-SIS alpha): ``primary_weights``, or 1 - v1's ``alphas``."""
    if meta.get("primary_weights") is not None:
        return [float(w) for w in meta["primary_weights"]]
    if meta.get("alphas") is not None:
        # Format v1 wrote the weight of the secondary under "alphas".
        return [1.0 - float(a) for a in meta["alphas"]]
    return None


class TripletPolicy:
    """Gen-SIS interpolation triplets (seed 003, Alg. 1): primary, secondary, interpolated view, alpha.

    For stores made with ``--interpolate``: view j of a source is generated from the condition
    ``w_j * e_primary + (1 - w_j) * e_secondary`` (lerp; slerp likewise), ``w_j`` = the sample's
    ``primary_weights[j]``: Gen-SIS's alpha (Alg. 1: alpha * teach_1 + (1 - alpha) * teach_2), which is
    what ``losses.disentanglement_*`` take. Format v1 stores kept ``alphas`` = the weight of the
    SECONDARY instead; they are read as ``primary_weight = 1 - alpha``. Each triplet carries
    ``alpha`` = ``primary_weight`` (the paper's alpha, the same number under both names).
    One eligible view is drawn per epoch (optionally only views whose primary weight is in ``alphas``).
    The same "vanilla" augmentation is applied to all three images (default: DINO's first global crop).
    A source with no eligible view gets its primary as the interpolated image with primary_weight 1.
    """

    def __init__(
        self,
        alphas: Sequence[float] | None = None,
        preset: str = "dino",
        crop_size: int = 224,
        transform: Transform | None = None,
    ):
        self.alphas = None if alphas is None else tuple(float(a) for a in alphas)
        self.preset = preset if transform is None else None
        self.crop_size = int(crop_size)
        self.transform = transform if transform is not None else augment.preset(preset, self.crop_size)[0]

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {"alphas": self.alphas, "preset": self.preset, "crop_size": self.crop_size}

    def _store_alphas(self, sample: RawSample, k: int) -> list[float]:
        """Return the primary weight (Gen-SIS alpha) of each view, from either store format."""
        weights = stored_primary_weights(sample.meta)
        if not sample.has("sec") or weights is None or sample.meta.get("secondary_id") is None:
            raise StoreFormatError(
                f"sample {sample.key} has no secondary image / primary_weights: TripletPolicy needs a store made "
                "with --interpolate"
            )
        if len(weights) != k:
            raise StoreFormatError(f"sample {sample.key} has {len(weights)} primary weights for k={k} views")
        return weights

    def choose(self, sample: RawSample, ctx: ViewContext) -> tuple[int, float]:
        """Return (view index, its primary weight) for this epoch; (-1, 1.0) when no view is eligible."""
        alphas = self._store_alphas(sample, ctx.k)
        views = ctx.views
        if self.alphas is not None:
            views = tuple(j for j in views if any(abs(alphas[j] - a) < 1e-6 for a in self.alphas))
        if not views:
            return -1, 1.0  # the primary itself stands in: all weight on the primary
        view = views[int(ctx.rng(sample.source_id).integers(len(views)))]
        return view, alphas[view]

    def __call__(self, sample: RawSample, ctx: ViewContext) -> dict[str, Any]:
        """Return {primary, secondary, interpolated, alpha, primary_weight, view_index, source_id, secondary_id, ...}."""
        view, alpha = self.choose(sample, ctx)
        primary = sample.source()
        interpolated = primary if view < 0 else sample.view(view)
        return {
            "primary": self.transform(primary),
            "secondary": self.transform(sample.secondary()),
            "interpolated": self.transform(interpolated),
            "alpha": alpha,
            "primary_weight": alpha,
            "view_index": view,
            "source_id": sample.source_id,
            "secondary_id": int(sample.meta["secondary_id"]),
            "label_index": sample.label_index,
            "key": sample.key,
        }


LAYOUTS = ("lightly", "solo-learn")


class MultiViewPolicy:
    """Crops of an SSL library's multi-view transform, in that library's batch layout (seed 000's generative step first).

    ``transform`` is used as the library builds it (see ``per_view_transforms``): lightly's
    ``SimCLRTransform(...)``, ``DINOTransform(...)``; solo-learn's ``NCropAugmentation`` or
    ``FullTransformPipeline`` (``prepare_n_crop_transform``). As in ``PairPolicy``, image A is the
    source and image B a generated view with probability ``p`` (``both``: each generated with
    probability p); the first crop is taken from image A, every other crop from image B (for
    multi-crop pipelines, the second global crop and the local crops see the generated view).

    ``layout="lightly"`` yields ``(views, target, name)`` like lightly's datasets (``x0, x1 =
    batch[0]``); ``"solo-learn"`` yields ``(index, views, target)`` like solo-learn's
    ``dataset_with_index`` (index = source id). ``target`` is the label index (-1 without a label),
    ``name`` the source's uri.
    """

    def __init__(self, transform: Any, p: float = 1.0, both: bool = False, layout: str = "lightly"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.views = per_view_transforms(transform)
        if len(self.views) < 2:
            raise ValueError(f"{type(transform).__name__} makes {len(self.views)} view(s); SSL needs at least 2")
        self.layout = layout
        self.pair = PairPolicy(p=p, both=both, transforms=(_identity, _identity))  # its view choice only

    @property
    def config(self) -> dict[str, Any]:
        """JSON-able settings (the transform itself is not serialised)."""
        return {"p": self.pair.p, "both": self.pair.both, "views": len(self.views), "layout": self.layout}

    def __call__(self, sample: RawSample, ctx: ViewContext) -> tuple[Any, ...]:
        """Return (views, target, name) or (index, views, target)."""
        first, second = self.pair.choose(sample, ctx)
        images = _Images(sample)
        views = [_one_view(t(images.get(first if i == 0 else second)), f"crop {i}") for i, t in enumerate(self.views)]
        if self.layout == "lightly":
            return views, sample.label_index, str(sample.meta.get("uri") or sample.key)
        return sample.source_id, views, sample.label_index


def _identity(image: Image.Image) -> Image.Image:
    return image


def lightly_policy(transform: Any, p: float = 1.0, both: bool = False) -> MultiViewPolicy:
    """Batches as lightly's datasets yield them, ``(views, targets, names)``, from a lightly transform as it is."""
    return MultiViewPolicy(transform, p=p, both=both, layout="lightly")


def sololearn_policy(transform: Any, p: float = 1.0, both: bool = False) -> MultiViewPolicy:
    """Batches as solo-learn's pretrain datasets yield them, ``(indexes, views, targets)``, from its crop pipeline."""
    return MultiViewPolicy(transform, p=p, both=both, layout="solo-learn")


class SoloLearnOutput:
    """Wrap a PairPolicy so samples are (source id, [view 1, view 2], label): solo-learn's batch layout."""

    def __init__(self, policy: PairPolicy):
        self.policy = policy

    def __call__(self, sample: RawSample, ctx: ViewContext) -> tuple[int, list[Any], int]:
        """Return (index, [view1, view2], target)."""
        out = self.policy(sample, ctx)
        return out["source_id"], [out["view1"], out["view2"]], out["label_index"]
