"""A plug-in defined outside genforge, as a third-party package would be: a modality (2-D
point clouds) and a family (a Gaussian mixture), registered through the entry-point groups
`genforge.modalities` and `genforge.families` (see ../genforge_points-0.1.dist-info). The
plug-in tests (tests/test_plugins.py) train, sample, complete, evaluate and serve them with
no edit anywhere in genforge/.
"""
