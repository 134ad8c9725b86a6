"""A whole run: tune.py (here or in workers.py), the bucket loop (buckets.py), stopping at a safe
point (stop.py), the result (result.py), the files it ends with (outputs.py), one measurer per
GPU (gpu_lock.py)."""
