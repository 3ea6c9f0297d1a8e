"""Token generation on the system model: the composition root that wires workloads (model
shapes), mapping (compiled decode steps) and sim (timing, energy) together.

Besides `sim/cli.py`, this is the only sim module that imports `mapping`; the rest of sim sees
Programs only (hw_configs/program.py).

Following the paper, the prompt is processed one token at a time: every position 0 .. prompt +
generated - 1 is one decode step with the KV cache holding the positions before it. Every step
is timed in full (every PIM op in the engine, refresh on unless turned off). What carries from
step to step is the compiled position-independent part of the Program and, in the compiled
dispatcher, the outcome of a PIM op whose block and starting state repeat exactly with no
refresh falling due inside it (the engine's op memo; the same cycles, counts and state as timing
it, tests/test_op_memo.py).
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from numba import njit

from hw_configs.isa import F_CHMASK, F_CMD, F_COUNT, F_OP, F_ROW, OP_COLUMN, OP_PRECHARGE
from sim.config import ConfigError, HardwareConfig, load_config
from sim.derived import derived_figures
from sim.engine import Engine
from sim.results import project_version
from sim.system.model import MODES, StepResult, SystemModel

BREAKDOWN_TAGS = ("embedding", "norms", "qkv", "kv_write", "attention_scores", "softmax", "attention_context",
                  "out_proj", "residual", "mlp", "lm_head", "reductions", "data_movement", "sampling", "refresh",
                  "idle")


@dataclass
class TokenRecord:
    position: int
    cycles: int
    latency_s: float
    energy_j: float
    pim_only_cycles: int
    floor_cycles: float
    bound_s: float


@dataclass
class Generation:
    """Everything one `simulate` call measured, and the configuration that produced it."""

    config: dict
    tokens: list[TokenRecord]
    steps: list[StepResult] = field(repr=False)
    summary: dict

    def to_json(self) -> dict:
        s = 1e-9 * self.config["hardware"]["dram"]["tck_ns"]
        return {"version": project_version(), "config": self.config,
                "tokens": [{"position": t.position, "latency_s": t.latency_s, "energy_j": t.energy_j,
                            "cycles": t.cycles, "pim_only_s": t.pim_only_cycles * s,
                            "row_pass_floor_s": t.floor_cycles * s, "bound_s": t.bound_s} for t in self.tokens],
                "summary": self.summary}




def strategies() -> tuple[str, ...]:
    """The mapping strategies `simulate` accepts (for checking a sweep spec before it runs)."""
    from mapping.placement import STRATEGIES

    return STRATEGIES


def resolve(model, hw: str | HardwareConfig, overrides: dict | None = None):
    """(ModelSpec, HardwareConfig) from names or files (a ModelSpec is taken as it is)."""
    from workloads import ModelSpec, get_spec

    cfg = hw if isinstance(hw, HardwareConfig) else load_config(hw, overrides)
    return (model if isinstance(model, ModelSpec) else get_spec(model)), cfg


def simulate(model: str, hw: str | HardwareConfig = "pim-gpt", prompt_len: int = 8, gen_len: int = 32,
             mode: str = "overlap", strategy: str = "pim-gpt", overrides: dict | None = None,
             refresh: bool | None = None, progress: bool = False, kernel: str = "compiled",
             front_end: str = "pim-gpt") -> Generation:
    """Time every prompt and generated token of `model` on `hw`; per-token latency and energy."""
    from mapping.compile import compiler_for

    if mode not in MODES:
        raise ConfigError("--mode", "mode", f"unknown mode '{mode}'; expected one of {', '.join(MODES)}")
    if prompt_len < 1 or gen_len < 0:
        raise ConfigError("--prompt-len", "prompt_len", f"need prompt_len >= 1 and gen_len >= 0, got {prompt_len}, {gen_len}")
    spec, cfg = resolve(model, hw, overrides)
    context = prompt_len + gen_len
    if context > spec.max_context:
        raise ConfigError("--gen-len", "gen_len", f"prompt {prompt_len} + generated {gen_len} = {context} positions "
                                                  f"exceeds {spec.name}'s context of {spec.max_context}; "
                                                  f"at most {spec.max_context - prompt_len} tokens can be generated")
    compiler = compiler_for(spec, cfg, strategy, context)  # placement: capacity errors happen here
    system = SystemModel(cfg, mode=mode, refresh=refresh, kernel=kernel, front_end=front_end)
    pim_only = Engine(cfg, refresh=refresh, front_end=front_end)
    figs = {f.name: f.value for f in derived_figures(cfg)}
    peak_bw = figs["peak_internal_bandwidth"] * 1e9  # bytes/s
    t = cfg.dram.timing
    refresh_on = system.engine.refresh
    refresh_factor = t["nREFI"] / (t["nREFI"] - t["nRFC"]) if refresh_on else 1.0
    weight_bytes = spec.matmul_weight_bf16_bytes
    kv_per_pos = spec.kv_bytes_per_position
    std = system.engine.std
    # a row pass of k columns takes at least nRCDRDMAC + (k - 1) x gap + nRTP + nRP (ACT16 to the
    # next ACT16), so a channel's P passes of C columns in all take P x (nRCDRDMAC - gap + nRTP +
    # nRP) + C x gap; for full rows that is P x the standard's row-pass time
    mac16 = std.cmd("MAC16")
    mac_gap = std.self_gap(mac16)
    per_pass = t["nRCDRDMAC"] - mac_gap + t["nRTP"] + t["nRP"]  # (nRAS, which can bind on short passes
    # elsewhere, does not on the AiM preset: 56 + 12 > 54; leaving it out keeps this a lower bound)
    tck = cfg.dram.tck_ns
    positions = range(context)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=context, desc=f"{spec.name} on {cfg.name}", unit="token", file=sys.stderr)
    steps, records, alone = [], [], []
    # The PIM-alone figure times each step's instruction blocks on a second engine, in step order;
    # it needs nothing from the system model but those blocks, so it runs on a worker thread
    # while the next step is compiled and dispatched (both engines release the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pim-alone") as pool:
        try:
            for p in positions:
                prog = compiler.compile(p)
                step = system.run_step(prog)
                pim = system.last_pim_instructions  # the PIM part back to back, no ASIC or I/O waits
                alone.append(pool.submit(_pim_alone, pim_only, pim, mac16) if len(pim) else None)
                bound = (weight_bytes + kv_per_pos * (p + 1)) / peak_bw
                steps.append(step)
                records.append(TokenRecord(p, step.cycles, step.latency_s, step.energy_j["total"], 0, 0.0, bound))
                if bar is not None:
                    bar.update(1)
            for r, fut in zip(records, alone):
                if fut is not None:
                    r.pim_only_cycles, n_pass, n_cols = fut.result()                  # [C], [C]
                    r.floor_cycles = float((n_pass * per_pass + n_cols * mac_gap).max()) * refresh_factor
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if bar is not None:
        bar.close()
    summary = summarize(steps, records, system, tck)
    config = {"hardware": cfg.resolved(), "hardware_file": cfg.source, "model": _spec_dict(spec), "mode": mode,
              "strategy": strategy, "prompt_len": prompt_len, "gen_len": gen_len, "refresh": refresh_on,
              "front_end": system.front_end}
    return Generation(config=config, tokens=records, steps=steps, summary=summary)


@njit(cache=True, nogil=True)
def row_passes(ins, n_channels, mac_cmd):
    """Per channel: MAC16 row passes and their columns in one step's PIM instructions, as
    mapping/stats.py defines them (a run of MAC16 to one row; a precharge or another column
    command ends it). Counted from what the program asks for, not from the activations a refresh
    or a KV write adds.  ins [n, N_FIELDS] -> passes [C], columns [C]."""
    passes = np.zeros(n_channels, np.int64)
    cols = np.zeros(n_channels, np.int64)
    in_run = np.zeros(n_channels, np.bool_)   # the channel's last kept instruction was a MAC16
    run_row = np.full(n_channels, -2, np.int64)
    for i in range(ins.shape[0]):
        op = ins[i, F_OP]
        is_mac = op == OP_COLUMN and ins[i, F_CMD] == mac_cmd
        if not is_mac and op != OP_PRECHARGE and op != OP_COLUMN:
            continue
        mask = ins[i, F_CHMASK]
        for c in range(n_channels):
            if (mask >> c) & 1 == 0:
                continue
            if is_mac:
                if not (in_run[c] and run_row[c] == ins[i, F_ROW]):
                    passes[c] += 1
                cols[c] += ins[i, F_COUNT]
                in_run[c] = True
                run_row[c] = ins[i, F_ROW]
            else:
                in_run[c] = False
    return passes, cols


def _pim_alone(engine: Engine, instructions: np.ndarray, mac_cmd: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Worker-thread job of one step: the PIM part timed back to back, and its row passes."""
    cycles = engine.run(instructions, validate=False, op_stats=False, close_rows=False).cycles
    return (cycles, *row_passes(instructions, engine.n_channels, mac_cmd))


def _spec_dict(spec) -> dict:
    from dataclasses import asdict

    return asdict(spec)


def summarize(steps: list[StepResult], records: list[TokenRecord], system: SystemModel, tck_ns: float) -> dict:
    n = len(steps)
    s = 1e-9 * tck_ns
    lat = np.array([r.latency_s for r in records])
    en = np.array([r.energy_j for r in records])
    names = system.engine.std.command_names
    counts = np.sum([st.command_counts for st in steps], axis=0)
    hits = sum(st.row_hits for st in steps)
    misses = sum(st.row_misses for st in steps)
    tags: dict[str, float] = {}
    for st in steps:
        for k, v in st.latency_cycles_by_tag.items():
            tags[k] = tags.get(k, 0.0) + v * s / n
    energy: dict = {"pim_commands": {}, "background": {}, "io": 0.0, "asic": {}}
    for st in steps:
        e = st.energy_j
        for k, v in e["pim_commands"].items():
            energy["pim_commands"][k] = energy["pim_commands"].get(k, 0.0) + v / n
        for k, v in e["background"].items():
            energy["background"][k] = energy["background"].get(k, 0.0) + v / n
        energy["io"] += e["io"] / n
        for k, v in e["asic"].items():
            energy["asic"][k] = energy["asic"].get(k, 0.0) + v / n
    mac = names.index("MAC16")
    mac_gap = system.engine.std.self_gap(mac)
    total_cycles = sum(st.cycles for st in steps)
    ch = system.n_channels
    mac_util = float(counts[mac]) * mac_gap / (total_cycles * ch) if total_cycles else 0.0
    return {
        "tokens": n,
        "latency_s_per_token_mean": float(lat.mean()),
        "tokens_per_s": float(1.0 / lat.mean()),
        "energy_j_per_token_mean": float(en.mean()),
        "bound_s_per_token": float(np.mean([r.bound_s for r in records])),
        "row_pass_floor_s_per_token": float(np.mean([r.floor_cycles for r in records]) * s),
        "pim_only_s_per_token": float(np.mean([r.pim_only_cycles for r in records]) * s),
        "row_hit_rate": hits / (hits + misses) if hits + misses else None,
        "mac_utilization": mac_util,
        "dram_commands": {names[i]: int(c) for i, c in enumerate(counts) if c},
        "breakdown_latency_s": {k: tags[k] for k in BREAKDOWN_TAGS if k in tags}
        | {k: v for k, v in tags.items() if k not in BREAKDOWN_TAGS},
        "breakdown_energy_j": energy,
        "non_pim_latency_share": float(sum(v for k, v in tags.items() if k in NON_PIM_TAGS) / lat.mean()),
    }


NON_PIM_TAGS = ("norms", "softmax", "residual", "reductions", "sampling", "data_movement", "idle")


# --------------------------------------------------------------------------- functional numerics


def functional_setup(model, cfg: HardwareConfig, context: int, strategy: str = "pim-gpt",
                     row_commands: str | None = None):
    """(compiler, bf16 image, ASIC parameter store) for running `model` functionally on `cfg`:
    the mapping's fp32 image of the real weights (mapping.executor.build_image, the placement's
    layout), every value rounded to bf16."""
    from mapping.compile import compiler_for
    from mapping.executor import asic_store, build_image
    from sim.functional.executor import PimImage

    comp = compiler_for(model.spec, cfg, strategy, context, row_commands)
    image = PimImage.from_fp32(build_image(comp.placement, model.params).data)
    return comp, image, asic_store(comp.placement, model.params)


def pim_decoder(cfg: HardwareConfig, image=None, backend: str = "numba"):
    """A decoder factory for mapping.accuracy: (compiler, model) -> step(position, token) -> logits,
    running the PIM numerics of `cfg` on `image` (built from the compiler's placement when None)."""
    from mapping.executor import asic_store, build_image
    from sim.functional.executor import FunctionalExecutor, PimImage, PimNumerics

    numerics = PimNumerics.from_config(cfg)

    def make(compiler, model):
        img = image if image is not None else PimImage.from_fp32(build_image(compiler.placement, model.params).data)
        ex = FunctionalExecutor(img, asic_store(compiler.placement, model.params), numerics, backend)
        return lambda pos, tok: ex.run(compiler.compile(pos, int(tok)))["logits"].copy()

    return make


def accuracy_sweep(model_name: str, weights: str, hw: str, overrides: dict | None, grid: dict[str, list],
                   n_tokens: int, prompt_len: int, gen_len: int, strategy: str = "pim-gpt", mode: str = "overlap",
                   seed: int = 0, progress=None) -> tuple[list[dict], HardwareConfig, dict]:
    """Accuracy (teacher-forced, functional core) next to latency and energy (`simulate`, prompt_len
    + gen_len tokens) for the base config and each knob value of `grid`, one knob at a time.
    The tokens, the reference, the compiled steps and the bf16 image are shared by every point
    (the knobs change numerics, never placement). Returns (rows, base config, run facts)."""
    from mapping.accuracy import compare, prepare, teacher_forced
    from mapping.executor import asic_store, build_image
    from sim.functional.executor import FunctionalExecutor, PimImage, PimNumerics
    from sim.functional.tradeoff import run_sweep, sweep_points
    from workloads import load_model

    overrides = dict(overrides or {})
    base = load_config(hw, overrides)
    model = load_model(model_name, weights=weights, seed=seed)
    prep = prepare(model, base, n_tokens, strategy, seed=seed)
    image = PimImage.from_fp32(build_image(prep.compiler.placement, model.params).data)
    store = asic_store(prep.compiler.placement, model.params)

    def accuracy_of(ov: dict) -> dict:
        ex = FunctionalExecutor(image, store, PimNumerics.from_config(load_config(hw, {**overrides, **ov})))
        got = teacher_forced(lambda p, t: ex.run(prep.compiler.compile(p, int(t)))["logits"].copy(), prep.tokens)
        return compare(prep.reference, got, prep.tokens, prep.n_prompt)[0]

    def cost_of(ov: dict) -> dict:
        s = simulate(model.spec, load_config(hw, {**overrides, **ov}), prompt_len, gen_len, mode, strategy).summary
        return {"latency_s_per_token": s["latency_s_per_token_mean"], "energy_j_per_token": s["energy_j_per_token_mean"],
                "asic_energy_j_per_token": sum(s["breakdown_energy_j"]["asic"].values()),
                "tokens_per_s": s["tokens_per_s"]}

    rows = run_sweep(sweep_points(grid, base), accuracy_of, cost_of, progress)
    facts = {"model": model.spec.name, "weights": model.source, "tokens": len(prep.tokens),
             "prompt_tokens": prep.n_prompt, "timing_prompt_len": prompt_len, "timing_gen_len": gen_len,
             "mode": mode, "strategy": strategy, "overrides": overrides, "grid": grid}
    return rows, base, facts
