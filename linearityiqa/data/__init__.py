"""The data sets: info files in the authors' layout and their builders, the registry of known
data sets and their splits, decoding images once into a cache, the paper's augmentation and
normalization, and synthetic data sets in the official layouts."""
