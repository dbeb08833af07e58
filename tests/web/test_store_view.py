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


def test_genview_browse_serves_an_s3_store_read_only(tmp_path, tiny_weights, image_folder, s3_bucket):
    import re

    import fsspec
    import httpx
    from web_helpers import Process

    from genview.pipeline.runner import generate
    from genview.pipeline.spec import GenerateSpec

    generate(GenerateSpec(source=str(image_folder), out=str(tmp_path / "store"), model="icgan",
                          weights=tiny_weights("icgan"), k=2, shard_size=6, device="cpu"), progress=False)
    s3 = fsspec.filesystem("s3", skip_instance_cache=True)
    s3.put(str(tmp_path / "store"), f"{s3_bucket}/store", recursive=True)
    url = f"s3://{s3_bucket}/store"
    server = Process(["browse", url, "--port", "{port}"], cwd=tmp_path, log=tmp_path / "browse.log").start("/")
    try:
        page = httpx.get(server.url + "/?per_page=10&sort=best").text
        assert "12 sources in 2 shards (2 done): 12 ok, 0 failed, 24 views" in " ".join(page.split())
        images = re.findall(r'src="(/img/[^"]+)"', page)
        assert len(images) == 10 * 3
        for path in images[:3]:
            response = httpx.get(server.url + path)
            assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
        assert httpx.post(server.url + "/").status_code == 405  # read-only: nothing but GET
    finally:
        server.stop()
