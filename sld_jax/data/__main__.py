"""``python -m sld_jax.data prepare NAME [--data_dir DIR]``: prepare a dataset (see sources.main)."""

import sys

from sld_jax.data.sources import main

if __name__ == "__main__":
    sys.exit(main())
