"""Datasets: tf.data pipelines, offline sources and the embedded default dataset.

`load(name, split, batch_size, ...)` returns a batched, prefetched
`tf.data.Dataset` of `(float32 image, int32 label)` for `mnist`,
`fashion_mnist`, `cifar10`, `cifar100`, `svhn`, `imagenette` and `embedded`
(a 2,500 + 1,000 image class-balanced subset of Fashion-MNIST shipped in the
package, MIT licence, see `LICENSE_fashion_mnist.txt`). The places searched
for the data and their order are documented in `kerascnn.data.sources`.

Example:

>>> from kerascnn import data
>>> data.info("embedded")["num_classes"]
10
>>> test = data.load("embedded", "test", batch_size=100)
"""

from kerascnn.data import sources
from kerascnn.data.loader import info, list_datasets, load
from kerascnn.data.sources import EMBEDDED_PATH, cache_dir, resolve

__all__ = ["load", "info", "list_datasets", "resolve", "cache_dir", "sources", "EMBEDDED_PATH"]
