"""search.data: IDX parsing, Fashion-MNIST loading, the tf.data pipelines, the TFDS path."""

import gzip
import os
import struct
import types

import numpy as np
import pytest
import tensorflow as tf

from search import data

REAL_DIR = data.FASHION_MNIST_DIR
HAVE_REAL = all(
    os.path.exists(os.path.join(REAL_DIR, stem + ".gz")) for stem in data.FASHION_MNIST_FILES.values()
)


def idx_bytes(array, code=0x08):
    array = np.asarray(array)
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path, array, code=0x08, compress=None):
    raw = idx_bytes(array, code)
    compress = str(path).endswith(".gz") if compress is None else compress
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)
    return path


def make_fake_mnist(directory, n_train=60, n_test=20, gz=True, seed=0):
    """Four IDX files like Fashion-MNIST's: image i of class c has every pixel = 10 * c + (i % 3)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        labels[:10] = np.arange(10)  # every class present
        images = np.broadcast_to(
            (10 * labels + np.arange(n) % 3).astype(np.uint8)[:, None, None], (n, 28, 28)
        ).copy()
        ext = ".gz" if gz else ""
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte{ext}"), images)
        write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte{ext}"), labels)
        out[split] = (images, labels)
    return out


@pytest.fixture
def fake_dir(tmp_path):
    arrays = make_fake_mnist(str(tmp_path))
    return str(tmp_path), arrays


def collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


# ------------------------------------------------------------------------------------ read_idx


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_read_idx_roundtrip(tmp_path, compress, code):
    array = (np.arange(24).reshape(2, 3, 4) - (5 if code != 0x08 else 0)).astype(np.float64)
    # The name says nothing: compression is detected from the content.
    path = write_idx(tmp_path / "file.idx", array, code, compress=compress)
    out = data.read_idx(path)
    assert out.shape == (2, 3, 4)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + b"\x00" * 40))
    with pytest.raises(ValueError, match=r"bad\.gz: not an IDX file \(magic number 08030000"):
        data.read_idx(path)
    plain = tmp_path / "unknown_type"
    plain.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(plain)


def test_read_idx_truncated_and_corrupt(tmp_path):
    raw = idx_bytes(np.zeros((4, 5), np.uint8))
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match=r"data size 17 bytes does not match the header \(shape \(4, 5\)"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "corrupt.gz").write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(ValueError, match="corrupt gzip"):
        data.read_idx(tmp_path / "corrupt.gz")
    with pytest.raises(FileNotFoundError):
        data.read_idx(tmp_path / "absent")


# ------------------------------------------------------------------------------------ Fashion-MNIST files


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_arrays(tmp_path, gz):
    arrays = make_fake_mnist(str(tmp_path), gz=gz)
    x_train, y_train, x_test, y_test = data.load_fashion_mnist_arrays(str(tmp_path))
    assert x_train.shape == (60, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (20, 28, 28)
    assert y_train.dtype == np.int64 and y_test.shape == (20,)
    np.testing.assert_array_equal(x_train, arrays["train"][0])
    np.testing.assert_array_equal(y_test, arrays["t10k"][1])


def test_missing_files_message(tmp_path):
    make_fake_mnist(str(tmp_path))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_fashion_mnist_arrays(str(tmp_path))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "missing t10k-labels-idx1-ubyte[.gz]" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path / "nowhere"))


def test_mismatched_files(tmp_path):
    make_fake_mnist(str(tmp_path))
    write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), np.zeros(59, np.uint8))
    with pytest.raises(ValueError, match=r"train files .* do not match: images \(60, 28, 28\), labels \(59,\)"):
        data.load_fashion_mnist_arrays(str(tmp_path))
    write_idx(str(tmp_path / "train-labels-idx1-ubyte.gz"), np.full(60, 12, np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: labels outside 0-9 \(min 12"):
        data.load_fashion_mnist_arrays(str(tmp_path))


# The IDX element types (the third byte of the magic number), as the pipelines must read them:
# integers are pixel values 0-255, floats intensities in [0, 1] (issue 29, case 5: float images
# were cast to uint8, 99.2% of the pixels 0, and the search trained on blank images).
def _replace_images(directory, split, images, code):
    write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"), images, code)


@pytest.mark.parametrize("code", [0x09, 0x0B, 0x0C])
def test_integer_idx_images_are_pixel_values(tmp_path, code):
    arrays = make_fake_mnist(str(tmp_path))
    images = np.random.default_rng(3).integers(0, 128 if code == 0x09 else 256, (20, 28, 28))
    _replace_images(str(tmp_path), "t10k", images, code)
    x_test = data.load_fashion_mnist_arrays(str(tmp_path))[2]
    assert x_test.dtype == np.uint8
    np.testing.assert_array_equal(x_test, images)
    splits = data.load_dataset(data_dir=str(tmp_path), image_size=None, channels=None,
                               normalize="unit", batch_size=32)
    np.testing.assert_allclose(collect(splits.test)[0][..., 0], images / 255.0, atol=1e-6)
    _replace_images(str(tmp_path), "t10k", images - 1, code)  # -1 where a pixel was 0
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: integer pixel values -1\.\."):
        data.load_fashion_mnist_arrays(str(tmp_path))
    assert arrays  # (the labels stay the fake ones)


@pytest.mark.parametrize("code", [0x0D, 0x0E])
def test_float_idx_images_in_unit_range_are_not_divided_again(tmp_path, code):
    make_fake_mnist(str(tmp_path))
    rng = np.random.default_rng(4)
    train = rng.uniform(0, 1, (60, 28, 28))
    test = rng.uniform(0, 1, (20, 28, 28))
    _replace_images(str(tmp_path), "train", train, code)
    _replace_images(str(tmp_path), "t10k", test, code)
    x_train, _, x_test, _ = data.load_fashion_mnist_arrays(str(tmp_path))
    assert x_train.dtype == x_test.dtype == np.float32
    np.testing.assert_allclose(x_test, test, rtol=1e-6)
    # Native size: the batches are the intensities themselves (standardised by their own
    # statistics, computed here independently in float64).
    splits = data.load_dataset(data_dir=str(tmp_path), image_size=None, channels=None,
                               batch_size=16)
    assert splits.mean[0] == pytest.approx(train.mean(), abs=1e-6)
    assert splits.std[0] == pytest.approx(train.std(), abs=1e-6)
    x, _ = collect(splits.test)
    np.testing.assert_allclose(x[..., 0], (test - train.mean()) / train.std(), atol=1e-4)
    # Resized: tf.image.resize of the [0, 1] floats, not of bytes.
    resized = data.load_dataset(data_dir=str(tmp_path), image_size=(16, 20), channels=1,
                                normalize="unit", batch_size=8)
    reference = tf.image.resize(test[..., None].astype(np.float32), (16, 20), antialias=True)
    np.testing.assert_allclose(collect(resized.test)[0], reference.numpy(), atol=1e-6)
    assert 0.4 < collect(resized.test)[0].mean() < 0.6  # not blank, not divided by 255


@pytest.mark.parametrize("values, match", [
    (255.0, r"float pixel values 0\.\.255 outside \[0, 1\]; .*divide 0-255 values by 255"),
    (-0.5, r"float pixel values -0\.5\.\.0 outside \[0, 1\]"),
    (np.nan, r"1 pixel values are NaN or infinite"),
])
def test_float_idx_images_outside_unit_range_are_refused(tmp_path, values, match):
    make_fake_mnist(str(tmp_path))
    images = np.zeros((20, 28, 28))
    images[3, 4, 5] = values
    _replace_images(str(tmp_path), "t10k", images, 0x0D)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: " + match):
        data.load_fashion_mnist_arrays(str(tmp_path))


def test_float_idx_labels_must_be_whole_classes(tmp_path):
    arrays = make_fake_mnist(str(tmp_path))
    labels = arrays["t10k"][1].astype(np.float64)
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), labels, 0x0D)
    np.testing.assert_array_equal(data.load_fashion_mnist_arrays(str(tmp_path))[3], labels)
    labels[2] = 2.5
    write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), labels, 0x0D)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: labels must be integers "
                                         r"0-9; found non-integer values \(e\.g\. 2\.5\)"):
        data.load_fashion_mnist_arrays(str(tmp_path))


@pytest.mark.skipif(not HAVE_REAL, reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    x_train, y_train, x_test, y_test = data.load_fashion_mnist_arrays()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.uint8
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    # The dataset is balanced: 6,000 / 1,000 per class.
    assert np.all(np.bincount(y_train) == 6000) and np.all(np.bincount(y_test) == 1000)
    splits = data.load_dataset(train_size=256, batch_size=64)
    assert splits.sizes == {"train": 256, "val": 28, "test": 10000}
    assert splits.class_names[0] == "T-shirt/top" and splits.num_classes == 10
    assert splits.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert splits.std[0] == pytest.approx(0.3530, abs=1e-4)
    x, y = next(iter(splits.train))
    assert x.shape == (64, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert splits.test.cardinality() == 157


# ------------------------------------------------------------------------------------ splits


def test_split_indices():
    train, val = data.split_indices(100, validation_split=0.1, seed=3)
    assert len(train) == 90 and len(val) == 10
    assert not set(train) & set(val) and set(train) | set(val) == set(range(100))
    # Same seed, same split; another seed, another split.
    np.testing.assert_array_equal(val, data.split_indices(100, validation_split=0.1, seed=3)[1])
    assert set(val) != set(data.split_indices(100, validation_split=0.1, seed=4)[1])
    # A subset keeps the val:train ratio; a larger subset only adds training images.
    small, val_small = data.split_indices(100, validation_split=0.2, train_size=20, seed=3)
    assert len(small) == 20 and len(val_small) == 5
    big, val_big = data.split_indices(100, validation_split=5, train_size=40, seed=3)
    np.testing.assert_array_equal(val_big, val_small)
    assert set(small) <= set(big) and not set(big) & set(val_big)
    assert len(data.split_indices(100, validation_split=0, seed=0)[1]) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(validation_split=1.5), r"`validation_split \(a number of images >= 1, or a fraction\)` must be a number in \[0, 1\); got 1\.5"),
        (dict(validation_split=-0.1), r"`validation_split \(a number of images >= 1, or a fraction\)` must be a number in \[0, 1\); got -0\.1"),
        (dict(validation_split="10%"), r"`validation_split \(a number of images >= 1, or a fraction\)` must be a number in \[0, 1\); got '10%'"),
        (dict(train_size=0), "`train_size` must be an integer >= 1 or None; got 0"),
        (dict(train_size=95, validation_split=10), "cannot take 10 for validation and 95 for training"),
    ],
)
def test_split_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.split_indices(100, **kwargs)


# ------------------------------------------------------------------------------------ pipelines


def test_pipeline_shapes_and_values(fake_dir):
    directory, arrays = fake_dir
    splits = data.load_dataset(
        data_dir=directory, image_size=32, channels=3, validation_split=10, train_size=30,
        batch_size=8, normalize="unit",
    )
    assert splits.sizes == {"train": 30, "val": 10, "test": 20}
    assert splits.input_shape == (32, 32, 3) and splits.num_classes == 10
    assert splits.steps_per_epoch == {"train": 4, "val": 2, "test": 3} and splits.batch_size == 8
    assert splits.mean is None and splits.std is None
    assert int(splits.train.cardinality()) == 4 and int(splits.val.cardinality()) == 2
    x, y = collect(splits.test)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    images, labels = arrays["t10k"]
    np.testing.assert_array_equal(y, labels)  # test order kept
    # Constant images stay constant through the resize; channels repeat the gray value.
    expected = images[:, 0, 0].astype(np.float32) / 255.0
    np.testing.assert_allclose(x, np.broadcast_to(expected[:, None, None, None], x.shape), atol=1e-6)


def test_standardize_native_size_single_channel(fake_dir):
    directory, arrays = fake_dir
    splits = data.load_dataset(data_dir=directory, image_size=None, channels=None, batch_size=16)
    assert splits.input_shape == (28, 28, 1)
    pixels = arrays["train"][0].astype(np.float64) / 255.0
    assert splits.mean[0] == pytest.approx(pixels.mean()) and splits.std[0] == pytest.approx(pixels.std())
    x, y = collect(splits.test)
    assert x.shape == (20, 28, 28, 1)
    expected = (arrays["t10k"][0][..., None] / 255.0 - pixels.mean()) / pixels.std()
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_resize_real_content(tmp_path):
    """A non-constant image is resized with tf.image.resize (bilinear) and rounded to uint8."""
    make_fake_mnist(str(tmp_path))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 28, 28)).astype(np.uint8)
    write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    splits = data.load_dataset(data_dir=str(tmp_path), image_size=(16, 20), channels=1,
                               normalize="unit", batch_size=32)
    x, _ = collect(splits.test)
    reference = tf.image.resize(images[..., None].astype(np.float32), (16, 20), antialias=True)
    reference = np.clip(np.round(reference.numpy()), 0, 255) / 255.0
    assert x.shape == (20, 16, 20, 1)
    np.testing.assert_allclose(x, reference, atol=1e-6)


def test_val_disjoint_seeded_and_train_shuffled(fake_dir):
    directory, arrays = fake_dir
    kw = dict(data_dir=directory, validation_split=0.25, batch_size=8, normalize="unit",
              image_size=28, channels=1)
    a = data.load_dataset(seed=1, **kw)
    b = data.load_dataset(seed=1, **kw)
    c = data.load_dataset(seed=2, **kw)
    assert a.sizes == {"train": 45, "val": 15, "test": 20}
    train_x, train_y = collect(a.train)
    val_x, val_y = collect(a.val)
    np.testing.assert_array_equal(val_x, collect(b.val)[0])
    assert not np.array_equal(val_x, collect(c.val)[0])
    # Train and val together are exactly the training split (as a multiset of images).
    everything = np.sort(np.concatenate([train_x[:, 0, 0, 0], val_x[:, 0, 0, 0]]))
    np.testing.assert_allclose(everything, np.sort(arrays["train"][0][:, 0, 0] / 255.0), atol=1e-6)
    # Reshuffled every epoch, deterministically for a seed; val/test never shuffled.
    epoch2_y = collect(a.train)[1]
    assert sorted(train_y) == sorted(epoch2_y) and not np.array_equal(train_y, epoch2_y)
    np.testing.assert_array_equal(train_y, collect(b.train)[1])
    np.testing.assert_array_equal(val_y, collect(a.val)[1])
    no_shuffle = data.load_dataset(seed=1, shuffle=False, **kw)
    np.testing.assert_array_equal(collect(no_shuffle.train)[1], collect(no_shuffle.train)[1])
    assert data.load_dataset(**{**kw, "validation_split": 0}).val is None


def test_train_with_seed_orders_the_same_images_by_its_seed(fake_dir):
    directory, _ = fake_dir
    splits = data.load_dataset(data_dir=directory, validation_split=10, batch_size=8, seed=3,
                               augment=True, image_size=None, channels=None)
    x5, y5 = collect(splits.train_with_seed(5))
    x5b, y5b = collect(splits.train_with_seed(5))
    x6, y6 = collect(splits.train_with_seed(6))
    # One seed: the same batches (order and augmentation), whichever pipeline object.
    np.testing.assert_array_equal(x5, x5b)
    np.testing.assert_array_equal(y5, y5b)
    # Another seed: the same images (the split is load_dataset's), in another order.
    assert sorted(y5) == sorted(y6) and not np.array_equal(y5, y6)
    assert x5.shape == (50, 28, 28, 1)
    # The split's own seed gives the default pipeline's order.
    np.testing.assert_array_equal(collect(splits.train_with_seed(3))[1], collect(splits.train)[1])


def test_augment_train_only(tmp_path):
    make_fake_mnist(str(tmp_path), n_train=40)
    rng = np.random.default_rng(2)
    train_images = rng.integers(1, 256, (40, 28, 28)).astype(np.uint8)
    write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), train_images)
    kw = dict(data_dir=str(tmp_path), validation_split=8, batch_size=32, normalize="unit",
              image_size=32, channels=1, shuffle=False, seed=5)
    plain = data.load_dataset(augment=False, **kw)
    aug = data.load_dataset(augment=True, **kw)
    px, py = collect(plain.train)
    ax, ay = collect(aug.train)
    np.testing.assert_array_equal(py, ay)
    assert not np.allclose(px, ax)
    # Every augmented image is its original padded by 4 (32 // 8), shifted and maybe flipped.
    pad = np.pad(px, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for original, augmented in zip(pad, ax):
        candidates = [
            view[dy:dy + 32, dx:dx + 32]
            for view in (original, original[:, ::-1])
            for dy in range(9) for dx in range(9)
        ]
        # (A flip of the padded image is a flip of the crop at the mirrored offset.)
        assert any(np.array_equal(c, augmented) for c in candidates)
    # Different every epoch, but reproducible for a seed.
    ax2 = collect(aug.train)[0]
    assert not np.array_equal(ax, ax2)
    np.testing.assert_array_equal(ax, collect(data.load_dataset(augment=True, **kw).train)[0])
    # Validation and test are untouched.
    np.testing.assert_array_equal(collect(plain.val)[0], collect(aug.val)[0])
    np.testing.assert_array_equal(collect(plain.test)[0], collect(aug.test)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=0), r"`image_size \(or a \(height, width\) pair, or None\)` must be an integer >= 1; got 0"),
        (dict(image_size=(32, 32, 3)), r"`image_size \(or an int, or None\)` must be a tuple of length 2 of positive integers; got \(32, 32, 3\)"),
        (dict(image_size=(32.0, 32.0)), r"`image_size \(or an int, or None\)` must be a tuple of length 2"),
        (dict(channels=2), "`channels` must be one of 1, 3, None; got 2"),
        (dict(batch_size=0), "`batch_size` must be an integer >= 1; got 0"),
        (dict(seed=-1), "`seed` must be an integer >= 0; got -1"),
        (dict(normalize="zscore"), "`normalize` must be one of 'standardize', 'unit'; got 'zscore'"),
        (dict(train_size=1000), "cannot take"),
    ],
)
def test_load_dataset_errors(fake_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset(data_dir=fake_dir[0], **kwargs)


# ------------------------------------------------------------------------------------ TFDS path


class FakeBuilder:
    """The few attributes of a tfds DatasetBuilder that load_dataset uses."""

    def __init__(self, n_train=50, n_test=12, size=(8, 8), channels=3, splits=("train", "test")):
        rng = np.random.default_rng(0)
        self.arrays = {}
        for split, n in (("train", n_train), ("test", n_test), ("validation", n_test)):
            x = rng.integers(0, 256, (n, *size, channels)).astype(np.uint8)
            y = np.arange(n) % 4
            self.arrays[split] = (x, y)
        self.prepared = False
        self.info = types.SimpleNamespace(
            supervised_keys=("image", "label"),
            features={
                "image": types.SimpleNamespace(shape=(*size, channels)),
                "label": types.SimpleNamespace(num_classes=4, names=["a", "b", "c", "d"]),
            },
            splits={s: types.SimpleNamespace(num_examples=len(self.arrays[s][0])) for s in splits},
        )

    def download_and_prepare(self):
        self.prepared = True

    def as_dataset(self, split, as_supervised, shuffle_files):
        assert as_supervised and not shuffle_files and self.prepared
        x, y = self.arrays[split]
        return tf.data.Dataset.from_tensor_slices((x, y))


def test_tfds_path_with_fake_builder(monkeypatch):
    builder = FakeBuilder()
    seen = {}

    def fake(name, data_dir):
        seen.update(name=name, data_dir=data_dir)
        return builder

    monkeypatch.setattr(data, "_tfds_builder", fake)
    splits = data.load_dataset("tfds:Fake_Set", data_dir="/somewhere", image_size=None, channels=1,
                               validation_split=10, train_size=30, batch_size=16, seed=4)
    assert seen == {"name": "fake_set", "data_dir": "/somewhere"}
    assert splits.sizes == {"train": 30, "val": 10, "test": 12}
    assert splits.input_shape == (8, 8, 1) and splits.num_classes == 4
    assert splits.class_names == ["a", "b", "c", "d"]
    x_all = builder.arrays["train"][0].astype(np.float64) / 255.0
    # Unknown dataset: statistics estimated from the training images (all 50 here).
    np.testing.assert_allclose(splits.mean, x_all.mean(axis=(0, 1, 2)), atol=1e-6)
    train_idx, val_idx = data.split_indices(50, validation_split=10, train_size=30, seed=4)
    vx, vy = collect(splits.val)
    np.testing.assert_array_equal(vy, builder.arrays["train"][1][val_idx])
    gray = (x_all[val_idx] - np.array(splits.mean)) / np.array(splits.std)
    gray = (gray * [0.2989, 0.5870, 0.1140]).sum(-1, keepdims=True)
    np.testing.assert_allclose(vx, gray, atol=1e-5)
    ty = collect(splits.train)[1]
    assert sorted(ty) == sorted(builder.arrays["train"][1][train_idx])
    assert int(splits.train.cardinality()) == 2


def test_tfds_validation_as_test_and_known_stats(monkeypatch):
    builder = FakeBuilder(splits=("train", "validation"))
    monkeypatch.setattr(data, "_tfds_builder", lambda name, data_dir: builder)
    splits = data.load_dataset("cifar10", image_size=16, validation_split=0.2, batch_size=64)
    assert splits.sizes == {"train": 40, "val": 10, "test": 12}
    assert splits.mean == data.KNOWN_STATS["cifar10"][0]
    assert collect(splits.test)[0].shape == (12, 16, 16, 3)

    builder = FakeBuilder(splits=("train",))
    monkeypatch.setattr(data, "_tfds_builder", lambda name, data_dir: builder)
    with pytest.raises(ValueError, match="neither a 'test' nor a 'validation' split"):
        data.load_dataset("cifar10")


def test_tfds_prepare_failure_is_clear(monkeypatch):
    builder = FakeBuilder()

    def offline():
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    builder.download_and_prepare = offline
    monkeypatch.setattr(data, "_tfds_builder", lambda name, data_dir: builder)
    with pytest.raises(data.DataNotFoundError, match=r"'cifar10' is not prepared .*\(ConnectionError.*--data-dir"):
        data.load_dataset("cifar10")


def test_unknown_tfds_name():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar_ten'\. Did you mean cifar10.*e\.g\. fashion_mnist, mnist, cifar10"):
        data.load_dataset("cifar_ten")


def test_unknown_tfds_name_hint_stays_offline(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    real = tfds.list_builders

    def local_only(*, with_community_datasets=True):
        # The community list is downloaded: a hint must never ask for it.
        assert with_community_datasets is False, "the dataset-name hint reached for the network"
        return real(with_community_datasets=False)

    monkeypatch.setattr(tfds, "list_builders", local_only)
    with pytest.raises(ValueError, match=r"Did you mean cifar10"):
        data.load_dataset("cifar_ten")


# ------------------------------------------------------------------------------------ pinned batches


def _random_mnist(directory):
    """Fake Fashion-MNIST files whose images are random (every pixel counts in a resize)."""
    make_fake_mnist(directory, n_train=60, n_test=20)
    rng = np.random.default_rng(11)
    for split, n in (("train", 60), ("t10k", 20)):
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"),
                  rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))


def _digest(ds):
    import hashlib

    h = hashlib.sha256()
    for x, y in ds:
        h.update(np.ascontiguousarray(x.numpy()).tobytes())
        h.update(np.ascontiguousarray(y.numpy()).tobytes())
    return h.hexdigest()[:16]


# The sha256 (first 16 hex digits) of every batch (images and labels, bytes) of each pipeline,
# recorded before the resize moved from the whole split in memory into the pipeline (batch by
# batch): the batches must stay bit-identical, with and without a resize, augmentation and
# shuffling (a resumed search must see the batches its first runs saw).
PINNED_BATCHES = {
    "native": (dict(image_size=None, channels=None, augment=True),
               ["fc0346b63e1fb004", "d482dddc288bf6f6", "82dbadcf53359832", "dba8bdd15d0e92b4",
                "2665d317811a6d54"]),
    "enlarge": (dict(image_size=32, channels=3, augment=True),
                ["673074435df2a0e9", "ddd837ad149856f0", "9994b7831b12cdf5", "5ad0225bb436ef00",
                 "19e784dca4178a65"]),
    "shrink": (dict(image_size=(16, 20), channels=1, normalize="unit"),
               ["e8187a8aceace5aa", "4cd3f04673bdc076", "b7172e1e623b36ed", "4c3e4bf7d1427097",
                "732060fab84953f4"]),
}


@pytest.mark.parametrize("case", sorted(PINNED_BATCHES))
def test_batches_are_pinned(tmp_path, case):
    _random_mnist(str(tmp_path))
    splits = data.load_dataset(data_dir=str(tmp_path), validation_split=10, train_size=30,
                               batch_size=8, seed=3, **PINNED_BATCHES[case][0])
    digests = [_digest(splits.train), _digest(splits.train), _digest(splits.train_with_seed(7)),
               _digest(splits.val), _digest(splits.test)]
    # Two epochs (reshuffled, re-augmented), another seed's order, validation, test.
    assert digests == PINNED_BATCHES[case][1]


def test_idx_images_are_resized_batch_by_batch(tmp_path, monkeypatch):
    """Issue 29, case 11: the whole test split was resized in memory whatever --train-size (4.6 GB
    at 256 px), and a large --image-size was OOM-killed. Every resize now sees one batch."""
    make_fake_mnist(str(tmp_path))
    seen = []
    real = data._resize_images

    def recording(images, size):
        seen.append(images.shape[0])
        return real(images, size)

    monkeypatch.setattr(data, "_resize_images", recording)
    splits = data.load_dataset(data_dir=str(tmp_path), image_size=64, validation_split=10,
                               batch_size=8)
    assert collect(splits.test)[0].shape == (20, 64, 64, 3)
    assert collect(splits.train)[0].shape == (50, 64, 64, 3)
    # Called only inside the pipelines' batch map (traced once per pipeline, on a batch of
    # unknown size), never on a whole split up front.
    assert seen == [None, None, None], seen


# The same for a TFDS source (tests' FakeBuilder, 8x8 RGB): enlarged (cached at 8x8, resized
# batch by batch) and shrunk (resized one by one before the cache), digests recorded before.
PINNED_TFDS_BATCHES = {
    "enlarge": (dict(image_size=20, channels=3, augment=True),
                ["64848acc083c3ded", "307b3fa23267cc11", "c0436366270a28c2", "3cfdeb50cd067e04",
                 "f3a012ce6a9c35c7"]),
    "shrink": (dict(image_size=(4, 6), channels=1, normalize="unit"),
               ["e4c700d116693883", "5a71b6083cdb5801", "465945bb3bf3578e", "ab06550f363f55ae",
                "4a488d6df7b96333"]),
}


@pytest.mark.parametrize("case", sorted(PINNED_TFDS_BATCHES))
def test_tfds_batches_are_pinned(monkeypatch, case):
    builder = FakeBuilder()
    monkeypatch.setattr(data, "_tfds_builder", lambda name, data_dir: builder)
    splits = data.load_dataset("fake_set", validation_split=10, train_size=30, batch_size=8,
                               seed=3, **PINNED_TFDS_BATCHES[case][0])
    digests = [_digest(splits.train), _digest(splits.train), _digest(splits.train_with_seed(7)),
               _digest(splits.val), _digest(splits.test)]
    assert digests == PINNED_TFDS_BATCHES[case][1]


@pytest.mark.parametrize("image_size, per_image", [(20, []), ((4, 6), [(4, 6)])])
def test_tfds_cache_holds_the_smaller_images(monkeypatch, image_size, per_image):
    """Fixed-size TFDS images are cached as they are when enlarged (resized batch by batch after
    the cache), and resized one by one before it when shrunk."""
    monkeypatch.setattr(data, "_tfds_builder", lambda name, data_dir: FakeBuilder())
    calls = []
    real = data._resize_images

    def recording(images, size):
        calls.append((images.shape.rank, tuple(images.shape[-3:-1]), tuple(size)))
        return real(images, size)

    monkeypatch.setattr(data, "_resize_images", recording)
    splits = data.load_dataset("cifar10", image_size=image_size, validation_split=10,
                               batch_size=8)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    assert collect(splits.test)[0].shape[1:3] == size
    resized_one_by_one = {s for rank, shape, s in calls if rank == 3 and shape != s}
    resized_in_batches = {s for rank, shape, s in calls if rank == 4 and shape != s}
    assert resized_one_by_one == set(per_image)
    assert resized_in_batches == (set() if per_image else {size})


def test_pipeline_options_change_how_batches_come_not_what_they_hold(fake_dir, monkeypatch):
    # Issue 27's pipelines (no autotuner, a sequential map, two batches prefetched) give the
    # batches the autotuned ones gave, in the same order, augmentation included.
    directory, _ = fake_dir

    def batches(options):
        monkeypatch.setattr(data, "PIPELINE_OPTIONS", options)
        splits = data.load_dataset(data_dir=directory, image_size=8, train_size=40,
                                   validation_split=12, batch_size=8, augment=True)
        train = splits.train_with_seed(3)
        assert train.options().autotune.enabled is options.autotune
        # Two epochs: the reshuffle and the fresh augmentation of the second one too.
        return [b for _ in range(2) for part in (train, splits.val)
                for b in part.as_numpy_iterator()]

    assert data.PIPELINE_OPTIONS == data.PipelineOptions()
    assert not data.PIPELINE_OPTIONS.autotune and data.PIPELINE_OPTIONS.map_parallelism is None
    new, old = batches(data.PIPELINE_OPTIONS), batches(data.AUTOTUNED)
    assert len(new) == len(old) == 2 * (5 + 2)
    for (x1, y1), (x2, y2) in zip(new, old):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
