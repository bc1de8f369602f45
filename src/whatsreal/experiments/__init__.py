"""The paper's experiments (section 4 and appendix A.3-A.7), one module per figure or table.

Each ``run_*`` function reads files a Snakemake rule names and writes its figure
and tables atomically, so any experiment reruns alone from cached embeddings,
checkpoints and images.
"""
