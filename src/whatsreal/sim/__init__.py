"""The embedded synthetic sky: one galaxy population seen through two instruments."""
