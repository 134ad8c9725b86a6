"""The files autotune reads and writes: vLLM's config files and their SGLang-named copies (names.py,
vllm.py), their check (check.py), the moe-grid-table/1 recorded tables (grid_table.py), atomic
writes (atomic.py) and the checks of where a run will write (output_paths.py)."""
