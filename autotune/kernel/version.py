"""The kernel's version: part of every study name, so timings of older kernel code are never mixed
with new ones. Bump it when a change to the kernel can change a config's speed.

Kept apart from the kernel module so that planning does not import Triton.

History: fmoe-1 first GPU-checked kernel (torch alignment, one program per 128-group);
fmoe-2 Triton alignment (two launches) and 16 rows per activation-quantization program, which
change whole-call timings.
"""

KERNEL_VERSION = "fmoe-2"
