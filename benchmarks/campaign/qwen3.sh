# Sourced by the speed campaigns: the shape they tune, vLLM's H200 file each dtype is compared
# with (vLLM ships none for an H100), the overrides of each dtype, and the judge's protocol (5 + 20
# replays, a whole measurement a round: as every earlier judge).
SHAPE=qwen3_30b_a3b_tp1
SHIPPED_bf16="benchmarks/fidelity_h200/shipped/E=128,N=768,device_name=NVIDIA_H200.json"
SHIPPED_fp8="autotune/vllm_configs/E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
DTYPE_bf16=(); DTYPE_fp8=(shape.dtype=fp8_w8a8 'shape.block_shape=[128,128]')
JUDGE=(benchmark.seed=2 benchmark.warmup_replays=5 benchmark.replays=20 benchmark.steady_max_M=0
       benchmark.rounds_in_worker=false)
