"""What a measuring worker runs: building inputs, timing one config, checking its output.

`GpuTimer` times the whole MoE call (alignment, quantization, both GEMMs, activation, sum) with
CUDA events around a CUDA graph of several calls, as vLLM's tuner does, but reports the median
and spread over replays. What the L2 cache holds when a call starts is the `l2` mode:

- `hot`: the same weights and routing in every call (vLLM's tuner): at small M the touched
  experts' weights are served from L2;
- `cold`: the calls rotate over copies of the weights (same tokens and routing);
- `layers`: a stack of MoE layers as a forward pass runs them: each layer has its own weights,
  hidden states and routing, the layers run back to back in one graph, and the time is per
  layer. Enough layers that the others' touched weights exceed L2 several times, so each layer
  reads its weights from HBM, as in serving.

Every config is timed in the variant vLLM runs on the spec's GPU (`vllm_rules.swap_ab`).
`InterpreterTimer` runs the same call under the Triton interpreter and reports wall-clock time:
a smoke test, not a GPU timing.

Both run inside the measuring worker process (see worker.py); they import torch and the kernel
when built, so the parent process never does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from autotune.bench.protocol import interleaved_order
from autotune.bench.worker import poisons_context
from autotune.errors import first_line
from autotune.problem import vllm_rules

# Relative-norm error a config's output may have against a reference that rounds at the same
# points as the kernel, per weight dtype (activations: bf16, or fp16 for fp16 weights). Hopper's
# fp8 MMA accumulates in reduced precision, and bf16 intermediates round 8x coarser than fp16.
TOLERANCE = {"bf16": 3e-2, "fp16": 5e-3, "int8_w8a16": 3e-2, "fp8_w8a8": 3e-2}


@dataclass(frozen=True)
class TimerSpec:
    """Everything a worker needs to rebuild the problem (picklable)."""

    E: int
    N: int
    K: int
    topk: int
    dtype: str
    block_shape: Optional[tuple[int, int]]
    calls_per_graph: int = 10
    warmup_replays: int = 10
    replays: int = 6
    steady_max_M: int = 0  # up to this M, steady_warmup_replays (config.py: BenchmarkConfig)
    steady_warmup_replays: int = 2
    l2: str = "layers"  # hot | cold | layers (see the module docstring)
    routing: str = "uniform"
    routing_skew: float = 1.0
    seed: int = 0
    l2_cache_bytes: int = 50 * 2**20
    swap_ab: str = "auto"  # auto: as vLLM runs the config on this GPU | on | off
    capability: Optional[tuple[int, int]] = None  # the GPU's compute capability; None: no GPU
    min_layers: int = 4  # layers mode: at least this many layers (routings averaged over)


# A first look (`screen`): 1 warm-up and 3 timed replays. Enough to tell a config far slower than
# the best (the pruner's margin, 20%) from one that may win: at large M a config's time drifts
# 2-7% over its first replays, at M=1 a new process's first readings run 5-9% fast.
LOOK_REPLAYS = (1, 3)


def warmup_replays_at(M: int, timing: Any, looked: bool = False) -> int:
    """Untimed replays before a config's timed ones at batch size M (`timing`: a TimerSpec or the
    benchmark config): fewer where the calls are memory bound and do not drift, and fewer right
    after a first look at the same graph (`looked`), whose replays count as warm-up."""
    warmup = timing.steady_warmup_replays if M <= timing.steady_max_M else timing.warmup_replays
    return max(0, warmup - sum(LOOK_REPLAYS)) if looked else warmup


def runtime_config(config: dict, spec: TimerSpec) -> dict:
    """The config as vLLM runs it on the spec's GPU (`auto`; the file entry stays the plain
    config), or with SWAP_AB forced `on` or `off` to study the variants."""
    if spec.swap_ab in ("on", "off"):
        return {**config, "SWAP_AB": spec.swap_ab == "on"}
    return {**config, "SWAP_AB": vllm_rules.swap_ab(config, spec.dtype, spec.capability)}


def make_gpu_timer(spec: TimerSpec) -> "GpuTimer":
    return GpuTimer(spec)


def make_interpreter_timer(spec: TimerSpec) -> "InterpreterTimer":
    return InterpreterTimer(spec)


def _quantiles(samples: list[float]) -> tuple[float, float]:
    """Median and relative interquartile range."""
    median = statistics.median(samples)
    if len(samples) < 4:
        return median, (max(samples) - min(samples)) / median if median else 0.0
    q = statistics.quantiles(samples, n=4)
    return median, (q[2] - q[0]) / median if median else 0.0


class _Problem:
    """Random inputs, per batch size: the layers' weights are drawn once (they do not depend on M),
    the hidden states and routing of the last four batch sizes are kept. The two bucket loops
    (run/buckets.py) and the re-timing of a finished bucket alongside them (run/settler.py)
    alternate three or four batch sizes, and drawing them again at every switch would take
    longer than many measurements."""

    KEPT = 4  # batch sizes whose hidden states and routing stay alive

    def __init__(self, spec: TimerSpec, device: str):
        self.spec = spec
        self.device = device
        self.weights: list = []  # per layer (or weight copy), shared by every batch size
        self.by_M: dict[int, list] = {}  # M -> its calls' inputs, least recently used first

    def inputs(self, M: int, copies: int = 1) -> list:
        """`copies` calls' inputs: other weight copies (cold), or other layers (layers)."""
        kept = self.by_M.pop(M, None)
        if kept is None or len(kept) != copies:
            kept = self._build(M, copies)
        self.by_M[M] = kept
        while len(self.by_M) > self.KEPT:
            del self.by_M[next(iter(self.by_M))]
        return kept

    def _build(self, M: int, copies: int) -> list:
        import torch

        from autotune.kernel import make_inputs, make_routing

        s = self.spec
        base = make_inputs(s.E, s.N, s.K, s.topk, M, s.dtype, s.block_shape, self.device,
                           routing=s.routing, skew=s.routing_skew, seed=s.seed,
                           weights=self.weights[0] if self.weights else None)
        if not self.weights:
            self.weights.append(base.weights)
        while len(self.weights) < copies:
            self.weights.append(base.weights.clone())
        out = [base]
        for i in range(1, copies):
            layer = base.with_weights(self.weights[i])
            if s.l2 == "layers":
                # Each layer routes its own tokens: fresh hidden states and top-k choices.
                seed = s.seed + 100 * i
                ids, weights = make_routing(M, s.E, s.topk, routing=s.routing,
                                            skew=s.routing_skew, device=self.device, seed=seed)
                gen = torch.Generator(device=self.device).manual_seed(seed)
                x = torch.randn(base.x.shape, generator=gen, device=self.device)
                layer = dataclasses.replace(layer, x=x.to(base.x.dtype), topk_ids=ids,
                                            topk_weights=weights)
            out.append(layer)
        return out


def verify_output(spec: TimerSpec, config: dict, M: int, device: str, seed: int) -> dict:
    """Run the config once on fresh random inputs and compare with the plain PyTorch reference."""
    from autotune.kernel import fused_moe, make_inputs, reference_moe, relative_error

    inputs = make_inputs(spec.E, spec.N, spec.K, spec.topk, M, spec.dtype, spec.block_shape,
                         device, routing=spec.routing, skew=spec.routing_skew, seed=seed)
    out = fused_moe(inputs, config)
    error = relative_error(out, reference_moe(inputs, match_kernel_precision=True))
    tolerance = TOLERANCE[spec.dtype]
    return {"ok": bool(error <= tolerance), "error": error, "tolerance": tolerance}


class GpuTimer:
    def __init__(self, spec: TimerSpec):
        import torch

        import autotune.kernel  # noqa: F401 - load the kernel module once, before timing

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU in the measuring worker")
        present = tuple(torch.cuda.get_device_capability())
        if spec.capability is not None and tuple(spec.capability) != present:
            # The variant vLLM runs depends on it: timing another GPU's variant would mislead.
            raise RuntimeError(f"the GPU has compute capability {present}, the plan's device "
                               f"{tuple(spec.capability)}")
        self.torch = torch
        self.spec = spec
        self.problem = _Problem(spec, "cuda")
        self._verify_seed = 1000 + spec.seed
        self._looked: Optional[tuple] = None  # (config, M, captured graph) of the last look

    def copies_for(self, M: int) -> int:
        """Weight copies (cold) or layers: enough that the others' touched experts fill L2
        three times over between two calls of the same one."""
        s = self.spec
        if s.l2 == "hot":
            return 1
        a_bytes = 1 if s.dtype in ("fp8_w8a8", "int8_w8a16") else 2
        per_expert = 3 * s.N * s.K * a_bytes
        touched = min(s.E, M * s.topk) * per_expert
        wanted = max(2, math.ceil(3 * s.l2_cache_bytes / touched) + 1)
        free, _ = self.torch.cuda.mem_get_info()
        affordable = max(1, int(0.5 * free // (s.E * per_expert)))
        if s.l2 == "layers":
            return max(1, min(max(wanted, s.min_layers), affordable))
        return max(1, min(wanted, s.calls_per_graph, affordable))

    def calls_for(self, copies: int) -> int:
        """Calls in the graph: at least calls_per_graph, every layer called equally often."""
        s = self.spec
        if s.l2 != "layers":
            return s.calls_per_graph
        return copies * math.ceil(s.calls_per_graph / copies)

    def moe_plan(self, config: dict, inputs):
        """The kernel's launch plan for a config (a test variant plants a fault in it)."""
        from autotune.kernel import MoEPlan

        return MoEPlan.create(inputs, runtime_config(config, self.spec))

    def measure(self, config: dict, M: int) -> dict:
        looked, self._looked = self._looked, None
        if looked is not None and looked[:2] == (config, M):  # right after its first look
            return self._timed(looked[2], warmup_replays_at(M, self.spec, looked=True),
                               self.spec.replays)
        return self._timed(self.capture(config, M), warmup_replays_at(M, self.spec),
                           self.spec.replays)

    def screen(self, config: dict, M: int) -> dict:
        """A first look: the graph `measure` times, LOOK_REPLAYS (warm-up, timed) replays. The
        graph is kept for a `measure` of the same config that comes next."""
        self._looked = None
        captured = self.capture(config, M)
        self._looked = (config, M, captured)
        return self._timed(captured, *LOOK_REPLAYS)

    def measure_rounds(self, configs: list[dict], M: int, rounds: int) -> list[dict]:
        """`measure` of each config in interleaved rounds, its graph captured once. The graphs
        share one memory pool: their intermediates overlap, which no timing reads."""
        self._looked = None
        pool = self.torch.cuda.graph_pool_handle()
        warmup = warmup_replays_at(M, self.spec)
        return interleaved_rounds(lambda c: self.capture(c, M, pool),
                                  lambda captured: self._timed(captured, warmup, self.spec.replays),
                                  configs, rounds)

    def _timed(self, captured: tuple, warmup: int, replays: int) -> dict:
        s = self.spec
        graph, plan, copies, calls = captured
        samples = self.replay(graph, calls, warmup, replays)
        median, spread = _quantiles(samples)
        copies_key = "layers" if s.l2 == "layers" else "weight_copies"
        return {"us": median, "spread": spread, "samples": samples,
                "method": {"l2": s.l2, copies_key: len(copies), "calls_per_graph": calls,
                           "swap_ab": bool(plan.config["SWAP_AB"])}}

    def capture(self, config: dict, M: int, pool=None):
        """A CUDA graph of the config's calls over the layers: (graph, plan, copies, calls)."""
        torch = self.torch
        copies = self.problem.inputs(M, self.copies_for(M))
        calls = self.calls_for(len(copies))
        plan = self.moe_plan(config, copies[0])
        # Eager calls first: compile or load the kernels, and surface launch errors outside a
        # graph capture.
        for inputs in copies:
            plan.inputs = inputs
            plan()
        torch.cuda.synchronize()

        stream = torch.cuda.Stream()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(stream):
            with torch.cuda.graph(graph, stream=stream, pool=pool):
                for i in range(calls):
                    plan.inputs = copies[i % len(copies)]
                    plan()
        torch.cuda.synchronize()
        return graph, plan, copies, calls

    def replay(self, graph, calls: int, warmup: int, replays: int) -> list[float]:
        """Microseconds per call of each timed replay, after `warmup` untimed ones."""
        torch = self.torch
        for _ in range(warmup):
            graph.replay()
        start = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
        end = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
        for i in range(replays):
            start[i].record()
            graph.replay()
            end[i].record()
        torch.cuda.synchronize()
        return [a.elapsed_time(b) * 1000.0 / calls for a, b in zip(start, end, strict=True)]

    def verify(self, config: dict, M: int) -> dict:
        self._looked = None
        self._verify_seed += 1  # fresh random inputs for every check
        return verify_output(self.spec, runtime_config(config, self.spec), M, "cuda",
                             self._verify_seed)

    def environment(self) -> dict:
        return gpu_environment()


class InterpreterTimer:
    """Wall-clock of the real kernel under the Triton interpreter (TRITON_INTERPRET=1)."""

    REPEATS = 3

    def __init__(self, spec: TimerSpec):
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("the interpreter timer needs TRITON_INTERPRET=1 before Triton loads")
        import autotune.kernel  # noqa: F401

        self.spec = spec
        self.problem = _Problem(spec, "cpu")
        self._verify_seed = 1000 + spec.seed

    def measure(self, config: dict, M: int) -> dict:
        return self._timed(self._plan(config, M))

    def screen(self, config: dict, M: int) -> dict:
        return self._timed(self._plan(config, M), repeats=1)

    def measure_rounds(self, configs: list[dict], M: int, rounds: int) -> list[dict]:
        return interleaved_rounds(lambda c: self._plan(c, M), self._timed, configs, rounds)

    def _plan(self, config: dict, M: int):
        from autotune.kernel import MoEPlan

        plan = MoEPlan.create(self.problem.inputs(M)[0], config)
        plan()  # compile, and surface launch errors before timing
        return plan

    def _timed(self, plan, repeats: int = REPEATS) -> dict:
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            plan()
            samples.append((time.perf_counter() - t0) * 1e6)
        median, spread = _quantiles(samples)
        return {"us": median, "spread": spread, "samples": samples,
                "method": {"timing": "wall clock under the Triton interpreter (not a GPU timing)"}}

    def verify(self, config: dict, M: int) -> dict:
        self._verify_seed += 1
        return verify_output(self.spec, config, M, "cpu", self._verify_seed)

    def environment(self) -> dict:
        import torch
        import triton

        return {"device": "cpu (Triton interpreter)", "torch": torch.__version__,
                "triton": triton.__version__}


def interleaved_rounds(prepare: Callable[[dict], Any], time_once: Callable[[Any], dict],
                       configs: list[dict], rounds: int) -> list[dict]:
    """Each config prepared once, then timed once per round, every round starting one config
    later (A B C, B C A, ...). Per config {"rounds": [timing, ...], "error": reason or None}; a
    config that fails is not timed again, an error that poisons the CUDA context ends it all."""
    prepared: list[Any] = []
    answers = [{"rounds": [], "error": None} for _ in configs]
    for config, answer in zip(configs, answers):
        prepared.append(_attempt(lambda c=config: prepare(c), answer))
    for i in interleaved_order(len(configs), rounds):
        if answers[i]["error"] is None:
            timing = _attempt(lambda p=prepared[i]: time_once(p), answers[i])
            if timing is not None:
                answers[i]["rounds"].append(timing)
    return answers


def _attempt(step: Callable[[], Any], answer: dict) -> Any:
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - a config's failure is its answer
        if poisons_context(exc):
            raise  # the worker answers it as fatal and is replaced
        answer["error"] = f"{type(exc).__name__}: {first_line(exc)}"
        return None


def gpu_environment() -> dict:
    """GPU name, clocks, temperature and software versions, for the record beside results."""
    import torch
    import triton

    env: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                           "triton": triton.__version__, "cuda": torch.version.cuda}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--id=" + os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0],
             "--query-gpu=clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        sm, mem, max_sm, temp, power = [v.strip() for v in out.stdout.strip().split(",")]
        env.update(sm_clock_mhz=sm, mem_clock_mhz=mem, max_sm_clock_mhz=max_sm,
                   temperature_c=temp, power_w=power)
    except (OSError, ValueError, subprocess.SubprocessError):
        env["clocks"] = "nvidia-smi unavailable"
    return env


