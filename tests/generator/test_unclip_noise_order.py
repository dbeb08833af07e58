"""A stored unCLIP view re-created from its recorded seed with diffusers' own StableUnCLIPImg2ImgPipeline.

genview draws a view's noise from one CPU generator seeded with the view's recorded seed: first the
latents, then (inside the pipeline) the image-embedding noise. diffusers' pipeline, given only a
generator, draws in the other order (embedding noise in ``_encode_image``, latents in
``prepare_latents``). So: draw the latents first yourself and pass them, with the same generator.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from genview.datastore.reader import iter_shard
from genview.datastore.store import Store
from genview.generator.unclip import UnCLIPGenerator
from genview.synthetic_data import make_image_folder

STEPS, NOISE_LEVEL = 3, 100  # embedding noise on: the draw whose order matters


def recreate_with_diffusers(model_dir: str, params: dict, embedding: np.ndarray, seed: int, latents_first: bool):
    """Make one view with diffusers alone, from the store's recorded params, embedding and seed (docs/reproducing.md)."""
    from diffusers import DDIMScheduler, StableUnCLIPImg2ImgPipeline

    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(model_dir)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the store's scheduler "ddim", no overrides
    pipe.set_progress_bar_config(disable=True)
    side = params["image_size"]
    generator = torch.Generator().manual_seed(seed)
    latents = None
    if latents_first:  # genview's order: latents from the view's generator, then the embedding noise
        shape = (1, pipe.unet.config.in_channels, side // pipe.vae_scale_factor, side // pipe.vae_scale_factor)
        latents = torch.randn(shape, generator=generator) * pipe.scheduler.init_noise_sigma
    image = pipe(
        image_embeds=torch.from_numpy(embedding)[None], prompt="", height=side, width=side, latents=latents,
        num_inference_steps=params["num_inference_steps"], guidance_scale=params["guidance_scale"], eta=params["eta"],
        noise_level=params["noise_level"], generator=generator, output_type="pt",
    ).images
    return (image[0].float() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_stored_view_is_recreated_by_diffusers_from_its_recorded_seed(tmp_path):
    from genview.cli.main import main as cli

    model_dir = tmp_path / "unclip"
    UnCLIPGenerator.from_preset("tiny", seed=0).save_pretrained(model_dir)
    make_image_folder(tmp_path / "img", classes=1, per_class=1, size=48, seed=3)
    out = tmp_path / "store"
    assert cli(["generate", str(tmp_path / "img"), "--model", "unclip", "--weights", str(model_dir), "--out", str(out),
                "--k", "2", "--format", "png", "--store-embeddings", "--device", "cpu", "--no-progress",
                "--exact",  # row by row, as diffusers runs one view: byte-identical (batched: within one level)
                "--param", f"num_inference_steps={STEPS}", "--param", f"noise_level={NOISE_LEVEL}"]) == 0
    store = Store(str(out))
    params = json.loads((out / "genview.json").read_text())["spec"]["params"]
    rows = pq.read_table(out / "manifest").to_pylist()
    (key, members), = list(iter_shard(store, 0))
    embedding = np.load(io.BytesIO(members["emb.npy"]))
    for row in rows:
        stored = np.asarray(Image.open(io.BytesIO(members[row["member"].split(".", 1)[1]])).convert("RGB"))
        again = recreate_with_diffusers(str(model_dir), params, embedding, row["seed"], latents_first=True)
        assert np.array_equal(again, stored), row["member"]
    # diffusers' own order (embedding noise first) from the same seed gives another image.
    other = recreate_with_diffusers(str(model_dir), params, embedding, rows[0]["seed"], latents_first=False)
    assert np.abs(other.astype(int) - np.asarray(
        Image.open(io.BytesIO(members[rows[0]["member"].split(".", 1)[1]])).convert("RGB")).astype(int)).mean() > 1.0
