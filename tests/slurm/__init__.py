"""Tests against a real SLURM cluster started on localhost (``make test-slurm``)."""
