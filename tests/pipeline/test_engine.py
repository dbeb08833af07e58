"""The staged engine: batched views agree within one level, --exact is byte-identical, stats, failures, best-of."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from genview.datastore.store import Store
from genview.generator.interpolation import interpolate
from genview.generator.seeding import view_seed
from genview.pipeline import GenerateSpec, generate
from genview.pipeline.decode import decode_image
from genview.pipeline.runner import load_generator
from genview.pipeline.shard import DECODE_MIN_SIDE


def _views(out) -> dict[str, np.ndarray]:
    """Every stored view of a store, decoded: member name -> HxWx3 uint8."""
    views = {}
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if ".v" in member.name:
                    views[member.name] = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())))
    return views


def _tars(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


def _spec(image_folder, out, weights, model="icgan", **extra) -> GenerateSpec:
    fields = dict(source=str(image_folder), out=str(out), model=model, weights=weights, k=3, shard_size=6,
                  format="png")
    fields.update(extra)
    return GenerateSpec(**fields)


@pytest.mark.parametrize("model, params", [("icgan", {}), ("eldm", {"steps": 3}), ("unclip", {"num_inference_steps": 2})])
def test_batched_views_agree_within_one_level_across_batch_sizes_and_threads(tmp_path, image_folder, tiny_weights,
                                                                              model, params):
    weights = tiny_weights(model)
    k = 1 if model == "unclip" else 3  # the diffusion pipeline is the slow one on CPU
    runs = {}
    for name, batch, threads in [("b1", 1, 1), ("b5", 5, 1), ("b36t2", 36, 2)]:
        torch.set_num_threads(threads)
        try:
            generate(_spec(image_folder, tmp_path / name, weights, model, batch_size=batch, params=params, k=k),
                     progress=False)
        finally:
            torch.set_num_threads(1)
        runs[name] = _views(tmp_path / name)
    reference = runs.pop("b1")
    assert len(reference) == 12 * k
    for name, views in runs.items():
        assert views.keys() == reference.keys()
        worst = max(int(np.abs(views[k].astype(int) - reference[k].astype(int)).max()) for k in views)
        assert worst <= 1, f"{model} {name}: a pixel differs by {worst} levels from batch 1"


def test_exact_is_byte_identical_across_batch_sizes(tmp_path, image_folder, tiny_weights):
    weights = tiny_weights("icgan")
    generate(_spec(image_folder, tmp_path / "a", weights, batch_size=1, exact=True), progress=False)
    generate(_spec(image_folder, tmp_path / "b", weights, batch_size=7, exact=True), progress=False)
    a, b = _tars(tmp_path / "a"), _tars(tmp_path / "b")
    assert a and a == b  # every tar, similarity scores in the json included
    # With --view-size the collector resizes each batch in one call: still the same bytes.
    generate(_spec(image_folder, tmp_path / "c", weights, batch_size=1, exact=True, view_size=24), progress=False)
    generate(_spec(image_folder, tmp_path / "d", weights, batch_size=7, exact=True, view_size=24), progress=False)
    c, d = _tars(tmp_path / "c"), _tars(tmp_path / "d")
    assert c and c == d and c != a
    assert all(view.shape == (24, 24, 3) for view in _views(tmp_path / "d").values())


def test_shard_stats_report_stages_busy_fraction_and_bottleneck(tmp_path, image_folder, tiny_weights):
    shards: list[dict] = []
    summary = generate(_spec(image_folder, tmp_path / "s", tiny_weights("icgan"), batch_size=8), progress=False,
                       on_shard=shards.append)
    assert summary.views == 36 and len(shards) == 2
    stored = Store(str(tmp_path / "s")).read_stats(0)
    for stats in (shards[0], stored):
        assert {"read_decode", "device", "collect", "encode", "write"} <= set(stats["stages"])
        assert all(v["seconds"] >= 0 and v["cpu_seconds"] >= 0 for v in stats["stages"].values())
        assert 0 < stats["device_busy"] <= 1
        assert stats["bottleneck"] in ("device", "read_decode", "collect", "encode_write")
        assert stats["batches"] == 3  # 6 sources x 3 views in batches of 8
        assert stats["threads"]["torch"] >= 1 and stats["cpu_seconds"] > 0
    assert summary.device_busy is not None and 0 < summary.device_busy <= 1
    assert "device busy" in str(summary)


def test_a_failing_forward_stops_every_stage_and_raises(tmp_path, image_folder, tiny_weights):
    spec = _spec(image_folder, tmp_path / "s", tiny_weights("icgan"), batch_size=4)
    generator = load_generator(spec)
    calls = {"n": 0}
    original = generator.generate_on_device

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("device fell over")
        return original(*args, **kwargs)

    generator.generate_on_device = failing
    with pytest.raises(RuntimeError, match="device fell over"):
        generate(spec, generator=generator, progress=False)
    assert not [t for t in threading.enumerate() if t.name.startswith(("genview-feed", "genview-device", "genview-collect"))]
    assert not Store(str(tmp_path / "s")).done_shards()  # nothing half-made was committed


def test_best_of_with_interpolation_scores_against_the_interpolated_condition(tmp_path, image_folder, tiny_weights):
    spec = _spec(image_folder, tmp_path / "s", tiny_weights("icgan"), k=2, best_of=4, interpolate=True,
                 alphas=[0.5], interpolation="lerp", batch_size=5, exact=True)
    generate(spec, progress=False)
    generator = load_generator(spec)
    rows = Store(str(tmp_path / "s")).manifest().to_pylist()
    uri_of = {r["source_id"]: r["source_uri"] for r in rows}

    def embedding(source_id: int) -> torch.Tensor:
        with open(uri_of[source_id], "rb") as fh:
            return generator.embed([decode_image(fh.read(), min_side=DECODE_MIN_SIDE)])

    checked = 0
    for row in rows:
        primary, secondary = embedding(row["source_id"]), embedding(row["secondary_id"])
        condition = interpolate(primary, secondary, [0.5], "lerp")
        seeds = [view_seed(0, row["source_id"], row["view"], c) for c in range(4)]
        candidates = torch.cat([generator.generate(condition, [seed]) for seed in seeds])
        views = generator.embed(candidates)
        to_condition = torch.nn.functional.cosine_similarity(views, condition.expand_as(views), dim=1)
        to_primary = torch.nn.functional.cosine_similarity(views, primary.expand_as(views), dim=1)
        # The kept candidate is the one closest to what it was conditioned on, and its score says so.
        assert row["seed"] == seeds[int(to_condition.argmax())]
        assert row["similarity"] == pytest.approx(float(to_condition.max()), abs=1e-5)
        checked += int(to_condition.argmax()) != int(to_primary.argmax())
    assert checked, "no view where the primary and the interpolated condition pick different candidates"
    first = rows[0]
    with tarfile.open(tmp_path / "s" / "shards" / f"{first['shard']:06d}.tar") as tar:
        meta = json.loads(tar.extractfile(f"{first['key']}.json").read())
    assert meta["seeds"][first["view"]] == first["seed"]


def test_an_asynchronous_device_is_launched_ahead_and_waited_for_by_its_events(tmp_path, image_folder, tiny_weights):
    """The CUDA-like path (device events) on this CPU: a simulated queue under the real tiny model.

    Each batch's real forward runs at once; its completion is 400 ms of queue time later (more
    than the forward takes here). The device thread must launch the next batch before the previous
    one has completed, the collector must wait for each batch's end event, the busy fraction must
    come from the events, and the store must equal a run without events byte for byte.
    """
    from genview.pipeline.timeline import DeviceTimeline, TimelineEvent

    weights = tiny_weights("icgan")
    generate(_spec(image_folder, tmp_path / "sync", weights, batch_size=8), progress=False)

    waited: list[tuple[float, float]] = []  # (event time, host time its synchronize() returned)

    class RecordedEvent(TimelineEvent):
        def synchronize(self) -> None:
            super().synchronize()
            waited.append((self.at, time.perf_counter()))

    timeline = DeviceTimeline()
    launches: list[tuple[float, float]] = []  # (host time of the launch, device time it completes)
    spec = _spec(image_folder, tmp_path / "async", weights, batch_size=8)
    generator = load_generator(spec)
    forward = generator.generate_on_device

    def queued(*args, **kwargs):
        launches.append((time.perf_counter(), timeline.run(0.4).at))  # queued; the real forward runs now
        return forward(*args, **kwargs)

    generator.generate_on_device = queued
    generator.device_event = lambda: RecordedEvent(timeline.event().at)
    shards: list[dict] = []
    generate(spec, generator=generator, progress=False, on_shard=shards.append)

    assert _tars(tmp_path / "async") == _tars(tmp_path / "sync")
    assert len(launches) == 6  # 2 shards x 18 views in batches of 8
    ran_ahead = [i for i in range(len(launches) - 1) if launches[i + 1][0] < launches[i][1]]
    assert ran_ahead, "the device thread never launched a batch before the previous one had completed"
    # The collector waited on every batch's end event, and no wait returned before the device got there.
    assert sorted(at for at, _ in waited) == pytest.approx(sorted(at for _, at in launches), abs=1e-9)
    assert all(returned >= at for at, returned in waited)
    for stats in shards:
        assert stats["batches"] == 3
        # From the events: 3 batches x 400 ms of queue time, plus any time the queue sat idle between
        # a batch's begin and end events while the host was still launching (as CUDA counts it).
        assert 1.2 - 1e-3 <= stats["device_busy_seconds"] <= stats["seconds"]
        assert stats["device_busy"] == pytest.approx(stats["device_busy_seconds"] / stats["seconds"], abs=0.02)
        assert stats["stages"]["collect_wait_device"]["seconds"] > 0


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_a_batch_resize_equals_resizing_each_view_alone(layout):
    """The collector resizes a whole batch at once on CPU: each row must come out as if resized alone."""
    from genview.pipeline.encode import resize_views

    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (17, 3, 256, 256), dtype=torch.uint8, generator=generator)
    batch = batch.contiguous(memory_format=getattr(torch, layout if layout == "channels_last" else "contiguous_format"))
    together = resize_views(batch, 224)
    assert together.shape == (17, 3, 224, 224)
    for row in range(17):
        assert torch.equal(together[row : row + 1], resize_views(batch[row : row + 1], 224))


def test_io_threads_default_to_the_usable_cpus_minus_one_at_most_four(tmp_path, image_folder, tiny_weights):
    """The default leaves a core to the device, collector and writer threads; a given value wins; shards record it."""
    import os

    from genview.pipeline.spec import default_io_threads

    cpus = len(os.sched_getaffinity(0))
    assert default_io_threads() == max(1, min(4, cpus - 1))
    shards: list[dict] = []
    spec = _spec(image_folder, tmp_path / "s", tiny_weights("icgan"), batch_size=8)
    assert spec.io_threads == default_io_threads()
    generate(spec, progress=False, on_shard=shards.append)
    assert {s["threads"]["io"] for s in shards} == {default_io_threads()}
    assert _spec(image_folder, tmp_path / "t", tiny_weights("icgan"), io_threads=3).io_threads == 3
