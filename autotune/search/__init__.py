"""How the next config is chosen: the samplers (samplers.py, prior_gp.py), the prior learnt from
shipped files and recorded tables (prior.py) and a bucket's first trials (warm_starts.py)."""
