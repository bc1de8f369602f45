"""Figures. Each function reads pipeline outputs and writes one PNG."""
