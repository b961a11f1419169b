"""One memoising helper for the compiled programs of :mod:`sld_jax.models` and :mod:`sld_jax.train`.

JAX traces, lowers and compiles a function once per process and argument shapes, whichever
``jax.jit`` wrapper calls it; building that function once per static description (a model, a
step configuration) is what lets equal descriptions share the work.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

T = TypeVar("T")


def shared(make: Callable[..., T], maxsize: int = 16) -> Callable[..., T]:
    """``make`` memoised on its positional arguments (an LRU of ``maxsize``); unhashable
    arguments (e.g. a list in a model field) are built afresh on every call.

    >>> calls = []
    >>> def square(x):
    ...     calls.append(x)
    ...     return x * x
    >>> memo_square = shared(square)
    >>> memo_square(3), memo_square(3), len(calls)
    (9, 9, 1)
    >>> shared(len)([1, 2])  # unhashable: called directly
    2
    """
    cached = functools.lru_cache(maxsize=maxsize)(make)

    @functools.wraps(make)
    def get(*args):
        try:
            hash(args)
        except TypeError:
            return make(*args)
        return cached(*args)

    get.cache_info = cached.cache_info
    return get
