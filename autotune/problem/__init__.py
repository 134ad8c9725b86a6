"""The problem being tuned: vLLM's runtime rules (vllm_rules.py, the one copy), the MoE layer's
shape (shape.py, hf_config.py for a model's config.json), the GPU (device.py) and the search
space of kernel configs (space.py)."""
