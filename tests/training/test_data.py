import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from training.data import DataError, LabelledImages, fingerprint, load_images, split_indices
from training.preprocessing import decode


def write_image(path, shade, fmt="PNG", size=16):
    """A small solid image; ``shade`` keeps files distinct."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (shade, 255 - shade, 40)).save(path, format=fmt)
    return path


def make_classes(root, counts):
    for name, n in counts.items():
        for i in range(n):
            write_image(root / name / f"{i}.png", shade=10 * i + len(name))


def jpeg_bytes(size=64):
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shapes():
    return load_images("builtin:shapes")


def test_folder_skips_corrupt_images_and_lists_other_files(tmp_path):
    make_classes(tmp_path, {"cat": 5, "dog": 6})
    truncated = tmp_path / "cat" / "broken.jpg"
    whole = jpeg_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\0\1junk")
    write_image(tmp_path / "dog" / "deeper" / "nested.png", shade=3)
    write_image(tmp_path / ".thumbs" / "x.png", shade=4)
    write_image(tmp_path / "dog" / "upper.JPG", shade=5, fmt="JPEG")

    data = load_images(str(tmp_path))

    assert data.classes == ["cat", "dog"]
    assert len(data.images) == len(data.sources) == 12
    # Hidden files and deeper folders are not listed: only what a user put in a class folder themselves.
    skipped = dict(data.skipped)
    assert sorted(skipped) == sorted([str(truncated), str(tmp_path / "cat" / "notes.txt")])
    assert "JPEG" in skipped[str(truncated)]
    assert "not an image" in skipped[str(tmp_path / "cat" / "notes.txt")]
    assert not any(s.endswith(("notes.txt", ".DS_Store", "nested.png", "x.png")) for s in data.sources)
    assert str(tmp_path / "dog" / "upper.JPG") in data.sources
    for source, label in zip(data.sources, data.labels):
        assert f"/{data.classes[label]}/" in source
    assert data.labels.dtype == np.int64


def test_animated_gif_loads(tmp_path):
    make_classes(tmp_path, {"a": 5, "b": 4})
    frames = [Image.new("RGB", (10, 7), c) for c in ("red", "blue", "green")]
    gif = tmp_path / "b" / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)

    data = load_images(str(tmp_path))

    assert str(gif) in data.sources and not data.skipped
    image = data.images[data.sources.index(str(gif))]
    assert decode(tf.constant(image)).shape == (7, 10, 3)


def test_csv_with_relative_and_absolute_paths(tmp_path):
    make_classes(tmp_path / "imgs", {"x": 3, "y": 3})
    elsewhere = write_image(tmp_path / "other" / "far.png", shade=99)
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = ["path,label"] + [f"../imgs/{c}/{i}.png,{c}" for c in "xy" for i in range(3)] + [f"{elsewhere},y", ""]
    (lists / "data.csv").write_text("\n".join(rows))

    data = load_images(str(lists / "data.csv"), min_per_class=3)

    assert data.classes == ["x", "y"]
    assert len(data.images) == 7
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert data.sources[-1] == str(elsewhere)
    assert data.images[0] == (tmp_path / "imgs" / "x" / "0.png").read_bytes()


def test_csv_missing_file_is_listed(tmp_path):
    make_classes(tmp_path, {"x": 5, "y": 5})
    rows = [f"{c}/{i}.png,{c}" for c in "xy" for i in range(5)] + ["x/gone.png,x"]
    (tmp_path / "data.csv").write_text("\n".join(rows))

    with pytest.raises(DataError, match=r"1 file\(s\).*\n.*gone\.png"):
        load_images(str(tmp_path / "data.csv"))


def test_csv_malformed_row_names_line(tmp_path):
    make_classes(tmp_path, {"x": 5, "y": 5})
    (tmp_path / "data.csv").write_text("path,label\nx/0.png,x\nx/1.png,\n")

    with pytest.raises(DataError, match="line 3"):
        load_images(str(tmp_path / "data.csv"))


def test_empty_folder(tmp_path):
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_images(str(tmp_path))


def test_single_class(tmp_path):
    make_classes(tmp_path, {"cat": 6})
    with pytest.raises(DataError, match="only the class 'cat'.*at least two"):
        load_images(str(tmp_path))


def test_class_with_too_few_images(tmp_path):
    make_classes(tmp_path, {"cat": 6, "dog": 2})
    with pytest.raises(DataError, match="'dog' has 2.*at least 5"):
        load_images(str(tmp_path))
    assert len(load_images(str(tmp_path), min_per_class=2).images) == 8


@pytest.mark.parametrize("spec", ["builtin:cifar", "", "nowhere/at/all", __file__])
def test_unusable_specs(spec):
    with pytest.raises(DataError):
        load_images(spec)


def test_digits_match_sklearn():
    data = load_images("builtin:digits")
    digits = load_digits()

    assert len(data.images) == 1797 and not data.skipped
    assert data.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(data.labels, digits.target)
    assert data.sources[17] == "builtin:digits#17"

    split = split_indices(data.labels)
    _, expected_test = train_test_split(np.arange(1797), test_size=0.25, stratify=digits.target, random_state=0)
    np.testing.assert_array_equal(split.test, expected_test)
    _, X_test, _, _ = train_test_split(digits.data, digits.target, test_size=0.25, stratify=digits.target,
                                       random_state=0)
    np.testing.assert_array_equal(digits.data[split.test], X_test)

    pixels = decode(tf.constant(data.images[0])).numpy()
    assert pixels.shape == (8, 8, 3)
    assert digits.images[0][0, 2] == 5
    assert pixels[0, 2].tolist() == [80, 80, 80]  # round(5 * 255 / 16)


def test_shapes_are_deterministic(shapes):
    assert len(shapes.images) == 90 and not shapes.skipped
    assert shapes.classes == ["circle", "square", "triangle"]
    assert np.bincount(shapes.labels).tolist() == [30, 30, 30]
    assert decode(tf.constant(shapes.images[0])).shape == (32, 32, 3)
    assert len(set(shapes.images)) == 90
    assert fingerprint(load_images("builtin:shapes")) == fingerprint(shapes)


def test_fingerprint_ignores_order_but_not_labels(shapes):
    order = np.random.default_rng(3).permutation(len(shapes.images))
    shuffled = LabelledImages(shapes.classes, [shapes.images[i] for i in order], shapes.labels[order],
                              [shapes.sources[i] for i in order], [])
    assert fingerprint(shuffled) == fingerprint(shapes)

    relabelled = shapes.labels.copy()
    relabelled[0] = (relabelled[0] + 1) % 3
    changed = LabelledImages(shapes.classes, shapes.images, relabelled, shapes.sources, [])
    assert fingerprint(changed) != fingerprint(shapes)


def test_split_sizes_and_stratification(shapes):
    split = split_indices(shapes.labels, test_fraction=0.25, val_fraction=0.15, seed=0)

    assert (len(split.train), len(split.val), len(split.test)) == (56, 11, 23)
    everything = np.concatenate([split.train, split.val, split.test])
    assert sorted(everything.tolist()) == list(range(90))
    for part in (split.train, split.val, split.test):
        assert set(shapes.labels[part].tolist()) == {0, 1, 2}
    assert split.to_dict() == {"sizes": {"train": 56, "val": 11, "test": 23},
                               "test_fraction": 0.25, "val_fraction": 0.15, "seed": 0}
    assert not np.array_equal(split.test, np.sort(split.test))  # train_test_split's order is kept

    no_val = split_indices(shapes.labels, val_fraction=0)
    assert len(no_val.val) == 0 and len(no_val.train) == 67
    np.testing.assert_array_equal(no_val.test, split.test)


def test_split_too_small_for_every_class_is_a_data_error():
    with pytest.raises(DataError, match="validation"):
        split_indices(np.repeat([0, 1, 2], 5))
