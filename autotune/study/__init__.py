"""One bucket's Optuna study: the tuner (tuner.py: propose, measure, tell), what its trials hold
(records.py), study names (names.py), a run's studies opened once (run_studies.py), the storage
they live in (storage.py) and which run owns a trial (liveness.py)."""
