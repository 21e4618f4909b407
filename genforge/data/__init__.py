"""Data for every modality: images, text, series (and the shared roots, download, batches).

One module per modality offers a loader returning a `TrainingData` (see
genforge.training.contract) and an output adapter; `genforge.data.modalities` is their table.
Data knows nothing of training, families or evaluation.
"""

from genforge.data.images import ImageData, from_model_range, load_images, to_model_range
from genforge.data.roots import BUNDLED_ROOT, CACHE_ROOT, data_roots, find_in_roots
from genforge.errors import DataError

__all__ = ["BUNDLED_ROOT", "CACHE_ROOT", "DataError", "ImageData", "data_roots",
           "find_in_roots", "from_model_range", "load_images", "to_model_range"]
