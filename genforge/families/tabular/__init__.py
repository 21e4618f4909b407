"""Tables: four synthesizers written here (Gaussian copula, TVAE-style, CTGAN-style,
TabDDPM-style) over encoded rows (genforge.modalities.tables.data), with conditional sampling and
imputation."""
