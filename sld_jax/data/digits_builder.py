"""TFDS builder for the 1,797 8x8 handwritten digits that scikit-learn ships (no download).

The images are the UCI "Optical Recognition of Handwritten Digits" test set as bundled with
scikit-learn (``sklearn.datasets.load_digits``): 8x8 grey images with 17 intensity levels (0..16)
and labels 0..9. The builder stores them natively (``uint8 [8, 8, 1]``, intensity scaled to
0..255 as ``round(v * 255 / 16)``) with a fixed, seeded, stratified split:

=====  =======  ===========================================================
split  images   rule
=====  =======  ===========================================================
train  1,438    every class minus its test share
test   359      ``round(0.2 * class count)`` examples of each class, chosen by
                ``np.random.default_rng(SPLIT_SEED)`` permutations per class
=====  =======  ===========================================================

``sld_jax.data.sources`` serves them to the models as 16x16 RGB (see ``DatasetSpec``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

#: Seed of the stratified train/test split; changing it changes the dataset (bump the version).
SPLIT_SEED = 0
#: Fraction of each class that goes to the test split.
TEST_FRACTION = 0.2
#: Split sizes produced by the rule above (checked by the builder and the tests).
NUM_TRAIN = 1438
NUM_TEST = 359


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn digits as ``uint8 [1797, 8, 8]`` (0..255) and ``int64 [1797]`` labels.

    >>> images, labels = digits_arrays()
    >>> images.shape, images.dtype, int(images.max()), labels[:5].tolist()
    ((1797, 8, 8), dtype('uint8'), 255, [0, 1, 2, 3, 4])
    """
    from sklearn.datasets import load_digits  # local: scikit-learn is only needed to build

    bunch = load_digits()
    images = np.round(np.asarray(bunch.images, np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(bunch.target, np.int64)


def split_indices(
    labels: np.ndarray, *, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION
) -> dict[str, np.ndarray]:
    """Seeded stratified split of ``labels`` (``int [N]``) into sorted index arrays ``train``/``test``.

    Each class contributes ``round(test_fraction * count)`` of its examples to ``test``, chosen by a
    permutation from ``np.random.default_rng(seed)`` (one draw per class, in class order).

    >>> s = split_indices(np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]), test_fraction=0.4)
    >>> len(s["train"]), len(s["test"]), sorted(np.concatenate([s["train"], s["test"]]).tolist()) == list(range(10))
    (6, 4, True)
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = int(round(test_fraction * len(members)))
        test.append(rng.permutation(members)[:take])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return {"train": train_idx, "test": test_idx}


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The scikit-learn 8x8 digits as a TFDS dataset (built locally, never downloaded).

    Use it like any TFDS builder; it is not in the global TFDS registry, so construct it directly:
    ``Digits(data_dir=...)``, then ``download_and_prepare()`` (reads scikit-learn's bundled file).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 1,438/359 split of the scikit-learn digits (seed 0)."}

    # TFDS looks for a download-checksums file next to the builder's code; digits downloads
    # nothing, and skipping the lookup keeps building independent of optional TFDS imports.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "1,797 8x8 grey handwritten digits (UCI optical recognition of handwritten digits, "
                "as shipped by scikit-learn) with a seeded stratified train/test split."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                    "id": np.int32,
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
            citation=(
                "@misc{alpaydin1998digits, author={Alpaydin, E. and Kaynak, C.}, title={Optical "
                "Recognition of Handwritten Digits}, year={1998}, howpublished={UCI Machine "
                "Learning Repository}, doi={10.24432/C50P49}}"
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        images, labels = digits_arrays()
        splits = split_indices(labels)
        if (len(splits["train"]), len(splits["test"])) != (NUM_TRAIN, NUM_TEST):
            raise RuntimeError(
                f"the digits split has {len(splits['train'])}/{len(splits['test'])} examples, not "
                f"{NUM_TRAIN}/{NUM_TEST}; the scikit-learn data changed, so bump Digits.VERSION."
            )
        return {name: self._generate_examples(images, labels, idx) for name, idx in splits.items()}

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> Iterator[tuple[int, dict]]:
        for i in indices:
            yield int(i), {"image": images[i][:, :, None], "label": int(labels[i]), "id": int(i)}
