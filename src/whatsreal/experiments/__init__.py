"""The paper's experiments (section 4 and appendix A.3-A.7), one module per figure or table.

Each ``run_*`` function reads files a Snakemake rule names and writes its figure
and tables atomically, so any experiment reruns alone from cached embeddings,
checkpoints and images. What several experiments share lives in
:mod:`~whatsreal.experiments.embeddings` (the embeddings.parquet reader) and
:mod:`~whatsreal.experiments.metrics` (R^2 over finite labels, kNN without the
query itself); the compute device comes from :mod:`whatsreal.device`.
"""
