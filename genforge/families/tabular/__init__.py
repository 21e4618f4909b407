"""Tables: four synthesizers written here (Gaussian copula, TVAE-style, CTGAN-style,
TabDDPM-style) over encoded rows (genforge.data.tables), with conditional sampling and
imputation."""
