"""Checksums written with every checkpoint and verified on restore.

Orbax detects a checkpoint cut short, but bytes changed inside an array file decode to different
numbers without an error. Each checkpoint's JSON metadata therefore carries, under ``"integrity"``,
a SHA-256 of every saved array (dtype, shape and bytes) and of the rest of the metadata. A restored
checkpoint whose arrays or metadata do not match, or whose floating-point values are not all
finite, fails :func:`verify` and is treated like an unreadable one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.errors import UserError

log = logging.getLogger("sld_jax")

KEY = "integrity"
FORMAT = "sha256.v1"


class IntegrityError(UserError):
    """A restored checkpoint does not match its checksums or holds non-finite values."""


def leaf_names(tree: Any) -> list[tuple[str, Any]]:
    """``(dotted name, leaf)`` for every leaf; the same names for a TrainState and its saved dict.

    >>> [n for n, _ in leaf_names({"params": {"w": 1}, "opt": [None, {"trace": 2}]})]
    ['opt.1.trace', 'params.w']
    """
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = []
        for k in path:
            for attr in ("key", "name", "idx"):
                if hasattr(k, attr):
                    parts.append(str(getattr(k, attr)))
                    break
        out.append((".".join(parts), leaf))
    return sorted(out, key=lambda item: item[0])


def _host(leaf: Any) -> np.ndarray | None:
    """The whole array on the host, or None for an array sharded over several hosts."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if not leaf.sharding.is_fully_replicated:
            return None  # a sharded array of a multi-host run: not verified (see docs/reliability.md)
        return np.asarray(leaf.addressable_shards[0].data)  # replicated: any copy is the array
    return np.asarray(jax.device_get(leaf))


def array_digest(array: np.ndarray) -> str:
    """SHA-256 hex digest of an array's dtype, shape and bytes.

    >>> array_digest(np.zeros(2, np.float32)) == array_digest(np.zeros(2, np.float32))
    True
    """
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def metadata_digest(metadata: dict) -> str:
    """SHA-256 of the metadata's canonical JSON (sorted keys), ``"integrity"`` excluded."""
    body = {k: v for k, v in metadata.items() if k != KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def with_checksums(state: Any, metadata: dict) -> dict:
    """``metadata`` plus the ``"integrity"`` record of ``state`` and of ``metadata`` itself."""
    body = json.loads(json.dumps(metadata))  # the form it has once read back from JSON
    arrays = {}
    for name, leaf in leaf_names(state):
        host = _host(leaf)
        if host is not None:
            arrays[name] = array_digest(host)
    return {**body, KEY: {"format": FORMAT, "arrays": arrays, "metadata": metadata_digest(body)}}


def verify(state: Any, metadata: dict, *, where: str) -> dict:
    """Checks a restored ``state`` against the checksums in its ``metadata``.

    Args:
      state: the restored pytree (TrainState or the saved dict), on host or device.
      metadata: the restored JSON metadata.
      where: names the checkpoint in error messages (e.g. ``"checkpoint 184 in .../checkpoints"``).

    Returns:
      The metadata without its ``"integrity"`` record.

    Raises:
      IntegrityError: a checksum differs, an array is missing or extra, or a floating-point array
        holds NaN/Inf (also for checkpoints written before checksums existed).
    """
    record = metadata.get(KEY)
    body = {k: v for k, v in metadata.items() if k != KEY}
    leaves = [(name, _host(leaf)) for name, leaf in leaf_names(state)]
    problems = []
    if record is None:
        log.warning(
            "%s has no checksums (written by an older sld_jax); only checking that its values are finite.",
            where,
        )
    else:
        if record.get("metadata") != metadata_digest(body):
            problems.append("its metadata does not match its checksum")
        saved = record.get("arrays", {})
        # Arrays without a recorded checksum (sharded over hosts when saved) are not compared.
        mismatched = [n for n, a in leaves if a is not None and n in saved and saved[n] != array_digest(a)]
        if mismatched:
            problems.append(
                f"arrays that do not match their checksums: {', '.join(mismatched[:5])}"
                + (f" and {len(mismatched) - 5} more" if len(mismatched) > 5 else "")
            )
        missing = sorted(set(saved) - {n for n, _ in leaves})
        if missing:
            problems.append(f"arrays missing from the restored state: {', '.join(missing[:5])}")
    nonfinite = [
        n
        for n, a in leaves
        if a is not None and jnp.issubdtype(a.dtype, jnp.inexact) and not np.isfinite(a).all()
    ]
    if nonfinite:
        problems.append(f"non-finite values in {', '.join(nonfinite[:5])}")
    if problems:
        raise IntegrityError(f"{where} fails verification ({'; '.join(problems)})")
    return body
