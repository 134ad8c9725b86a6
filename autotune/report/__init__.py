"""The run's report, made from the storage alone: data.py collects it (report.json), markdown.py
and plots.py render it, write.py writes the folder, cli.py is `python -m autotune.report`."""
