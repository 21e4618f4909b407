"""What every modality's data shares: data roots, downloads, atomic writes, batches, limits.

Each modality's own loading and output is in its package, genforge.modalities.<name>.
Data knows nothing of modalities, training, families or evaluation.
"""

from genforge.data.roots import BUNDLED_ROOT, CACHE_ROOT, data_roots, find_in_roots
from genforge.errors import DataError

__all__ = ["BUNDLED_ROOT", "CACHE_ROOT", "DataError", "data_roots", "find_in_roots"]
