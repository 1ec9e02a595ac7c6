"""regbench.nn: the book's layer types and the model built from a layer list.

Importing the package registers every layer type (`blocks` imports `layers`, so the plain types come
first: the order users see), so `spec.parse_layers` knows them all whichever module is imported first.
"""

from . import blocks, layers  # noqa: F401  (registration)
