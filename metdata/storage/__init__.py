"""The dataset root and what lives in it: the layout, atomic files, the one-writer lease, the image
store and the objects table. Imports only :mod:`metdata.core`."""
