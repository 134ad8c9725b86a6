"""One bucket's Optuna study: the tuner (tuner.py: propose, measure, tell), what its trials hold
(records.py), the storage it lives in (storage.py) and which run owns a trial (liveness.py)."""
