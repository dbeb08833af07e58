"""Preview captions: non-Latin labels are drawn as text, never as missing-glyph boxes."""

from __future__ import annotations

from genview.datastore.preview import _MISSING, _glyph, drawable_text, label_font


def test_every_drawn_character_has_a_glyph():
    font = label_font()
    text = drawable_text("n01440764 猫 кошка ünï ΔΣ", font)
    missing = _glyph(_MISSING, font)
    assert all(ch.isspace() or _glyph(ch, font) != missing for ch in text)
    assert "n01440764" in text and ("猫" in text or "\\u732b" in text)


def test_preview_of_a_store_with_non_latin_labels(tmp_path, tiny_weights):
    from genview.cli.main import main
    from genview.synthetic_data import make_image_folder

    make_image_folder(tmp_path / "src", classes=2, per_class=2, size=48, seed=9)
    (tmp_path / "src" / "class_00").rename(tmp_path / "src" / "кошка")
    (tmp_path / "src" / "class_01").rename(tmp_path / "src" / "猫")
    assert main(["generate", str(tmp_path / "src"), "--model", "icgan", "--weights", tiny_weights(), "--k", "1",
                 "--out", str(tmp_path / "st"), "--no-progress"]) == 0
    assert main(["preview", str(tmp_path / "st"), "--out", str(tmp_path / "p.png"), "--label", "кошка"]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
