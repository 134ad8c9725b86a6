"""Offline evaluation of the search on recorded tables: core.py replays them through the real
study code, stats.py summarizes the runs, cli.py is `python -m autotune.evaluate`."""
