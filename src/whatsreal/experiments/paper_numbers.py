"""The numbers the paper reports, for the side-by-side summary.

These are published results (Mercader-Perez et al., section 4 and appendix
A.5-A.6), not settings: they live here, next to the code that compares with
them, rather than in the config.
"""

from __future__ import annotations

__all__ = ["ABLATION", "GENERATIVE", "TABLE5"]

TABLE5: dict[str, dict[str, float | None]] = {
    # Paper row -> R^2 of (ours_physics, ours_instrument, aion, random_init, cross_predict).
    "Ellipticity e2": {"ours_physics": 0.934, "ours_instrument": 0.321, "aion": 0.941, "random_init": 0.616},
    "Ellipticity e1": {"ours_physics": 0.918, "ours_instrument": 0.421, "aion": 0.939, "random_init": 0.613},
    "Redshift z": {"ours_physics": 0.801, "ours_instrument": 0.535, "aion": 0.857, "random_init": 0.514},
    "log M*": {"ours_physics": 0.755, "ours_instrument": 0.491, "aion": 0.818, "random_init": 0.485},
    "sSFR": {"ours_physics": 0.558, "ours_instrument": 0.297, "aion": 0.624, "random_init": 0.312},
    "t_age": {"ours_physics": 0.257, "ours_instrument": 0.114, "aion": 0.353, "random_init": 0.091},
    "log Z_Met": {"ours_physics": 0.250, "ours_instrument": 0.155, "aion": 0.276, "random_init": 0.123},
    "Legacy galaxy depth": {
        "ours_physics": 0.185,
        "ours_instrument": 0.682,
        "aion": 0.426,
        "random_init": 0.202,
        "cross_predict": 0.214,
    },
    "Legacy PSF depth": {
        "ours_physics": 0.181,
        "ours_instrument": 0.667,
        "aion": 0.409,
        "random_init": 0.191,
        "cross_predict": 0.210,
    },
    "Legacy PSF size": {
        "ours_physics": 0.284,
        "ours_instrument": 0.556,
        "aion": 0.290,
        "random_init": 0.111,
        "cross_predict": 0.313,
    },
    "Legacy E(B-V)": {
        "ours_physics": 0.159,
        "ours_instrument": 0.551,
        "aion": 0.326,
        "random_init": 0.232,
        "cross_predict": 0.648,
    },
    "Legacy # observations": {
        "ours_physics": 0.074,
        "ours_instrument": 0.501,
        "aion": 0.166,
        "random_init": 0.073,
        "cross_predict": 0.197,
    },
    "HSC extinction a": {
        "ours_physics": 0.114,
        "ours_instrument": 0.546,
        "aion": 0.299,
        "random_init": 0.204,
        "cross_predict": 0.669,
    },
    "HSC PSF size": {
        "ours_physics": 0.069,
        "ours_instrument": 0.438,
        "aion": 0.097,
        "random_init": 0.021,
        "cross_predict": 0.368,
    },
}

ABLATION: dict[str, tuple[float, float]] = {
    # Paper row -> instrument-latent R^2 with spatial neighbours, with random ones (A.5).
    "Legacy galaxy depth": (0.68, 0.20),
    "Legacy # observations": (0.50, 0.0),
}

GENERATIVE: dict[str, float] = {
    "mse_hsc": 0.081,  # HSC-anchored (HSC generated from Legacy), 256 held-out galaxies
    "mse_legacysurvey": 0.197,  # Legacy-anchored
    "zero_shot_r2_real": 0.82,
    "zero_shot_r2_generated": 0.81,
}
