"""Source listing: folders, list files, labels, ignored files, errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genview.datastore.sources import SourceError, assign_shards, list_sources


def touch_image(path, colour=(1, 2, 3)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), colour).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def test_folder_labels_sorted_and_filtered(tmp_path):
    touch_image(tmp_path / "b" / "x.JPG")
    touch_image(tmp_path / "a" / "deep" / "y.png")
    touch_image(tmp_path / "a" / "z.jpeg")
    touch_image(tmp_path / "root.jpg")
    touch_image(tmp_path / "a" / ".hidden.jpg")
    touch_image(tmp_path / ".cache" / "c.jpg")
    (tmp_path / "a" / "notes.txt").write_text("x")
    table = list_sources(str(tmp_path))
    uris = [u.replace(str(tmp_path) + "/", "") for u in table.column("uri").to_pylist()]
    assert uris == ["a/deep/y.png", "a/z.jpeg", "b/x.JPG", "root.jpg"]
    assert table.column("source_id").to_pylist() == [0, 1, 2, 3]
    assert table.column("label").to_pylist() == ["a", "a", "b", None]
    assert table.column("label_index").to_pylist() == [0, 0, 1, None]


def test_list_files_resolve_relative_paths_and_keep_columns(tmp_path):
    touch_image(tmp_path / "imgs" / "one.jpg")
    touch_image(tmp_path / "imgs" / "two.jpg")
    (tmp_path / "list.txt").write_text("imgs/two.jpg\n# comment\n\nimgs/one.jpg\n")
    txt = list_sources(str(tmp_path / "list.txt"))
    assert txt.column("uri").to_pylist() == [str(tmp_path / "imgs/one.jpg"), str(tmp_path / "imgs/two.jpg")]
    (tmp_path / "list.csv").write_text("filepath,label,slide\nimgs/two.jpg,cat,s2\nimgs/one.jpg,dog,s1\n")
    csv = list_sources(str(tmp_path / "list.csv"))
    assert csv.column("label").to_pylist() == ["dog", "cat"]
    assert csv.column("slide").to_pylist() == ["s1", "s2"]  # extra columns follow the sort
    assert csv.column("label_index").to_pylist() == [1, 0]
    pq.write_table(pa.table({"path": ["imgs/one.jpg"]}), tmp_path / "list.parquet")
    assert list_sources(str(tmp_path / "list.parquet")).num_rows == 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "holds no images"),
        (lambda p: p.with_suffix(".csv").write_text("name\nx.jpg\n"), "no path column"),
    ],
)
def test_listing_errors_say_why(tmp_path, setup, message):
    target = tmp_path / "src"
    setup(target)
    path = target.with_suffix(".csv") if message == "no path column" else target
    with pytest.raises(SourceError, match=message):
        list_sources(str(path))


def test_assign_shards_sizes_are_runs_and_order_is_a_seeded_permutation():
    table = pa.table({"source_id": list(range(7))})
    planned = assign_shards(table, 3, seed=5)
    assert planned.column("shard").to_pylist() == [0, 0, 0, 1, 1, 1, 2]  # rows in shard order
    ids = planned.column("source_id").to_pylist()
    assert sorted(ids) == list(range(7)) and ids != list(range(7))
    assert assign_shards(table, 3, seed=5).equals(planned)  # frozen by the seed
    assert assign_shards(table, 3, seed=6).column("source_id").to_pylist() != ids
    with pytest.raises(ValueError, match="--shard-size"):
        assign_shards(table, 0)


def test_integer_labels_keep_their_value(tmp_path):
    touch_image(tmp_path / "a.jpg")
    touch_image(tmp_path / "b.jpg")
    touch_image(tmp_path / "c.jpg")
    (tmp_path / "list.csv").write_text("path,label\na.jpg,10\nb.jpg,2\nc.jpg,281\n")
    assert list_sources(str(tmp_path / "list.csv")).column("label_index").to_pylist() == [10, 2, 281]
