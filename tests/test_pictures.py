"""Pictures a person can read: exact nearest-neighbour upscaling, a minimum size, drawn headings
and labels, and the larger PNGs that `sample` and `complete` write."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from made_cli.commands import complete_run, sample_run
from made_cli.pictures import (
    MIN_CELL_PX,
    MIN_SHORT_SIDE_PX,
    PAD,
    picture,
    png_bytes,
    rows_by_class,
    save_png,
    scale_factor,
    tile,
    upscale,
)
from made_cli.runs import load_run


def _binary(n: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, side, side, generator=g) > 0.5).float()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_upscale_repeats_each_pixel_into_a_block() -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = upscale(a, 3)
    assert b.shape == (9, 12)
    ys, xs = np.indices(b.shape)
    assert (b == a[ys // 3, xs // 3]).all()
    with pytest.raises(ValueError):
        upscale(a, 0)


def test_every_output_pixel_is_its_source_pixel() -> None:
    images = torch.rand(7, 5, 6)  # grey levels, not square, a ragged last row
    out = _pixels(picture(images, 3))
    small = tile(images, 3)
    s = out.shape[0] // small.shape[0]
    assert s > 1 and out.shape[:2] == (small.shape[0] * s, small.shape[1] * s)
    ys, xs = np.indices(out.shape[:2])
    assert (out == small[ys // s, xs // s]).all()
    # and each image's own pixels sit where they should, as s x s blocks of its value
    want = np.floor(images.numpy() * 255 + 0.5).astype(np.uint8)
    for k in range(7):
        y0, x0 = (PAD + (k // 3) * (5 + PAD)) * s, (PAD + (k % 3) * (6 + PAD)) * s
        block = out[y0 : y0 + 5 * s, x0 : x0 + 6 * s, 0]
        assert (block == want[k].repeat(s, 0).repeat(s, 1)).all()


def test_a_binary_grid_gains_no_grey_values() -> None:
    out = _pixels(picture(_binary(64, 8), 8))
    assert set(np.unique(out).tolist()) <= {0, 128, 255}  # black, white, and the gaps' grey


def test_an_8x8_digit_grid_is_scaled_to_a_readable_size() -> None:
    image = picture(_binary(64, 8), 8)  # 82 x 82 source pixels
    assert min(image.size) >= MIN_SHORT_SIDE_PX
    s = image.size[0] // 82
    assert image.size == (82 * s, 82 * s) and 8 * s >= MIN_CELL_PX
    assert scale_factor((8, 8), (82, 82)) == s


def test_scale_factor_rules() -> None:
    assert scale_factor((28, 28), (302, 302)) == 2  # 100 MNIST digits: cells of 56 px, 604 px in all
    assert scale_factor((28, 28), (32, 32)) == 13  # a single digit is not left at 64 px
    assert scale_factor((28, 28), (1922, 152)) == 2  # a tall grid: cells still >= MIN_CELL_PX
    assert scale_factor((100, 100), (1000, 1000)) == 1  # never shrunk


def _band(image: Image.Image, height: int) -> np.ndarray:
    return _pixels(image)[:height]


def test_headings_draw_text_above_the_grid() -> None:
    images = _binary(6, 8)
    plain = picture(images, 3)
    headed = picture(images, 3, headings=["original", "observed", "completion"])
    extra = headed.size[1] - plain.size[1]
    assert extra > 0 and headed.size[0] == plain.size[0]
    band = _band(headed, extra)
    assert (band < 128).any()  # something dark was drawn in the band
    other = picture(images, 3, headings=["a", "b", "c"])
    assert other.size == headed.size and not np.array_equal(_band(other, extra), band)
    # the grid under the band is the plain picture, untouched
    assert np.array_equal(_pixels(headed)[extra:], _pixels(plain))


def test_a_heading_can_span_columns() -> None:
    image = picture(_binary(5, 8), 5, headings=["original", "observed", ("completions", 3)])
    assert (_band(image, 20) < 128).any()
    with pytest.raises(ValueError, match="span"):
        picture(_binary(5, 8), 5, headings=["original", ("completions", 3)])


def test_row_labels_and_title_draw_text() -> None:
    images = _binary(4, 8)
    plain = picture(images, 2)
    labelled = picture(images, 2, row_labels=["class 0", "class 1"])
    left = labelled.size[0] - plain.size[0]
    assert left > 0 and labelled.size[1] == plain.size[1]
    strip = _pixels(labelled)[:, :left]
    assert (strip < 128).any()
    relabelled = picture(images, 2, row_labels=["class 7", "class 8"])
    assert not np.array_equal(_pixels(relabelled)[:, :left], strip)
    with pytest.raises(ValueError, match="row labels"):
        picture(images, 2, row_labels=["class 0"])
    titled = picture(images, 2, title="class 3")
    assert titled.size[1] > plain.size[1]
    assert (_band(titled, titled.size[1] - plain.size[1]) < 128).any()


def test_rows_by_class_puts_each_class_on_its_own_row() -> None:
    images = torch.arange(7, dtype=torch.float32)[:, None, None].expand(7, 2, 2) / 10
    labels = torch.arange(7) % 3  # classes in turn
    cells, ncol, names = rows_by_class(images, labels)
    assert ncol == 3 and names == ["class 0", "class 1", "class 2"]
    firsts = cells[:, 0, 0].tolist()
    assert firsts == pytest.approx([0.0, 0.3, 0.6, 0.1, 0.4, 128 / 255, 0.2, 0.5, 128 / 255])  # grey filler


def test_png_reads_back_at_the_expected_size(tmp_path: Path) -> None:
    images = _binary(9, 4)
    image = picture(images, 3, headings=["a", "b", "c"], row_labels=["x", "y", "z"], title="t")
    back = Image.open(io.BytesIO(png_bytes(image)))
    assert back.format == "PNG" and back.size == image.size
    path = tmp_path / "grid.png"
    save_png(path, images, 3, headings=["a", "b", "c"], row_labels=["x", "y", "z"], title="t")
    assert Image.open(path).size == image.size
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- through sample and complete -------------------------------------------------------------
@pytest.fixture
def image_run(tmp_path: Path, monkeypatch) -> Path:
    """A class-conditional run on 4x4 synthetic images (16 features), trained in a second."""
    from typer.testing import CliRunner

    from made_cli.cli import app

    config = tmp_path / "pics.yaml"
    config.write_text(
        "name: pics\nseed: 0\n"
        "data: {name: synthetic, features: 16, size: 200}\n"
        "model: {hidden: [16], ordering: natural, num_masks: 1, condition_on: label}\n"
        "train: {epochs: 1, batch_size: 50, lr: 0.01, patience: 1}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", str(config), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (run,) = list((tmp_path / "runs").iterdir())
    return run


def test_sample_and_complete_write_readable_pictures(image_run: Path) -> None:
    run = load_run(image_run)
    classes = run.model.classes
    assert classes > 1 and run.image_shape == (4, 4)

    paths = sample_run(run, 8, seed=0)
    turns = _pixels(Image.open(paths["png"]))
    samples = torch.from_numpy(np.load(paths["npy"])).float().view(8, 4, 4)
    labels = torch.from_numpy(np.load(paths["labels"]))
    cells, ncol, names = rows_by_class(samples, labels)
    assert names == [f"class {c}" for c in range(min(8, classes))]
    # the samples, a row per class, are the right of the picture; the row labels are on its left
    bare = _pixels(picture(cells, ncol))
    assert turns.shape[0] == bare.shape[0] and turns.shape[1] > bare.shape[1]
    assert np.array_equal(turns[:, -bare.shape[1] :], bare)
    assert (turns[:, : -bare.shape[1]] < 128).any()

    one = Image.open(sample_run(run, 9, seed=0, label=1)["png"])
    plain = picture(torch.zeros(9, 4, 4), 3)
    assert one.size[0] == plain.size[0] and one.size[1] > plain.size[1]  # a title band: "class 1"
    assert min(plain.size) >= MIN_SHORT_SIDE_PX

    done = complete_run(run, 3, per_image=2, seed=0)
    pic = Image.open(done.paths["png"])
    bare = picture(torch.zeros(12, 3, 4, 4), 4)
    assert pic.size[0] > bare.size[0] and pic.size[1] > bare.size[1]  # row labels and headings
    assert min(pic.size) >= MIN_SHORT_SIDE_PX
