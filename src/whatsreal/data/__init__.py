"""Data access: the Multimodal Universe file format and (later) the derived products."""
