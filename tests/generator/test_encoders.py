"""Condition encoders: DINO ViT in the official checkpoint format, ResNet-50, TorchScript, one interface."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from genview.generator.encoders import (
    DINO_PRESETS,
    ConditionEncoder,
    DinoVisionTransformer,
    EncoderLoadError,
    Preprocess,
    load_condition_encoder,
    preprocess_images,
)


def official_vits16_shapes() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of dino_deitsmall16_pretrain.pth (facebookresearch/dino vision_transformer.py,
    vit_small(patch_size=16, num_classes=0): loaded there with strict=True, so no head keys)."""
    d, hidden = 384, 1536
    shapes = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 197, d),
        "patch_embed.proj.weight": (d, 3, 16, 16),
        "patch_embed.proj.bias": (d,),
        "norm.weight": (d,),
        "norm.bias": (d,),
    }
    for i in range(12):
        shapes.update(
            {
                f"blocks.{i}.norm1.weight": (d,),
                f"blocks.{i}.norm1.bias": (d,),
                f"blocks.{i}.attn.qkv.weight": (3 * d, d),
                f"blocks.{i}.attn.qkv.bias": (3 * d,),
                f"blocks.{i}.attn.proj.weight": (d, d),
                f"blocks.{i}.attn.proj.bias": (d,),
                f"blocks.{i}.norm2.weight": (d,),
                f"blocks.{i}.norm2.bias": (d,),
                f"blocks.{i}.mlp.fc1.weight": (hidden, d),
                f"blocks.{i}.mlp.fc1.bias": (hidden,),
                f"blocks.{i}.mlp.fc2.weight": (d, hidden),
                f"blocks.{i}.mlp.fc2.bias": (d,),
            }
        )
    return shapes


def _images(n: int = 3, size: tuple[int, int] = (40, 36)) -> list[Image.Image]:
    colours = [(200, 30, 30), (30, 200, 60), (20, 40, 220), (240, 200, 10)]
    out = []
    for i in range(n):
        img = Image.new("RGB", size, colours[i % 4])
        img.paste((255 - 40 * i, 40 * i, 128), (4 + i, 5, 20 + i, 25))
        out.append(img)
    return out


def test_vits16_matches_the_official_dino_checkpoint_key_for_key():
    with torch.device("meta"):
        net = DinoVisionTransformer(**DINO_PRESETS["vits16"])
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == official_vits16_shapes()
    assert len(got) == 150
    assert sum(p.numel() for p in net.parameters()) == 21_665_664  # "ViT-S/16: 21M" in the DINO paper


def test_attention_matches_dino_reference_formula():
    enc = ConditionEncoder.dino("tiny", seed=3)
    net = enc.network
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def reference(x):  # DINO's explicit softmax(q k^T * scale) v, block by block
        tokens = net.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([net.cls_token.expand(2, -1, -1), tokens], 1) + net.pos_embed
        for blk in net.blocks:
            b, n, c = tokens.shape
            h = blk.attn.num_heads
            qkv = blk.attn.qkv(blk.norm1(tokens)).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
            attn = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (c // h) ** -0.5).softmax(-1)
            tokens = tokens + blk.attn.proj((attn @ qkv[2]).transpose(1, 2).reshape(b, n, c))
            tokens = tokens + blk.mlp.fc2(torch.nn.functional.gelu(blk.mlp.fc1(blk.norm2(tokens))))
        return net.norm(tokens)[:, 0]

    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=1e-5, atol=1e-5)


def test_official_dino_files_load_plain_and_full_checkpoint(tmp_path):
    enc = ConditionEncoder.dino("tiny", seed=1)
    state = {k: v.clone() for k, v in enc.network.state_dict().items()}
    plain = tmp_path / "dino_tiny_pretrain.pth"
    torch.save(state, plain)
    # A full DINO training checkpoint: DDP + MultiCropWrapper prefixes, a projection head, and a
    # student that differs from the teacher (DINO evaluates the teacher).
    student = {f"module.backbone.{k}": torch.zeros_like(v) for k, v in state.items()}
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher["head.last_layer.weight_g"] = torch.ones(5, 1)
    full = tmp_path / "checkpoint.pth"
    torch.save({"student": student, "teacher": teacher, "epoch": 3}, full)

    images = _images()
    expected = enc.embed(images)
    assert expected.shape == (3, 32) and expected.dtype == torch.float32
    for spec in (str(plain), f"dino:{plain}", str(full)):
        loaded = load_condition_encoder(spec)
        # Shapes cannot tell the head count: DINO's 64-channels-per-head rule gives 1 for 32 dims.
        assert loaded.kind == "dino" and loaded.config["num_heads"] == 1
    strict = ConditionEncoder.from_dino_checkpoint(plain, num_heads=2)
    torch.testing.assert_close(strict.embed(images), expected)
    torch.testing.assert_close(ConditionEncoder.from_dino_checkpoint(full, num_heads=2).embed(images), expected)


def test_saved_encoder_folder_round_trips(tmp_path):
    enc = ConditionEncoder.dino("tiny", seed=2)
    enc.save(tmp_path / "enc")
    assert (tmp_path / "enc" / "dino_vit.pth").is_file()
    # The weight file is the official format: a plain state dict DinoVisionTransformer loads strictly.
    raw = torch.load(tmp_path / "enc" / "dino_vit.pth", weights_only=True)
    DinoVisionTransformer(**DINO_PRESETS["tiny"]).load_state_dict(raw, strict=True)
    back = load_condition_encoder(tmp_path / "enc")
    assert back.config["num_heads"] == 2 and back.preprocess == enc.preprocess
    assert back.fingerprint() == enc.fingerprint()
    torch.testing.assert_close(back.embed(_images()), enc.embed(_images()))


def test_pil_and_uint8_tensor_inputs_agree():
    enc = ConditionEncoder.dino("tiny", seed=0)
    images = _images(size=(36, 36))
    tensor = torch.stack([torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1) for im in images])
    torch.testing.assert_close(enc.embed(images), enc.embed(tensor))
    torch.testing.assert_close(enc.embed(images, batch_size=1), enc.embed(images, batch_size=3), rtol=1e-5, atol=1e-5)


def test_preprocessing_is_dino_eval_recipe():
    pre = Preprocess()
    assert (pre.resize, pre.crop) == (256, 224)
    assert Preprocess.for_crop(224) == pre
    assert Preprocess.for_crop(32).resize == 37
    # A constant image stays constant after resize/crop; normalisation is ImageNet mean/std.
    img = Image.new("RGB", (300, 280), (124, 116, 104))
    out = preprocess_images([img], pre)
    assert out.shape == (1, 3, 224, 224)
    expected = (torch.tensor([124, 116, 104]) / 255 - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    torch.testing.assert_close(out[0, :, 100, 100], expected.float(), rtol=1e-4, atol=1e-4)


def test_resnet50_checkpoint_with_module_prefix(tmp_path):
    enc = ConditionEncoder.resnet50(seed=0)
    path = tmp_path / "r50.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in enc.network.state_dict().items()}}, path)
    loaded = load_condition_encoder(f"resnet50:{path}")
    auto = load_condition_encoder(str(path))
    assert loaded.kind == auto.kind == "resnet50" and loaded.embed_dim == 2048
    images = _images(n=2)
    out = loaded.embed(images)
    assert out.shape == (2, 2048)
    torch.testing.assert_close(out, enc.embed(images))
    loaded.save(tmp_path / "saved")
    torch.testing.assert_close(ConditionEncoder.load(tmp_path / "saved").embed(images), out)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 7, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_torchscript_module(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "my_encoder.pt"
    with warnings.catch_warnings():  # torch deprecates TorchScript; users still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_Tiny()).save(str(path))
    enc = load_condition_encoder(str(path), image_size=32)
    assert enc.kind == "torchscript" and enc.preprocess.crop == 32
    assert enc.embed_dim == 7
    out = enc.embed(_images())
    assert out.shape == (3, 7)
    enc.save(tmp_path / "saved")
    back = ConditionEncoder.load(tmp_path / "saved")
    assert back.embed_dim == 7 and back.preprocess.crop == 32
    torch.testing.assert_close(back.embed(_images()), out)


def test_encoder_errors_name_the_flag(tmp_path):
    with pytest.raises(EncoderLoadError, match="--encoder .*does not exist"):
        load_condition_encoder(str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    torch.save({"foo.weight": torch.zeros(2)}, junk)
    with pytest.raises(EncoderLoadError, match="cannot tell the encoder kind.*dino:, resnet50:, torchscript:"):
        load_condition_encoder(str(junk))
    with pytest.raises(EncoderLoadError, match="no cls_token"):
        load_condition_encoder(f"dino:{junk}")
    with pytest.raises(ValueError, match="unknown preset"):
        load_condition_encoder("preset:vit-huge")
    assert load_condition_encoder("preset:dino-tiny").embed_dim == 32
    assert math.isclose(ConditionEncoder.dino("tiny").preprocess.crop, 32)
