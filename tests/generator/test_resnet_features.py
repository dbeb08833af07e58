"""ResNet feature extractors: checkpoint formats, architecture inference, ic_gan preprocessing."""

from __future__ import annotations

import pytest
import torch
import torchvision
from PIL import Image

from genview.generator.icgan import CCICGANGenerator, ICGANGenerator
from genview.generator.resnet_features import (
    ResNetFeatures,
    crop_and_resize,
    infer_resnet_arch,
    load_resnet_features,
    normalize_for_encoder,
    save_swav_checkpoint,
    save_torchvision_checkpoint,
)

TINY = {"layers": [1, 2, 1, 1], "planes": [8, 16, 16, 16], "stem_width": 8}


def _tiny(num_classes=None, seed=0) -> ResNetFeatures:
    torch.manual_seed(seed)
    model = ResNetFeatures(**TINY, num_classes=num_classes)
    # Non-trivial BN statistics so a wrongly loaded buffer would show in the features.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def _features(model: ResNetFeatures) -> torch.Tensor:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x)


def test_resnet50_layout_matches_torchvision():
    with torch.device("meta"):
        reference = torchvision.models.resnet50()
        ours = ResNetFeatures([3, 4, 6, 3], num_classes=1000)
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == ref_shapes
    assert infer_resnet_arch(reference.state_dict()) == {
        "layers": [3, 4, 6, 3], "planes": [64, 128, 256, 512], "stem_width": 64, "width_per_group": 64, "num_classes": 1000,
    }
    assert ours.feature_dim == 2048


def test_swav_checkpoint_with_module_prefix_and_heads_loads(tmp_path):
    model = _tiny()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    # SwAV's file also holds its training heads; they must be dropped, not loaded.
    state["module.projection_head.0.weight"] = torch.zeros(32, 64)
    state["module.projection_head.0.bias"] = torch.zeros(32)
    state["module.prototypes.weight"] = torch.zeros(30, 16)
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save(state, path)
    loaded = load_resnet_features(path)
    assert loaded.fc is None and loaded.arch["layers"] == TINY["layers"]
    assert torch.equal(_features(loaded), _features(model))


def test_torchvision_checkpoint_with_fc_and_without_bn_counters_loads(tmp_path):
    model = _tiny(num_classes=7)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet50-19c8e357.pth"
    # Like the 2017 file: legacy serialisation, plain keys, fc, no num_batches_tracked.
    torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = load_resnet_features(path)
    assert loaded.arch["num_classes"] == 7 and loaded.fc.weight.shape == (7, 64)
    assert torch.equal(_features(loaded), _features(model))


def test_save_helpers_roundtrip(tmp_path):
    model = _tiny(num_classes=5, seed=3)
    save_torchvision_checkpoint(model, tmp_path / "tv.pth")
    assert "fc.weight" in torch.load(tmp_path / "tv.pth", weights_only=True)
    swav = _tiny(seed=4)
    save_swav_checkpoint(swav, tmp_path / "swav.pth.tar")
    keys = torch.load(tmp_path / "swav.pth.tar", weights_only=True).keys()
    assert all(k.startswith("module.") for k in keys)
    assert torch.equal(_features(load_resnet_features(tmp_path / "tv.pth")), _features(model))
    assert torch.equal(_features(load_resnet_features(tmp_path / "swav.pth.tar")), _features(swav))


def test_bad_checkpoints_are_refused_with_the_keys(tmp_path):
    state = {f"module.{k}": v for k, v in _tiny().state_dict().items()}
    torch.save(dict(state, **{"module.head.weight": torch.zeros(2)}), tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: head\.weight"):
        load_resnet_features(tmp_path / "extra.pth")
    torch.save(dict(state, **{"layer1.0.conv1.weight": torch.zeros(2)}), tmp_path / "mixed.pth")
    with pytest.raises(ValueError, match="prefixed 'module.' and some are not"):
        load_resnet_features(tmp_path / "mixed.pth")
    partial = {k: v for k, v in state.items() if k != "module.layer2.1.bn3.running_var"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"missing keys: layer2\.1\.bn3\.running_var"):
        load_resnet_features(tmp_path / "partial.pth")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no conv1.weight"):
        load_resnet_features(tmp_path / "other.pth")


def test_crop_takes_the_centre_square_of_the_long_edge():
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    image.paste((0, 255, 0), (15, 0, 45, 30))  # the centre 30x30 square is green
    pixels = crop_and_resize([image], 16)
    assert pixels.shape == (1, 3, 16, 16) and pixels.dtype == torch.uint8
    assert pixels[0, 1].min() == 255 and pixels[0, 0].max() == 0
    tall = crop_and_resize([image.rotate(90, expand=True)], 16)
    assert torch.equal(tall, pixels)


def test_normalisation_and_bicubic_resize():
    pixels = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    x = normalize_for_encoder(pixels)
    assert x.shape == (1, 3, 224, 224)
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x.mean(dim=(0, 2, 3)), expected, atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


@pytest.mark.parametrize("cls", [ICGANGenerator, CCICGANGenerator])
def test_embeddings_are_unit_norm_and_input_type_agnostic(cls):
    model = cls.from_preset("tiny", seed=5)
    gen = torch.Generator().manual_seed(0)
    arrays = [torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8) for h, w in [(48, 40), (32, 32), (20, 70)]]
    images = [Image.fromarray(a.numpy()) for a in arrays]
    emb = model.embed(images)
    assert emb.shape == (3, 64) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-6)
    assert not torch.allclose(emb[0], emb[1])
    for array, row in zip(arrays, emb):
        as_tensor = model.embed(array.permute(2, 0, 1).unsqueeze(0))
        # One row alone vs three batched: the same input, kernels may sum in another order.
        assert torch.allclose(as_tensor[0], row, atol=1e-5)
    assert model.embed([]).shape == (0, 64)
    with pytest.raises(ValueError, match="uint8"):
        model.embed(torch.zeros(1, 3, 8, 8))
