"""From studies to file entries: finalists re-timed against vLLM's default (finalists.py,
retime.py), an existing file's entries compared (compare.py), the check between buckets
(midpoints.py), and every bucket's entry for the file (entries.py)."""
