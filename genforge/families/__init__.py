"""Model families: one folder each; a family imports shared parts, never another family."""
