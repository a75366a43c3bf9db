"""tf.data input pipelines for the search: Fashion-MNIST from local IDX files, any TFDS dataset by name.

``load_dataset(name)`` returns a :class:`DataSplits` of batched ``(image float32, label int32)``
datasets for training, validation and test.

* ``"fashion_mnist"`` (the default) reads the four IDX files of the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) or of any directory passed as
  ``data_dir``; no network and no TFDS involved. (The Debian files are recompressed, so TFDS's checksum
  check rejects them as a manual download: they are parsed here with ``gzip`` + NumPy.) Use
  ``"tfds:fashion_mnist"`` to force the TFDS version.
* Any other name goes through TFDS (``tfds.builder(name, data_dir=data_dir)``, prepared once, then
  ``as_dataset(..., as_supervised=True)``): the ``"train"`` split for training and validation, the
  ``"test"`` split for testing, or ``"validation"`` where a dataset has no test split.

Pipeline, in order (the per-image work that cannot be batched comes first and is cached):

1. the validation set is carved out of the training split, then the training subset is drawn
   (both from one seeded permutation, so they are disjoint; see :func:`split_indices`);
2. TFDS sources, per image (their images may differ in size): resize to ``image_size``
   (``tf.image.resize``, bilinear, antialiased when shrinking) and round back to ``uint8``, so
   that the cache holds one byte per pixel; cached in memory. Fashion-MNIST arrays stay in memory
   at their native size;
3. training only: shuffle (seeded, reshuffled every epoch; the whole set when its images, at
   ``image_size``, fit in 256 MB);
4. per batch: Fashion-MNIST arrays: the resize of step 2 (the same per-image operation, so the
   same values, but only the batches in flight are held at ``image_size``); scale to [0, 1]
   (bytes divided by 255; float IDX images are already in [0, 1]); training only and if
   ``augment``: random crop with zero padding of ``image_size // 8`` pixels and random horizontal
   flip (the CIFAR recipe of the SA-Net, SimAM and DCANet papers), seeded per batch through
   ``tf.data.Dataset.random``; normalisation; channel conversion (1 -> 3 by repetition, 3 -> 1 by
   luminance);
5. ``prefetch(2)``, tf.data's autotuner off (:class:`PipelineOptions`,
   :data:`PIPELINE_OPTIONS`).

Normalisation (``normalize``): ``"standardize"`` (default) subtracts the per-channel mean and divides by
the per-channel standard deviation of the dataset's training split on the [0, 1] scale: computed exactly
from the arrays for Fashion-MNIST, the usual published constants for MNIST, CIFAR-10/100 and SVHN, and
estimated from the first 1,024 training images for any other TFDS dataset. ``"unit"`` keeps [0, 1]
(what to use with a backbone whose pretrained weights expect their own preprocessing: put it in the
model). The statistics are taken in the dataset's native channels, before the channel conversion.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import hashlib
import math
import numbers
import os

import numpy as np
import tensorflow as tf

from keras_attn.validation import check_choice, check_number, check_shape

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# Shown when an unknown dataset name is given; any TFDS image-classification dataset works.
KNOWN_DATASETS = (
    "fashion_mnist", "mnist", "cifar10", "cifar100", "svhn_cropped", "imagenette",
    "stl10", "oxford_flowers102", "food101", "imagenet2012",
)

# Per-channel (mean, std) on the [0, 1] scale of the full training split, as commonly published.
KNOWN_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn_cropped": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}

NORMALIZATIONS = ("standardize", "unit")
# Output channels: 1 and 3 are converted to each other; None keeps the dataset's own.
CHANNELS = (1, 3, None)

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_STATS_SAMPLE = 1024
_SHUFFLE_BYTES = 256 * 2**20


class DataNotFoundError(FileNotFoundError):
    """The data files (or a TFDS dataset) could not be found or prepared; the message says how to fix it."""


@dataclasses.dataclass
class DataSplits:
    """The three pipelines and what a model needs to know about them.

    Attributes:
        train: batched ``(image float32 (B, H, W, C), label int32 (B,))``, shuffled, maybe augmented.
        val: same for the validation set carved from the training split; ``None`` when
            ``validation_split == 0``.
        test: same for the test split.
        num_classes: number of classes.
        input_shape: ``(H, W, C)`` of the images.
        class_names: one name per class.
        sizes: number of images in ``{"train", "val", "test"}``.
        batch_size: the batch size of all three.
        name: the dataset name.
        mean, std: the per-channel normalisation constants used (native channels; ``None`` with
            ``normalize="unit"``).
    """

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    class_names: list
    sizes: dict
    batch_size: int
    name: str = ""
    mean: tuple | None = None
    std: tuple | None = None
    #: Images in the dataset's whole training split (what a final retraining on it sees).
    source_train_size: int | None = None
    # seed -> the training pipeline (same images) shuffled and augmented with that seed.
    _train_factory: object = dataclasses.field(default=None, repr=False, compare=False)

    def train_with_seed(self, seed):
        """The training pipeline over the same images, in the order (shuffling, augmentation)
        of ``seed``; the split itself stays the one ``load_dataset``'s seed drew. Two calls with
        one seed give the same batches: the data order of a repeat in the comparison protocol.

        Raises:
            ValueError: these splits were not made by :func:`load_dataset`.
        """
        if self._train_factory is None:
            raise ValueError("train_with_seed needs DataSplits made by load_dataset.")
        return self._train_factory(int(seed))

    @property
    def steps_per_epoch(self):
        """Batches per pass over each split, ``{"train", "val", "test"}`` (the last batch may be
        partial); ``steps_per_epoch["train"]`` is what a learning-rate schedule needs."""
        return {k: math.ceil(n / self.batch_size) for k, n in self.sizes.items()}


# --------------------------------------------------------------------------- IDX files


def read_idx(path):
    """Read an IDX file (the MNIST format), gzip-compressed or plain, into a NumPy array.

    Compression is detected from the content (gzip magic bytes), not from the file name.

    Args:
        path: the file.

    Returns:
        ``np.ndarray`` with the shape and dtype stored in the header (native byte order).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not an IDX file (bad magic number, unknown type code, size that does not match
            the header) or a corrupt gzip stream; the message names the file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err}).") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected "
            "00 00 <type code 08/09/0b/0c/0d/0e> <number of dimensions>)."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes for {ndim} dimensions).")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX data size {len(raw) - header} bytes does not match the header "
            f"(shape {shape}, {dtype.itemsize} byte(s) per value = {expected} bytes)."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


def _find_idx(directory, stem):
    for candidate in (stem + ".gz", stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def load_fashion_mnist_arrays(data_dir=None):
    """Read Fashion-MNIST from its four IDX files.

    Args:
        data_dir: directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each ``.gz`` or plain);
            default :data:`FASHION_MNIST_DIR` (the Debian package ``dataset-fashion-mnist``).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images ``uint8 (N, 28, 28)`` with values 0-255
        (IDX integer types), or ``float32 (N, 28, 28)`` with values in [0, 1] (IDX float types;
        see :func:`_pixels`), labels ``int64 (N,)`` (60,000 and 10,000 for the real dataset).

    Raises:
        DataNotFoundError: (a ``FileNotFoundError``) files missing; the message says how to get them.
        ValueError: a file is not a valid IDX file; images and labels do not match; pixel values
            outside 0-255 (integers) or [0, 1] (floats), or not finite; labels that are not
            integers in 0-9. The message names the file.
    """
    directory = os.fspath(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    paths, missing = {}, []
    for key, stem in FASHION_MNIST_FILES.items():
        path = _find_idx(directory, stem)
        if path is None:
            missing.append(stem + "[.gz]")
        paths[key] = path
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST not found in {directory}: missing {', '.join(missing)}. "
            "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files go to "
            f"{FASHION_MNIST_DIR}), or download the four files from "
            "https://github.com/zalandoresearch/fashion-mnist and pass their directory with "
            "--data-dir (data_dir=...)."
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"Fashion-MNIST {split} files in {directory} do not match: images {x.shape}, "
                f"labels {y.shape} (expected (N, 28, 28) and (N,))."
            )
        arrays["x_" + split] = _pixels(x, paths["x_" + split])
        arrays["y_" + split] = _labels(y, paths["y_" + split], len(FASHION_MNIST_CLASSES))
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def _pixels(x, path):
    """The images of an IDX file as the pipelines take them: ``uint8`` on the 0-255 scale, or
    ``float32`` on the [0, 1] scale; any other values raise a ValueError naming ``path``.

    Integer types (08, 09, 0B, 0C) hold pixel values 0-255: kept exactly as ``uint8``. Float
    types (0D, 0E) hold intensities in [0, 1]: kept as ``float32`` (0E's float64 rounded to
    float32), so that they are neither truncated to bytes nor divided by 255 again. Float
    values outside [0, 1] (e.g. 0-255 stored as floats) are refused rather than guessed at.
    """
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer):
        low, high = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(
                f"{path}: integer pixel values {low}..{high} outside 0..255; store 8-bit "
                "images (IDX type 08), or floats in [0, 1] (type 0D)."
            )
        return x.astype(np.uint8)
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{path}: {int(np.size(x) - np.isfinite(x).sum())} pixel values are "
                         "NaN or infinite; images must be finite.")
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{path}: float pixel values {low:g}..{high:g} outside [0, 1]; float images must be "
            "intensities in [0, 1] (divide 0-255 values by 255, or store them as bytes, IDX "
            "type 08)."
        )
    return x.astype(np.float32, copy=False)


def _labels(y, path, num_classes):
    """The labels of an IDX file as ``int64``; a ValueError naming ``path`` for values that are
    not the integers ``0 .. num_classes - 1`` (e.g. 2.5 in a float label file)."""
    if not y.size:
        return y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer) and not (np.isfinite(y).all()
                                                      and (y == np.round(y)).all()):
        raise ValueError(f"{path}: labels must be integers 0-{num_classes - 1}; found "
                         f"non-integer values (e.g. {y[y != np.round(y)][:1].tolist()[0]!r}).")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{path}: labels outside 0-{num_classes - 1} (min {y.min():g}, "
                         f"max {y.max():g}).")
    return y.astype(np.int64)


# --------------------------------------------------------------------------- splits


def split_indices(num_examples, *, validation_split=0.1, train_size=None, seed=0):
    """Seeded, disjoint training and validation indices into a training split of ``num_examples``.

    One permutation of ``range(num_examples)`` (``np.random.default_rng(seed)``): its first ``n_val``
    entries are the validation set, the next ``n_train`` the training set. So the validation set is
    carved *before* subsetting, and a larger ``train_size`` only adds training images.

    ``validation_split``: a float in [0, 1) is a fraction; an int >= 1 an absolute number of images.
    A fraction applies to the pool drawn: the whole split when ``train_size`` is None
    (``n_val = round(f * N)``, ``n_train = N - n_val``), else ``n_val = round(f * train_size / (1 - f))``
    so that validation and training keep the ratio ``f : 1 - f``.

    Returns:
        ``(train_idx, val_idx)``: sorted ``int64`` arrays.

    Raises:
        ValueError: bad ``validation_split`` or ``train_size``, or more images asked for than exist.
    """
    n = int(num_examples)
    train_size = check_number("train_size", train_size, minimum=1, integer=True, allow_none=True)
    if _is_int(validation_split) and validation_split >= 1:
        n_val = int(validation_split)
    else:
        f = check_number("validation_split (a number of images >= 1, or a fraction)",
                         validation_split, minimum=0, maximum=1, strict_max=True)
        n_val = round(f * n) if train_size is None else round(f * train_size / (1.0 - f))
    n_train = n - n_val if train_size is None else train_size
    if n_train < 1 or n_val + n_train > n:
        raise ValueError(
            f"The training split has {n} images: cannot take {n_val} for validation and "
            f"{n_train} for training (train_size={train_size!r}, "
            f"validation_split={validation_split!r})."
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:n_val + n_train]), np.sort(perm[:n_val])


# --------------------------------------------------------------------------- pipelines


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _size_tuple(image_size):
    """``image_size`` as ``(height, width)`` (an int is a square), or None."""
    if image_size is None:
        return None
    if _is_int(image_size):
        side = check_number("image_size (or a (height, width) pair, or None)", image_size,
                            minimum=1, integer=True)
        return side, side
    return check_shape("image_size (or an int, or None)", image_size, rank=2,
                       allow_none_dims=False)


def _resize_images(image, size):
    """Resize one or many images to ``size``, keeping their dtype: ``uint8`` rounded back to
    bytes (what a cache stores), ``float32`` (values in [0, 1]) kept in [0, 1]. Each image is
    resized on its own, so a batch gives the images that one at a time would."""
    if size is None or tuple(image.shape[-3:-1]) == tuple(size):
        return image
    # Antialiasing only matters when shrinking, and costs ~7x when enlarging (28 -> 32).
    h, w = image.shape[-3], image.shape[-2]
    shrink = h is None or w is None or h > size[0] or w > size[1]
    resized = tf.image.resize(image, size, method="bilinear", antialias=shrink)
    if image.dtype == tf.uint8:
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    return tf.clip_by_value(resized, 0.0, 1.0)


def _make_batch_fn(*, train, augment, size, mean, std, in_channels, out_channels, resize=False):
    pad = max(1, size[0] // 8), max(1, size[1] // 8)
    mean_t = None if mean is None else tf.constant(mean, tf.float32)
    inv_std_t = None if std is None else tf.constant([1.0 / s for s in std], tf.float32)
    gray = tf.constant([0.2989, 0.5870, 0.1140], tf.float32)

    def augment_batch(images, seed):
        # Per-image random crop of a zero-padded batch, vectorised as two batched gathers.
        b = tf.shape(images)[0]
        h, w = size
        padded = tf.pad(images, [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]])
        dy = tf.random.stateless_uniform([b], seed, 0, 2 * pad[0] + 1, dtype=tf.int32)
        dx = tf.random.stateless_uniform([b], seed + [0, 1], 0, 2 * pad[1] + 1, dtype=tf.int32)
        flip = tf.random.stateless_uniform([b], seed + [0, 2]) < 0.5
        rows = dy[:, None] + tf.range(h)[None, :]
        cols = dx[:, None] + tf.range(w)[None, :]
        cols = tf.where(flip[:, None], tf.reverse(cols, axis=[1]), cols)
        out = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(out, cols, axis=2, batch_dims=1)

    def batch_fn(images, labels, seed=None):
        if resize:
            # Batch by batch: only the batches in flight are ever held at the new size.
            images = _resize_images(images, size)
        # Bytes are 0-255, float images (IDX float types) already on the [0, 1] scale.
        x = tf.cast(images, tf.float32)
        if images.dtype == tf.uint8:
            x = x * (1.0 / 255.0)
        if train and augment:
            x = augment_batch(x, seed)
        if mean_t is not None:
            x = (x - mean_t) * inv_std_t
        if out_channels != in_channels:
            if in_channels == 1:
                x = tf.repeat(x, out_channels, axis=-1)
            else:
                x = tf.reduce_sum(x * gray, axis=-1, keepdims=True)
        return x, tf.cast(labels, tf.int32)

    return batch_fn


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How the pipelines hand their batches to the training loop (never what the batches hold).

    Attributes:
        map_parallelism: batches the per-batch map (scaling, augmentation, normalisation) works
            on at once: None (default) one, in the iterator's own thread; ``tf.data.AUTOTUNE``
            lets tf.data's autotuner choose.
        prefetch: batches made ahead of the training step (default 2); ``tf.data.AUTOTUNE``: the
            autotuner chooses.
        autotune: tf.data's autotuning (``tf.data.Options().autotune.enabled``; default False).

    The default is issue 27's: the per-batch work of these pipelines is microseconds against a
    training step's tenths of a second, and with the autotuner on, a search run on the 2-core CPU
    sat idle for seconds where Keras drops an iterator (an epoch's start, ``evaluate``'s return;
    ``benchmarks/run_breakdown.py``, benchmarks/README.md). :data:`AUTOTUNED` is the earlier
    setting.
    """

    map_parallelism: int | None = None
    prefetch: int = 2
    autotune: bool = False

    def apply(self, ds):
        """``ds`` with these options: its last stage prefetches, and the autotuner is set."""
        options = tf.data.Options()
        options.autotune.enabled = self.autotune
        return ds.prefetch(self.prefetch).with_options(options)


# Every pipeline load_dataset makes: issue 27's (see PipelineOptions); AUTOTUNED, tf.data's
# autotuner choosing the map's parallelism and the prefetch depth, was the setting before it.
PIPELINE_OPTIONS = PipelineOptions()
AUTOTUNED = PipelineOptions(map_parallelism=tf.data.AUTOTUNE, prefetch=tf.data.AUTOTUNE,
                            autotune=True)


def _finish(ds, *, train, shuffle, n, batch_size, seed, batch_fn, cache, size):
    # Known cardinality (lost by the TFDS index filter) gives Keras its progress bar totals and
    # lets the hypermodel derive steps per epoch from the dataset.
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if train and shuffle:
        # A full shuffle when it fits in ~256 MB of uint8 images, else as many as fit; counted
        # at the output size (``size``) whether the images are resized before or after the
        # shuffle, so that one seed gives one order either way.
        image_bytes = max(1, int(np.prod([*size, *ds.element_spec[0].shape.as_list()[2:]])))
        buffer = min(n, max(1024, _SHUFFLE_BYTES // image_bytes))
        ds = ds.shuffle(max(1, buffer), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    parallel = PIPELINE_OPTIONS.map_parallelism
    # In order whatever the parallelism (a sequential map is; tf.data warns if told so).
    order = True if parallel is not None else None
    if train:
        # One random int64 per batch, different every epoch but fixed by `seed`: stateless
        # augmentation stays reproducible without a stateful RNG inside the map function.
        randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, randoms).map(
            lambda batch, r: batch_fn(
                batch[0], batch[1], tf.stack([r, tf.constant(seed, tf.int64)])
            ),
            num_parallel_calls=parallel,
            deterministic=order,
        )
    else:
        ds = ds.map(batch_fn, num_parallel_calls=parallel, deterministic=order)
    return PIPELINE_OPTIONS.apply(ds)


@dataclasses.dataclass(frozen=True)
class _LoadOptions:
    """The arguments of :func:`load_dataset` that every loader takes, checked once there
    (``train_size`` and ``validation_split`` by :func:`split_indices`); ``size`` is
    ``(height, width)`` or None (native)."""

    size: tuple | None
    channels: int | None
    train_size: int | None
    validation_split: float | int
    batch_size: int
    seed: int
    augment: bool
    cache: bool | str
    shuffle: bool
    normalize: str


def load_dataset(
    name="fashion_mnist",
    *,
    data_dir=None,
    image_size=32,
    channels=3,
    train_size=None,
    validation_split=0.1,
    batch_size=128,
    seed=0,
    augment=False,
    cache=True,
    shuffle=True,
    normalize="standardize",
):
    """Build the training, validation and test pipelines of a dataset.

    Args:
        name: ``"fashion_mnist"`` (default; local IDX files, see :func:`load_fashion_mnist_arrays`),
            ``"tfds:<name>"`` or any other TFDS dataset name (``"cifar10"``, ``"imagenette"``, ...).
        data_dir: for ``"fashion_mnist"`` the directory of the four IDX files (default
            :data:`FASHION_MNIST_DIR`); for TFDS names the TFDS ``data_dir`` (default TFDS's own,
            ``~/tensorflow_datasets``).
        image_size: output height and width: an int (square, default 32), ``(height, width)``, or
            ``None`` for the native size (which must then be fixed).
        channels: output channels, 3 (default; grayscale repeated), 1 (colour to luminance) or
            ``None`` for the native number.
        train_size: number of training images (after the validation carve-out); ``None`` = all the
            rest. A seeded subset (see :func:`split_indices`).
        validation_split: fraction (default 0.1) or number of images held out of the training split
            for validation; 0 gives ``val=None``.
        batch_size: batch size of all three pipelines (default 128).
        seed: seed of the split, the shuffling and the augmentation, an integer >= 0 (default 0).
        augment: random crop (zero padding ``image_size // 8``) + horizontal flip on training
            batches only (default False).
        cache: cache decoded, resized ``uint8`` images of TFDS sources in memory (True, default), in
            files with this path prefix (a str), or not at all (False). Fashion-MNIST arrays are in
            memory anyway.
        shuffle: shuffle the training set every epoch (default True). Validation and test are
            never shuffled.
        normalize: ``"standardize"`` (default) or ``"unit"``; see the module docstring.

    Returns:
        :class:`DataSplits`.

    Raises:
        ValueError: a bad argument; an unknown TFDS dataset name (the message lists known ones); a
            dataset without a supervised (image, label) pair or without a test/validation split.
        DataNotFoundError: (a ``FileNotFoundError``) Fashion-MNIST files missing, or a TFDS dataset
            that cannot be downloaded or prepared; the message says what to do.
    """
    options = _LoadOptions(
        size=_size_tuple(image_size),
        channels=check_choice("channels", channels, CHANNELS),
        train_size=train_size,
        validation_split=validation_split,
        batch_size=check_number("batch_size", batch_size, minimum=1, integer=True),
        seed=check_number("seed", seed, minimum=0, integer=True),
        augment=bool(augment),
        cache=cache,
        shuffle=bool(shuffle),
        normalize=check_choice("normalize", normalize, NORMALIZATIONS),
    )
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a dataset name; got {name!r}.")
    key = name.strip().lower()
    if key == "fashion_mnist":
        return _load_fashion_mnist(options, data_dir)
    if key.startswith("tfds:"):
        key = key[len("tfds:"):]
    return _load_tfds(key, options, data_dir)


def _build_splits(options, source, *, name, n_train_split, n_test, size, in_channels, stats,
                  num_classes, class_names):
    """The :class:`DataSplits` of one dataset: its seeded split, normalisation and pipelines.

    Args:
        options: the :class:`_LoadOptions`.
        source: ``source(part, indices) -> (dataset, cache)``: the unbatched ``(image (H, W, C),
            label)`` dataset of ``part`` (``"train"`` and ``"val"``: those ``indices`` of the
            training split; ``"test"``: ``indices`` is None), and the ``cache`` argument of
            :func:`_finish` for it. Images are ``uint8`` (0-255) or ``float32`` ([0, 1]); those
            not already at ``size`` (a fixed shape) are resized batch by batch.
        n_train_split, n_test: the number of images in the training and test splits.
        size: ``(height, width)`` of the images; in_channels: their (native) channels.
        stats: ``stats() -> (mean, std)``, the per-channel constants of ``"standardize"``.
        name, num_classes, class_names: what :class:`DataSplits` reports.
    """
    train_idx, val_idx = split_indices(n_train_split, validation_split=options.validation_split,
                                       train_size=options.train_size, seed=options.seed)
    mean, std = stats() if options.normalize == "standardize" else (None, None)
    out_channels = options.channels or in_channels
    indices = {"train": train_idx, "val": val_idx, "test": None}
    sizes = {"train": len(train_idx), "val": len(val_idx), "test": int(n_test)}

    def pipeline(part, order_seed=options.seed):
        train = part == "train"
        ds, cache = source(part, indices[part])
        batch_fn = _make_batch_fn(train=train, augment=options.augment, size=size, mean=mean,
                                  std=std, in_channels=in_channels, out_channels=out_channels,
                                  resize=tuple(ds.element_spec[0].shape[:2]) != tuple(size))
        return _finish(ds, train=train, shuffle=options.shuffle, n=sizes[part],
                       batch_size=options.batch_size, seed=order_seed, batch_fn=batch_fn,
                       cache=cache, size=size)

    return DataSplits(
        _train_factory=lambda order_seed: pipeline("train", order_seed),
        train=pipeline("train"),
        val=pipeline("val") if sizes["val"] else None,
        test=pipeline("test"),
        num_classes=num_classes,
        input_shape=(*size, out_channels),
        class_names=class_names,
        sizes=sizes,
        source_train_size=int(n_train_split),
        batch_size=options.batch_size,
        name=name,
        mean=mean,
        std=std,
    )


def _pixel_stats(images, chunk=4096):
    """Exact ``((mean,), (std,))`` of grey ``images`` on the [0, 1] scale: for ``uint8`` from the
    256-bin histogram, for ``float32`` (already [0, 1]) in float64 over chunks of images; no
    float64 copy of (for Fashion-MNIST) 47M pixels either way."""
    if images.dtype == np.uint8:
        counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
        levels = np.arange(256, dtype=np.float64) / 255.0
        m = float((counts * levels).sum() / counts.sum())
        return (m,), (float(np.sqrt((counts * (levels - m) ** 2).sum() / counts.sum())),)
    parts = range(0, len(images), chunk)
    m = sum(float(images[i:i + chunk].sum(dtype=np.float64)) for i in parts) / images.size
    square = sum(float(((images[i:i + chunk].astype(np.float64) - m) ** 2).sum()) for i in parts)
    return (m,), (float(np.sqrt(square / images.size)),)


def _load_fashion_mnist(options, data_dir):
    x_train, y_train, x_test, y_test = load_fashion_mnist_arrays(data_dir)
    size = options.size or tuple(x_train.shape[1:3])

    def source(part, indices):
        x, y = (x_test, y_test) if part == "test" else (x_train[indices], y_train[indices])
        # At the native size: the batches are resized as they are drawn (a whole split resized
        # in memory took 4.6 GB at 256 px, whatever --train-size).
        ds = tf.data.Dataset.from_tensor_slices((x[..., None], y.astype(np.int32)))
        return ds, False  # arrays are already in memory: a cache would only copy them

    return _build_splits(
        options, source, name="fashion_mnist", n_train_split=len(x_train), n_test=len(x_test),
        size=size, in_channels=1,
        # Over the full official training split, so the constants do not move with train_size.
        stats=lambda: _pixel_stats(x_train),
        num_classes=len(FASHION_MNIST_CLASSES), class_names=list(FASHION_MNIST_CLASSES),
    )


# --------------------------------------------------------------------------- TFDS


def _tfds_builder(name, data_dir):
    """``tfds.builder`` (a seam for tests: TFDS cannot download anything here)."""
    import tensorflow_datasets as tfds

    return tfds.builder(name, data_dir=data_dir)


def _unknown_name_error(name, err):
    try:
        import tensorflow_datasets as tfds

        # Registered builders only: the community list is fetched over the network.
        close = difflib.get_close_matches(
            name, tfds.list_builders(with_community_datasets=False), n=3
        )
    except Exception:  # pragma: no cover - listing is only a hint
        close = []
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(
        f"Unknown dataset {name!r}.{hint} Use 'fashion_mnist' (local files) or a TFDS name, e.g. "
        f"{', '.join(KNOWN_DATASETS)} (all: https://www.tensorflow.org/datasets/catalog). ({err})"
    )


def _prepared_builder(name, data_dir):
    """The TFDS builder of ``name``, downloaded and prepared; errors say what to do."""
    try:
        builder = _tfds_builder(name, data_dir)
    except Exception as err:  # DatasetNotFoundError and friends
        if type(err).__name__ in ("DatasetNotFoundError", "DatasetNotFound") or \
                "not found" in str(err).lower():
            raise _unknown_name_error(name, err) from None
        raise
    try:
        builder.download_and_prepare()
    except Exception as err:
        where = data_dir or "TFDS's default data_dir (~/tensorflow_datasets)"
        raise DataNotFoundError(
            f"TFDS dataset {name!r} is not prepared in {where} and could not be downloaded or "
            f"prepared ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Run once with network access, or pass --data-dir (data_dir=...) pointing to a TFDS "
            "data directory where it is prepared; for Fashion-MNIST offline use the name "
            "'fashion_mnist' (local IDX files)."
        ) from None
    return builder


def _tfds_layout(name, info, channels, size):
    """What the pipelines need from a TFDS dataset's ``info``: ``{"size", "native" (its images'
    ``(height, width)``, None where they vary), "in_channels", "num_classes", "class_names",
    "test_split"}``; a ValueError where it is not an image classification dataset the pipelines
    can read."""
    if not info.supervised_keys:
        raise ValueError(f"TFDS dataset {name!r} has no supervised (image, label) keys.")
    image_key, label_key = info.supervised_keys[:2]
    image_feature, label_feature = info.features[image_key], info.features[label_key]
    native = tuple(image_feature.shape)
    if len(native) != 3:
        raise ValueError(f"TFDS dataset {name!r}: images of shape {native} are not (H, W, C).")
    in_channels = native[-1]
    if channels is not None and channels != in_channels and in_channels not in (1, 3):
        raise ValueError(
            f"TFDS dataset {name!r} has {in_channels}-channel images: cannot convert them to "
            f"{channels}; pass channels=None."
        )
    if size is None:
        if None in native[:2]:
            raise ValueError(
                f"TFDS dataset {name!r} has images of varying size {native}: pass image_size."
            )
        size = tuple(native[:2])
    num_classes = int(label_feature.num_classes)
    splits = info.splits
    if "train" not in splits:
        raise ValueError(f"TFDS dataset {name!r} has no 'train' split (splits: {list(splits)}).")
    test_split = "test" if "test" in splits else "validation" if "validation" in splits else None
    if test_split is None:
        raise ValueError(
            f"TFDS dataset {name!r} has neither a 'test' nor a 'validation' split "
            f"(splits: {list(splits)})."
        )
    return {
        "size": size,
        "native": tuple(native[:2]),
        "in_channels": in_channels,
        "num_classes": num_classes,
        "class_names": list(getattr(label_feature, "names", None) or map(str, range(num_classes))),
        "test_split": test_split,
    }


def _load_tfds(name, options, data_dir):
    builder = _prepared_builder(name, data_dir)
    layout = _tfds_layout(name, builder.info, options.channels, options.size)
    size, in_channels, test_split = layout["size"], layout["in_channels"], layout["test_split"]
    n_train_split = builder.info.splits["train"].num_examples
    native = layout["native"]
    # The cache holds the smaller of the native and the resized images: images of one fixed size
    # that are enlarged are cached as they are and resized batch by batch after the cache (as the
    # IDX arrays are); images that vary in size or are shrunk are resized one by one before it.
    stored = native if None not in native and native[0] * native[1] <= size[0] * size[1] \
        else size

    def decoded(split, indices=None, to=stored):
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        if indices is not None:
            mask = np.zeros(n_train_split, bool)
            mask[indices] = True
            mask = tf.constant(mask)
            ds = ds.enumerate().filter(lambda i, ex: tf.gather(mask, i)).map(lambda i, ex: ex)
        return ds.map(
            lambda x, y: (_resize_images(tf.cast(x, tf.uint8), to), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def source(part, indices):
        split = test_split if part == "test" else "train"
        # In-memory caches are per pipeline: another seed's training pipeline decodes the images
        # again (a file cache, cache="prefix", is shared).
        cache = options.cache
        if isinstance(cache, str):
            # The file cache must not be reused by a run with another split, subset or size (of
            # the images it holds).
            key = hashlib.sha1(repr((name, split, stored, data_dir)).encode())
            if indices is not None:
                key.update(np.ascontiguousarray(indices).tobytes())
            suffix = test_split if part == "test" else part
            cache = f"{cache}_{name}_{suffix}_{key.hexdigest()[:12]}"
        return decoded(split, indices), cache

    def stats():
        if name in KNOWN_STATS and len(KNOWN_STATS[name][0]) == in_channels:
            return KNOWN_STATS[name]
        # Estimated on a sample: a full pass over a large dataset would cost more than a trial.
        sample = np.stack(
            [x for x, _ in decoded("train", to=size).take(_STATS_SAMPLE).as_numpy_iterator()]
        ).astype(np.float64) / 255.0
        return (tuple(float(m) for m in sample.mean(axis=(0, 1, 2))),
                tuple(max(float(s), 1e-3) for s in sample.std(axis=(0, 1, 2))))

    return _build_splits(
        options, source, name=name, n_train_split=n_train_split,
        n_test=builder.info.splits[test_split].num_examples, size=size, in_channels=in_channels,
        stats=stats, num_classes=layout["num_classes"], class_names=layout["class_names"],
    )
