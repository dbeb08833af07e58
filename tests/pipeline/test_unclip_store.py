"""`genview generate --model unclip` with a tiny diffusers pipeline writes a valid store on CPU."""

from __future__ import annotations

import pyarrow.compute as pc

from genview.cli.main import main
from genview.datastore.store import Store
from genview.datastore.verify import verify_store


def test_unclip_store_with_similarity_and_best_of(tmp_path, image_folder, tiny_weights, capsys):
    out = tmp_path / "unclip"
    code = main(["generate", str(image_folder), "--model", "unclip", "--weights", tiny_weights("unclip"), "--k", "3",
                 "--out", str(out), "--shard-size", "6", "--best-of", "2", "--param", "num_inference_steps=2",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = verify_store(str(out), decode=True)
    assert report.ok and report.views == 12 * 3, str(report)
    store = Store(str(out))
    assert store.spec["params"]["num_inference_steps"] == 2 and store.spec["best_of"] == 2
    sims = store.manifest()["similarity"]
    assert sims.null_count == 0
    assert -1.0 <= pc.min(sims).as_py() <= pc.max(sims).as_py() <= 1.0  # a cosine, not a raw dot product
