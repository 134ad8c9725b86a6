"""The kernel's version: part of every study name, so timings of older kernel code are never mixed
with new ones. Bump it when a change to the kernel can change a config's speed.

Kept apart from the kernel module so that planning does not import Triton.
"""

KERNEL_VERSION = "fmoe-1"
