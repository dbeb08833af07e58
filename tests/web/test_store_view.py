"""StoreView, what the store pages read: a store not written yet, then pages and images of the real one."""

from __future__ import annotations


def test_store_view_of_a_store_not_written_yet_reports_it_and_recovers(tmp_path, tiny_weights, image_folder):
    from genview.datastore.store import StoreError
    from genview.pipeline.runner import generate
    from genview.pipeline.spec import GenerateSpec
    from genview.web.store_view import GridQuery, StoreView

    view = StoreView(str(tmp_path / "store"), max_age=60.0)
    for _ in range(2):  # asked twice: the failure is not cached as an empty store
        try:
            view.overview()
            raise AssertionError("a missing store must be reported")
        except StoreError as exc:
            assert "no store yet" in str(exc)
    generate(GenerateSpec(source=str(image_folder), out=str(tmp_path / "store"), model="icgan",
                          weights=tiny_weights("icgan"), k=2, shard_size=6, device="cpu"), progress=False)
    assert view.overview()["summary"]["views"] == 24
    grid = view.grid(GridQuery(per_page=10))
    assert grid["total"] == 12 and len(grid["sources"]) == 10 and grid["pages"] == 2
    first = grid["sources"][0]
    data, mime = view.image(first["shard"], first["views"][0]["member"])
    assert mime == "image/jpeg" and data[:2] == b"\xff\xd8"
