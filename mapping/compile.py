"""Compile one decode step (the token at position p) into a Program of PIM, ASIC and I/O ops.

The step, per layer: norm -> QKV GEMV -> (rotary) -> K/V writes -> scores (q . K) -> scale ->
softmax -> context (p . V) -> output GEMV -> residual -> norm -> MLP GEMVs -> residual; then
the final norm, the LM head GEMV and argmax. Every GEMV runs on all banks of all channels.

Issue order, `pim-gpt` (default): per input tile, fill the global buffer once, then sweep all
output rows of that tile (one row pass each, partial sums read after it, reduced in the ASIC);
LLaMA's q/k/v and gate/up share one fill; heads are concatenated in rows so one row pass
serves all its heads (the MAC registers are read after each head's columns), several positions
share a row when a position's K is short. `naive`: per output block and input tile, fill the
global buffer and make one row pass, one matrix and one head at a time, rows left to the
controller. `row_commands` (kernels.py) chooses how rows are opened and closed.

Ops are fine grained: a GEMV op covers one input tile of about one tile's worth of outputs, and
the ASIC ops after it (reduce, bias, activation, residual) work on the same chunk, so a system
model can overlap them with the next chunk's row passes. Only attention depends on p: the rest
of the step is built once per (model, hardware, strategy, context) and reused, op ids included.
"""
from __future__ import annotations

import functools
import gc
import math
from dataclasses import dataclass, replace

import numpy as np

from hw_configs.isa import F_BANK, F_CHMASK, F_OPID, F_ROW, N_FIELDS, OP_PRECHARGE, column, precharge, raw, simple
from hw_configs.program import AsicOp, DataBinding, IoOp, PimOp, Program
from workloads.spec import ModelSpec

from .device import MappingError
from .kernels import ROW_COMMANDS, Cmds, lane_grid, select_reads, sweep, tile_gb_index
from .placement import GemvRegion, KRegion, Placement, VRegion, place

EMPTY_INDEX = np.zeros((0, 1), np.int32)
NO_POSITION = 1 << 30  # read lanes that carry no position (beyond any context)
ROLE_TAGS = {"qkv": "qkv", "attn_out": "out_proj", "ffn_up": "mlp", "ffn_down": "mlp", "lm_head": "lm_head"}


def ref(name: str, lo: int | None = None, hi: int | None = None) -> str:
    """A tensor reference, optionally an element slice: `name[lo:hi]`."""
    return name if lo is None else f"{name}[{lo}:{hi}]"


def _new(cls, **values):
    """Build a frozen op without dataclass __init__ (the per-step hot path builds ~10^3 ops)."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


def _pim_op(id, name, tag, deps, chmask, instructions, macs, kind, layer, reads, writes, data, meta=None):
    return _new(PimOp, id=id, name=name, tag=tag, deps=deps, chmask=chmask, instructions=instructions, macs=macs,
                kind=kind, layer=layer, reads=reads, writes=writes, meta=meta or {}, data=data)


def _asic_op(id, name, tag, deps, kind, elements, layer, reads, writes, rows=1, inputs=1, meta=None):
    return _new(AsicOp, id=id, name=name, tag=tag, deps=deps, kind=kind, elements=elements, rows=rows,
                inputs=inputs, layer=layer, reads=reads, writes=writes, meta=meta or {})


def _with_opid(ins: np.ndarray, opid: int) -> np.ndarray:
    """The block as an int64 [n, 9] array (a copy unless it already is one) with OPID set."""
    ins = np.asarray(ins, np.int64).reshape(-1, N_FIELDS)
    ins[:, F_OPID] = opid
    return ins


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _offset(index: np.ndarray, off: int) -> np.ndarray:
    """Shift valid (>= 0) indices by `off`, keep -1."""
    return np.where(index >= 0, index + off, -1).astype(np.int32)


@dataclass
class _Dyn:
    """A per-position op slot: kind, layer, index within its kind, and its fixed dependencies."""

    kind: str
    layer: int
    index: int
    deps: tuple[int, ...]


class StepCompiler:
    """Compiles decode steps of one model on one device with one strategy; reuse it across positions."""

    def __init__(self, spec: ModelSpec, hw, strategy: str = "pim-gpt", context: int | None = None,
                 row_commands: str | None = None, placement: Placement | None = None):
        self.spec = spec
        self.placement = placement if placement is not None else place(spec, hw, strategy, context)
        self.strategy = self.placement.strategy
        self.dev = self.placement.dev
        self.mode = row_commands or ("explicit" if self.strategy == "pim-gpt" else "controller")
        if self.mode not in ROW_COMMANDS:
            raise MappingError(f"unknown row_commands '{self.mode}'; expected one of {', '.join(ROW_COMMANDS)}")
        self.cmds = Cmds.of(self.dev)
        self.context = self.placement.context
        self._ops: list = []
        self._dyn: dict[int, _Dyn] = {}
        self._prod: dict[str, list[tuple[int, int, int]]] = {}
        self._tens: dict[str, int] = {}
        self._chan, self._lane = lane_grid(self.dev)
        self._kr0: KRegion = self.placement.k_region(0)
        self._vr0: VRegion = self.placement.v_region(0)
        self._templates: dict = {}
        self._lru: dict = {}
        self._build()

    # ------------------------------------------------------------------ skeleton helpers
    def _next_id(self) -> int:
        return len(self._ops)

    def _deps(self, tensor: str, lo: int = 0, hi: int | None = None) -> list[int]:
        hi = self._tens.get(tensor, 0) if hi is None else hi
        return [i for a, b, i in self._prod.get(tensor, ()) if a < hi and lo < b]

    def _produce(self, tensor: str, lo: int, hi: int, op_id: int) -> None:
        self._prod.setdefault(tensor, []).append((lo, hi, op_id))

    def _tensor(self, name: str, n: int) -> str:
        self._tens[name] = n
        return name

    def _asic(self, name, tag, kind, elements, reads, writes, deps, layer=-1, rows=1, inputs=1, meta=None,
              produces=()) -> int:
        i = self._next_id()
        self._ops.append(_asic_op(i, name, tag, tuple(sorted(set(deps))), kind, elements, layer, tuple(reads),
                                  tuple(writes), rows, inputs, meta))
        for t, lo, hi in produces:
            self._produce(t, lo, hi, i)
        return i

    def _pim(self, name, tag, deps, chmask, ins, macs, kind, layer, reads, writes, data, produces=(), meta=None) -> int:
        i = self._next_id()
        self._ops.append(_pim_op(i, name, tag, tuple(sorted(set(deps))), chmask, _with_opid(ins, i), macs, kind,
                                 layer, tuple(reads), tuple(writes), data, meta))
        for t, lo, hi in produces:
            self._produce(t, lo, hi, i)
        return i

    def _slot(self, kind: str, layer: int, index: int, deps, produces=()) -> int:
        i = self._next_id()
        self._ops.append(None)
        self._dyn[i] = _Dyn(kind, layer, index, tuple(sorted(set(deps))))
        for t, lo, hi in produces:
            self._produce(t, lo, hi, i)
        return i

    # ------------------------------------------------------------------ GEMV
    def _gemv(self, layer: int, role: str, x: str, out: str, bias: str | None) -> None:
        """All PIM and ASIC ops of one GEMV group: out = W @ x (+ bias), chunked."""
        names = self.placement.lm_head if role == "lm_head" else self.placement.layer_regions[layer][role]
        regs = [self.placement.region(n) for n in names]
        n_group = sum(r.n_out for r in regs)
        n_tiles = regs[0].n_tiles
        summed = self._tensor(f"{out}.sum" if bias else out, n_group)
        self._tensor(out, n_group)
        acc_t = self._tensor(f"{out}.part", n_tiles * n_group) if n_tiles > 1 else summed
        chunks, off = [], 0
        for reg in regs:
            chunks += self._gemv_region(reg, layer, role, x, acc_t, off, n_group)
            off += reg.n_out
        tag = ROLE_TAGS[role]
        for lo, hi, pids in chunks:
            last = pids
            if n_tiles > 1:
                parts = [ref(acc_t, k * n_group + lo, k * n_group + hi) for k in range(n_tiles)]
                last = [self._asic(f"{out}.reduce[{lo}:{hi}]", "reductions", "reduce", hi - lo, parts,
                                   [ref(summed, lo, hi)], pids, layer, inputs=n_tiles,
                                   produces=() if bias else [(summed, lo, hi)])]
            if bias:
                last = [self._asic(f"{out}.bias[{lo}:{hi}]", tag, "bias_add", hi - lo,
                                   [ref(summed, lo, hi), ref(f"param:{bias}", lo, hi)], [ref(out, lo, hi)], last,
                                   layer, inputs=2)]
                self._produce(out, lo, hi, last[0])
            elif n_tiles == 1:
                for p in pids:
                    self._produce(out, lo, hi, p)

    def _gemv_plan(self, reg: GemvRegion, off: int, n_group: int) -> list[dict]:
        """The PIM ops of one GEMV region with rows relative to its base row, built once per
        shape and shared by every layer (index arrays included): per op the instructions, the
        global-buffer fill, the read destinations, useful MACs, the input range it reads and its
        (tile, chunk) place."""
        key = ("gemv", self.strategy, reg.n_out, reg.n_in, reg.slots, off, n_group)
        if key in self._templates:
            return self._templates[key]
        reg = replace(reg, name="", members=(), base_row=0)
        build = self._plan_tiles if self.strategy == "pim-gpt" else self._plan_blocks
        plan = build(reg, off, n_group)
        for op in plan:
            op["rel"] = ((op["ins"][:, 0] != OP_PRECHARGE) & (op["ins"][:, F_ROW] >= 0)).astype(np.int64)
        self._templates[key] = plan
        return plan

    def _plan_tiles(self, reg: GemvRegion, off: int, n_group: int) -> list[dict]:
        """pim-gpt: tile-major; one fill per tile, chunks of row blocks per op."""
        dev, mode, cmds = self.dev, self.mode, self.cmds
        L, T, K, slots = dev.lanes, dev.tile_elems, reg.n_tiles, reg.slots
        cb = max(1, T // (L * slots))
        n_chunks = _cdiv(reg.n_row_blocks, cb)
        span = cb * slots * L
        plan = []
        for k in range(K):
            tl, tc = reg.tile_len(k), reg.tile_cols(k)
            gb = tile_gb_index(dev, k * T, tl, tc, copies=slots)
            for c in range(n_chunks):
                rb = np.arange(c * cb, min(reg.n_row_blocks, (c + 1) * cb))
                q = rb[:, None] * slots + np.arange(slots)[None, :]            # [R, slots] blocks
                ncols = np.where(q < reg.n_blocks, tc, 0)
                col0 = np.broadcast_to(reg.col0(q), q.shape)
                masks = np.full(len(rb), dev.all_mask, np.int64)
                gbn = np.zeros(len(rb), np.int64)
                if c == 0:
                    gbn[0] = slots * tc
                ins = sweep(dev, cmds, mode, reg.row(rb * slots, k), masks, col0, ncols, gb_ncols=gbn)
                j = q[:, :, None, None] * L + self._lane[None, None]           # [R, slots, C, B]
                acc = np.where(j < reg.n_out, (k * n_group if K > 1 else 0) + off + j, -1)
                plan.append({"name": f"t{k}.c{c}", "tile": k, "chunk": c, "ins": ins,
                             "gb": gb if c == 0 else EMPTY_INDEX, "acc": select_reads(dev, masks, ncols, acc),
                             "macs": int(np.clip(reg.n_out - q * L, 0, L).sum()) * tl, "x": (k * T, k * T + tl),
                             "out": (off + c * span, off + min(reg.n_out, (c + 1) * span))})
        return plan

    def _plan_blocks(self, reg: GemvRegion, off: int, n_group: int) -> list[dict]:
        """naive: output-block major; every row pass fills the global buffer with its tile."""
        dev, mode, cmds = self.dev, self.mode, self.cmds
        L, T, K = dev.lanes, dev.tile_elems, reg.n_tiles
        cb = max(1, T // L)
        gbk = [tile_gb_index(dev, k * T, reg.tile_len(k), reg.tile_cols(k)) for k in range(K)]
        plan = []
        for c in range(_cdiv(reg.n_blocks, cb)):
            qs = np.arange(c * cb, min(reg.n_blocks, (c + 1) * cb))
            q = np.repeat(qs, K)
            k = np.tile(np.arange(K), len(qs))
            tcols = np.array([reg.tile_cols(t) for t in range(K)])[k]
            masks = np.full(len(q), dev.all_mask, np.int64)
            ncols = tcols[:, None]
            ins = sweep(dev, cmds, mode, reg.row(q, k), masks, np.zeros_like(ncols), ncols, gb_ncols=tcols)
            j = q[:, None, None, None] * L + self._lane[None, None]
            acc = np.where(j < reg.n_out, (k[:, None, None, None] * n_group if K > 1 else 0) + off + j, -1)
            plan.append({"name": f"b{c}", "tile": -1, "chunk": c, "ins": ins,
                         "gb": np.concatenate([gbk[t] for t in k]), "acc": select_reads(dev, masks, ncols, acc),
                         "macs": int(np.clip(reg.n_out - qs * L, 0, L).sum()) * reg.n_in, "x": (0, reg.n_in),
                         "out": (off + int(qs[0]) * L, off + min(reg.n_out, (int(qs[-1]) + 1) * L))})
        return plan

    def _gemv_region(self, reg: GemvRegion, layer, role, x, acc_t, off, n_group):
        """The region's ops from its shape plan: rows shifted to the region, data bound to x.
        Returns (output range, producer op ids) per output chunk."""
        dev = self.dev
        ids: dict[tuple[int, int], int] = {}
        chunks: dict[tuple[int, int], list[int]] = {}
        for op in self._gemv_plan(reg, off, n_group):
            k, c = op["tile"], op["chunk"]
            deps = self._deps(x, *op["x"])
            if k >= 0 and c > 0:
                deps.append(ids[k, c - 1])          # the global buffer filled by chunk 0
            elif k > 0:
                deps.append(ids[k - 1, max(cc for kk, cc in ids if kk == k - 1)])  # last reader of the old fill
            ins = op["ins"].copy()
            ins[:, F_ROW] += op["rel"] * reg.base_row
            data = DataBinding(gb_src=x, gb_index=op["gb"], acc_dst=acc_t, acc_index=op["acc"])
            i = self._pim(f"{reg.name}.{op['name']}", ROLE_TAGS[role], deps, dev.all_mask, ins, op["macs"], "gemv",
                          layer, [x], [acc_t], data)
            ids[k, c] = i
            chunks.setdefault(op["out"], []).append(i)
        return [(lo, hi, pids) for (lo, hi), pids in chunks.items()]

    # ------------------------------------------------------------------ elementwise helpers
    def _chunks_of(self, tensor: str) -> list[tuple[int, int]]:
        return sorted({(a, b) for a, b, _ in self._prod[tensor]})

    def _elementwise(self, name, tag, kind, layer, out, srcs, ranges, meta=None) -> None:
        """out[lo:hi] = kind(srcs[k][off_k + lo : off_k + hi]) per range; srcs = [(tensor, offset)]."""
        for lo, hi in ranges:
            reads = [ref(t, o + lo, o + hi) for t, o in srcs]
            deps = [d for t, o in srcs if not t.startswith("param:") for d in self._deps(t, o + lo, o + hi)]
            self._asic(f"{name}[{lo}:{hi}]", tag, kind, hi - lo, reads, [ref(out, lo, hi)], deps, layer,
                       inputs=len(srcs), meta=meta, produces=[(out, lo, hi)])

    def _norm(self, layer, name, x, out, weight, bias=None) -> None:
        d, spec = self.spec.d_model, self.spec
        kind = "layernorm" if spec.family == "gpt" else "rmsnorm"
        reads = [x, f"param:{weight}"] + ([f"param:{bias}"] if bias else [])
        self._tensor(out, d)
        self._asic(name, "norms", kind, d, reads, [out], self._deps(x), layer, inputs=len(reads),
                   meta={"eps": spec.norm_eps}, produces=[(out, 0, d)])

    # ------------------------------------------------------------------ the step skeleton
    def _build(self) -> None:
        spec = self.spec
        d, q, kv, ff = spec.d_model, spec.q_dim, spec.kv_dim, spec.d_ff
        gpt = spec.family == "gpt"
        x0 = self._tensor("L0.x", d)
        if gpt:
            self._tensor("emb.tok", d)
            self._tensor("emb.pos", d)
            self._slot("tok_read", -1, 0, [], [("emb.tok", 0, d)])
            self._slot("pos_read", -1, 0, [], [("emb.pos", 0, d)])
            self._elementwise("embed.add", "embedding", "residual_add", -1, x0, [("emb.tok", 0), ("emb.pos", 0)],
                              [(0, d)])
        else:
            self._slot("tok_read", -1, 0, [], [(x0, 0, d)])
        for layer in range(spec.n_layers):
            self._layer(layer, gpt, d, q, kv, ff)
        x = f"L{spec.n_layers}.x"
        if gpt:
            self._norm(-1, "final_norm", x, "hf", "transformer.ln_f.weight", "transformer.ln_f.bias")
        else:
            self._norm(-1, "final_norm", x, "hf", "model.norm.weight")
        self._gemv(-1, "lm_head", "hf", "logits", None)
        self._tensor("token", 1)
        am = self._asic("argmax", "sampling", "argmax", spec.vocab_size, ["logits"], ["token"], self._deps("logits"),
                        produces=[("token", 0, 1)])
        i = self._next_id()
        self._ops.append(_new(IoOp, id=i, name="token_out", tag="sampling", deps=(am,), nbytes=4,
                              direction="asic_to_host", chmask=0, layer=-1, reads=("token",), writes=(), meta={}))

    def _layer(self, l: int, gpt: bool, d: int, q: int, kv: int, ff: int) -> None:
        pre = self.spec.layer_prefix(l)
        x, x2, xn = f"L{l}.x", f"L{l}.x2", self._tensor(f"L{l + 1}.x", d)
        self._tensor(x2, d)
        if gpt:
            self._norm(l, f"L{l}.ln_1", x, f"L{l}.h1", pre + "ln_1.weight", pre + "ln_1.bias")
        else:
            self._norm(l, f"L{l}.input_norm", x, f"L{l}.h1", pre + "input_layernorm.weight")
        qkv = f"L{l}.qkv"
        self._gemv(l, "qkv", f"L{l}.h1", qkv, pre + "attn.c_attn.bias" if gpt else None)
        if gpt:
            q_ref, k_ref = (qkv, 0), (qkv, q)
        else:
            for part, off, n, heads in (("q", 0, q, self.spec.n_heads), ("k", q, kv, self.spec.n_kv_heads)):
                t = self._tensor(f"L{l}.{part}", n)
                self._asic(f"L{l}.rotary_{part}", "qkv", "rotary", n, [ref(qkv, off, off + n)], [t],
                           self._deps(qkv, off, off + n), l,
                           meta={"theta": self.spec.rope_theta, "d_head": self.spec.d_head, "heads": heads},
                           produces=[(t, 0, n)])
            q_ref, k_ref = (f"L{l}.q", 0), (f"L{l}.k", 0)
        v_ref = (qkv, q + kv)
        self._attention(l, q_ref, k_ref, v_ref)
        o = f"L{l}.o"
        self._gemv(l, "attn_out", f"L{l}.ctx", o, pre + "attn.c_proj.bias" if gpt else None)
        self._elementwise(f"L{l}.residual_1", "residual", "residual_add", l, x2, [(x, 0), (o, 0)], self._chunks_of(o))
        if gpt:
            self._norm(l, f"L{l}.ln_2", x2, f"L{l}.h2", pre + "ln_2.weight", pre + "ln_2.bias")
        else:
            self._norm(l, f"L{l}.post_attention_norm", x2, f"L{l}.h2", pre + "post_attention_layernorm.weight")
        up, a = f"L{l}.up", self._tensor(f"L{l}.a", ff)
        self._gemv(l, "ffn_up", f"L{l}.h2", up, pre + "mlp.c_fc.bias" if gpt else None)
        if gpt:
            self._elementwise(f"L{l}.gelu", "mlp", "gelu", l, a, [(up, 0)], self._chunks_of(up))
        else:
            g = self._tensor(f"L{l}.g", ff)
            gate_ranges = sorted({(lo, min(hi, ff)) for lo, hi in self._chunks_of(up) if lo < ff})
            self._elementwise(f"L{l}.silu", "mlp", "silu", l, g, [(up, 0)], gate_ranges)
            self._elementwise(f"L{l}.mul", "mlp", "mul", l, a, [(g, 0), (up, ff)], gate_ranges)
        dn = f"L{l}.d"
        self._gemv(l, "ffn_down", a, dn, pre + "mlp.c_proj.bias" if gpt else None)
        self._elementwise(f"L{l}.residual_2", "residual", "residual_add", l, xn, [(x2, 0), (dn, 0)],
                          self._chunks_of(dn))

    # ------------------------------------------------------------------ attention slots
    def _score_sweeps(self) -> list[tuple]:
        """pim-gpt: (group member i, K row t); naive: (query head h, piece) -- one op each."""
        spec, kr = self.spec, self._kr0
        if self.strategy == "pim-gpt":
            return [(i, t) for i in range(spec.group_size) for t in range(kr.rows_per_position)]
        return [(h, p) for h in range(spec.n_heads) for p in range(kr.pieces)]

    def _context_channels(self) -> list[int]:
        vr = self._vr0
        return [c for c in range(self.dev.channels) if vr.unit_range(c)[1] > vr.unit_range(c)[0]]

    def _attention(self, l: int, q_ref, k_ref, v_ref) -> None:
        spec, kr, vr = self.spec, self._kr0, self._vr0
        q = spec.q_dim
        kw = self._slot("k_write", l, 0, self._deps(k_ref[0], k_ref[1], k_ref[1] + spec.kv_dim))
        vw = self._slot("v_write", l, 0, self._deps(v_ref[0], v_ref[1], v_ref[1] + spec.kv_dim))
        q_deps = self._deps(q_ref[0], q_ref[1], q_ref[1] + q)
        scores = [self._slot("scores", l, 0, q_deps + [kw])]
        if kr.pieces > 1:
            scores = [self._slot("scores_reduce", l, 0, scores)]
        sc = self._slot("scale", l, 0, scores)
        sm = self._slot("softmax", l, 0, [sc])
        ctx = f"L{l}.ctx"
        self._tensor(ctx, q)
        partial = vr.n_chunks > 1
        if partial:
            self._tensor(f"{ctx}.part", vr.n_chunks * q)
        ranges = [r for c in self._context_channels() for r in self._context_ranges(ctx, c)]
        cops = [self._slot("context", l, 0, [sm, vw], () if partial else ranges)]
        if partial:
            self._slot("context_reduce", l, 0, cops, [(ctx, 0, q)])
        for part in ("s", "sc", "p"):
            self._tensor(f"L{l}.{part}", 0)  # length set per position

    def _context_ranges(self, ctx: str, c: int):
        """Elements of the context a channel's op writes: (ctx, lo, hi) per unit and query head."""
        spec, vr, B = self.spec, self._vr0, self.dev.banks
        G, dh = spec.group_size, spec.d_head
        lo_u, hi_u = vr.unit_range(c)
        out = []
        for u in range(lo_u, hi_u):
            g, dg = divmod(u, vr.groups_per_head)
            for i in range(G):
                h = g * G + i
                out.append((ctx, h * dh + dg * B, h * dh + min(dh, (dg + 1) * B)))
        return out

    # ------------------------------------------------------------------ per-position templates
    @functools.cached_property
    def _kseg(self) -> dict[int, list[tuple]]:
        """K row t of a position -> the head pieces it holds (KRegion.segments())."""
        segs = self._kr0.segments()
        return {t: [s for s in segs if s[0] == t] for t in range(self._kr0.rows_per_position)}

    def _scores_template(self, n_blocks: int, last_channels: int):
        """Instructions (layer 0 rows) and read/fill maps of a layer's score sweeps for `n_blocks`
        position blocks in use, the last row-block's first block on `last_channels` channels."""
        key = ("scores", n_blocks, last_channels)
        if key in self._templates:
            return self._templates[key]
        dev, spec, kr = self.dev, self.spec, self._kr0
        L, E, G, dh, H = dev.lanes, dev.col_elems, spec.group_size, spec.d_head, spec.n_heads
        pc = kr.position_cols if kr.rows_per_position == 1 else 0
        out = []
        for a, b in self._score_sweeps():
            if self.strategy == "pim-gpt":
                i, t = a, b
                segs = self._kseg[t]
                slots = kr.slots
                fill_once = True
            else:
                h, piece = a, b
                g = h // G
                segs = [s for s in kr.segments() if s[3] == g and (s[4] // (dev.tile_cols * E)) == piece]
                t, slots, fill_once, i = segs[0][0], 1, False, h % G
            n_rb = _cdiv(n_blocks, slots)
            rb = np.arange(n_rb)
            sl = np.repeat(np.arange(slots), len(segs))                     # [NS] slot of each segment
            si = np.tile(np.arange(len(segs)), slots)                       # [NS] head piece of each segment
            seg_col = np.array([s[1] for s in segs])[si] + sl * pc
            seg_n = np.array([s[2] for s in segs])[si]
            seg_g = np.array([s[3] for s in segs])[si]
            seg_e0 = np.array([s[4] for s in segs])[si]
            qb = rb[:, None] * slots + sl[None, :]                          # [R, NS] position block
            ncols = np.where(qb < n_blocks, seg_n[None, :], 0)
            col0 = np.broadcast_to(seg_col[None, :], ncols.shape)
            masks = np.full(n_rb, dev.all_mask, np.int64)
            masks[-1] = (1 << last_channels) - 1
            rows = kr.row(rb * slots, t)
            # global buffer: q of this sweep's heads at their columns (per slot copy)
            used_slots = min(slots, n_blocks) if fill_once else 1
            n_gb = int((seg_col + seg_n)[: used_slots * len(segs)].max())
            gb_h = np.full((n_gb, E), -1)
            gb_e = np.full((n_gb, E), -1)
            for k in range(used_slots * len(segs)):
                cc = np.arange(seg_n[k])[:, None] * E + np.arange(E)[None, :] + seg_e0[k]   # head elements
                piece_end = min(dh, seg_e0[k] + seg_n[k] * E)
                gb_h[seg_col[k]:seg_col[k] + seg_n[k]] = np.where(cc < piece_end, seg_g[k] * G + i, -1)
                gb_e[seg_col[k]:seg_col[k] + seg_n[k]] = np.where(cc < piece_end, cc, -1)
            gb_q = np.where(gb_h >= 0, gb_h * dh + gb_e, -1).astype(np.int32)
            if fill_once:
                gbn = np.zeros(n_rb, np.int64)
                gbn[0] = n_gb
                gb_index, gb_col0 = gb_q, None
            else:
                gbn = np.full(n_rb, n_gb - seg_col[0], np.int64)
                gb_index = np.tile(gb_q[seg_col[0]:], (n_rb, 1))
                gb_col0 = np.full(n_rb, seg_col[0], np.int64)
            ins = sweep(dev, self.cmds, self.mode, rows, masks, col0, ncols, gb_ncols=gbn, gb_col0=gb_col0)
            s_pos = qb[:, :, None, None] * L + self._lane[None, None]       # [R, NS, C, B]
            s_pos = np.where(ncols[:, :, None, None] > 0, s_pos, NO_POSITION)
            piece = seg_e0 // (dev.tile_cols * E)
            hp = np.broadcast_to((piece * H + seg_g * G + i)[None, :, None, None], s_pos.shape)
            seg_elems = np.minimum(seg_n * E, dh - seg_e0)
            out.append({"ins": ins, "acc_s": select_reads(dev, masks, ncols, s_pos),
                        "acc_hp": select_reads(dev, masks, ncols, hp), "gb_index": gb_index,
                        "macs_per_position": int(seg_elems[: len(segs)].sum())})
        ins = np.concatenate([o["ins"] for o in out])  # every sweep of a layer in one op
        merged = {"ins": ins, "rel": (ins[:, 0] != OP_PRECHARGE) & (ins[:, F_ROW] >= 0),
                  "macs_per_position": sum(o["macs_per_position"] for o in out)}
        for name in ("acc_s", "acc_hp", "gb_index"):
            merged[name] = np.concatenate([o[name] for o in out])
        self._templates[key] = [merged]
        return [merged]

    def _context_template(self, n_chunks: int, last_cols: int):
        """Context instructions (layer 0 rows) and fill/read maps for `n_chunks` position chunks
        in use, the last one `last_cols` columns wide: one merged op for all channels."""
        key = ("context", n_chunks, last_cols)
        if key not in self._templates:
            build = self._context_lockstep if self.strategy == "pim-gpt" else self._context_per_channel
            self._templates[key] = build(n_chunks, last_cols)
        return self._templates[key]

    def _context_lockstep(self, n_chunks: int, last_cols: int):
        """pim-gpt: unit slot u is the same row index on every channel, so all channels make
        their row pass of slot u together (one MAC16 and one RDMAC16 for all); a channel
        refills its global buffer only where its head (or the chunk) changes."""
        dev, spec, vr = self.dev, self.spec, self._vr0
        E, B, G, dh, T = dev.col_elems, dev.banks, spec.group_size, spec.d_head, dev.tile_elems
        partial, gph = vr.n_chunks > 1, vr.groups_per_head
        chans = self._context_channels()
        starts = {c: vr.unit_range(c)[0] for c in chans}
        count = {c: vr.unit_range(c)[1] - starts[c] for c in chans}
        rows, acc, gb_s, gb_h = [], [], [], []
        mac_n = 0
        for i in range(G):
            for k in range(n_chunks):
                cols = dev.tile_cols if k < n_chunks - 1 else last_cols
                for u in range(vr.slots):
                    on = [c for c in chans if u < count[c]]
                    mask = sum(1 << c for c in on)
                    row = int(vr.row(u, k))
                    if self.mode == "explicit":
                        rows.append(raw(mask, self.cmds.act16, row=row))
                    for c in on:
                        g = (starts[c] + u) // gph
                        if u == 0 or (starts[c] + u - 1) // gph != g:
                            rows.append(simple(1 << c, self.cmds.wrgb, count=cols))
                            gb_s.append(k * T + np.arange(cols * E).reshape(cols, E))
                            gb_h.append(np.full((cols, E), g * G + i))
                    rows.append(column(mask, self.cmds.mac16, row=row, count=cols))
                    if self.mode != "controller":
                        rows.append(precharge(mask))
                    rows.append(simple(mask, self.cmds.rdmac16, blocking=True))
                    for c in on:
                        unit = starts[c] + u
                        d = (unit % gph) * B + np.arange(B)
                        h = (unit // gph) * G + i
                        acc.append(np.where(d < dh, (k * spec.q_dim if partial else 0) + h * dh + d, -1))
                        if i == 0 and k == 0:
                            mac_n += int((d < dh).sum())
        ins = np.array(rows, np.int64)
        return [{"ins": ins, "rel": (ins[:, 0] != OP_PRECHARGE) & (ins[:, F_ROW] >= 0),
                 "acc_index": np.array(acc, np.int32), "gb_s": np.concatenate(gb_s), "gb_h": np.concatenate(gb_h),
                 "macs_per_position": mac_n * G}]

    def _context_per_channel(self, n_chunks: int, last_cols: int):
        """naive: each channel on its own, one unit (and one global-buffer fill) per row pass."""
        dev, spec, vr = self.dev, self.spec, self._vr0
        E, B, G, dh, T, tcols = dev.col_elems, dev.banks, spec.group_size, spec.d_head, dev.tile_elems, dev.tile_cols
        partial = vr.n_chunks > 1
        chunk_cols = np.full(n_chunks, tcols)
        chunk_cols[-1] = last_cols
        out = []
        for c in self._context_channels():
            lo_u, hi_u = vr.unit_range(c)
            units = np.arange(lo_u, hi_u)
            g_of = units // vr.groups_per_head
            # rows in issue order: for each member i, kv head g, chunk k: that head's units on c
            r_unit, r_h, r_k, r_fill = [], [], [], []
            for i in range(G):
                for g in np.unique(g_of):
                    us = units[g_of == g]
                    for k in range(n_chunks):
                        r_unit.append(us)
                        r_h.append(np.full(len(us), g * G + i))
                        r_k.append(np.full(len(us), k))
                        fill = np.ones(len(us), bool)  # a global-buffer fill per row pass
                        r_fill.append(fill)
            unit, h, k, fill = (np.concatenate(x) for x in (r_unit, r_h, r_k, r_fill))
            cols = chunk_cols[k]
            ncols = cols[:, None]
            masks = np.full(len(unit), 1 << c, np.int64)
            ins = sweep(dev, self.cmds, self.mode, vr.row(unit - lo_u, k), masks, np.zeros_like(ncols), ncols,
                        gb_ncols=np.where(fill, cols, 0))
            dvals = (unit % vr.groups_per_head)[:, None] * B + np.arange(B)[None, :]            # [R, B]
            acc = np.where(dvals < dh, (k[:, None] * spec.q_dim if partial else 0) + h[:, None] * dh + dvals, -1)
            f = np.flatnonzero(fill)
            gb_s = np.concatenate([k[r] * T + np.arange(cols[r] * E).reshape(cols[r], E) for r in f])
            gb_h = np.concatenate([np.full((cols[r], E), h[r]) for r in f])
            n_d = int(np.minimum(B, dh - (units % vr.groups_per_head) * B).sum())
            out.append({"ins": ins, "acc_index": acc.astype(np.int32), "gb_s": gb_s, "gb_h": gb_h,
                        "macs_per_position": n_d * G})
        ins = np.concatenate([o["ins"] for o in out])
        merged = {"ins": ins, "rel": (ins[:, 0] != OP_PRECHARGE) & (ins[:, F_ROW] >= 0),
                  "macs_per_position": sum(o["macs_per_position"] for o in out)}
        for name in ("acc_index", "gb_s", "gb_h"):
            merged[name] = np.concatenate([o[name] for o in out])
        return [merged]

    @functools.cached_property
    def _k_rows(self) -> list[tuple[int, int, int, np.ndarray]]:
        """Per K row t of a position: (t, first column, columns, source index [columns, E])."""
        spec, E = self.spec, self.dev.col_elems
        out = []
        for t, segs in self._kseg.items():
            cmin = min(s[1] for s in segs)
            cmax = max(s[1] + s[2] for s in segs)
            wi = np.full((cmax - cmin, E), -1, np.int64)
            for _, c0, n, g, e0 in segs:
                e = np.arange(n)[:, None] * E + np.arange(E)[None, :] + e0
                end = min(spec.d_head, e0 + n * E)
                wi[c0 - cmin:c0 - cmin + n] = np.where(e < end, g * spec.d_head + e, -1)
            out.append((t, cmin, cmax - cmin, wi))
        return out

    def _k_write(self, p: int):
        """Instructions (layer 0 rows) writing K of position p, their source indices, channel mask."""
        kr = self._kr0
        ch, bank, block = (int(v) for v in kr.lane_of(p))
        shift = (block % kr.slots) * (kr.position_cols if kr.rows_per_position == 1 else 0)
        rows = [column(1 << ch, self.cmds.wr, row=int(kr.row(block, t)), count=n, col=c0 + shift, bank=bank)
                for t, c0, n, _ in self._k_rows]
        if self.mode == "explicit":
            rows.append(precharge(1 << ch))
        return np.array(rows, np.int64), self._k_index, 1 << ch

    @functools.cached_property
    def _k_index(self) -> np.ndarray:
        return np.concatenate([wi for *_, wi in self._k_rows])

    @functools.cached_property
    def _v_plan(self):
        """Position-independent part of a V write: instruction grid (layer 0, chunk 0, column 0),
        which rows are WRs, the element each WR carries on each of its channels, channel mask.

        Units at the same slot on different channels share a row and, per bank, a column, so
        one instruction writes them all (each channel its own element: the binding holds one row
        per channel, channels ascending); per slot: [ACT16,] one WR per bank, [PRE]."""
        dev, vr, spec = self.dev, self._vr0, self.spec
        B = dev.banks
        units = np.arange(vr.n_units)
        ch, slot = vr.unit_channel(units)
        d = (units % vr.groups_per_head)[:, None] * B + np.arange(B)[None, :]      # [U, B]
        g = (units // vr.groups_per_head)[:, None]
        elem = g * spec.d_head + d                                                 # [U, B]
        keep = d < spec.d_head
        rows, is_wr, vals = [], [], []
        for s in range(int(slot.max()) + 1 if len(units) else 0):
            us = units[slot == s]                       # channels ascending (units are by channel)
            slot_mask = int(np.bitwise_or.reduce(1 << ch[us]))
            row = int(vr.row(s, 0))
            if self.mode == "explicit":
                rows.append(raw(slot_mask, self.cmds.act16, row=row))
                is_wr.append(False)
            for b in range(B):
                on = us[keep[us, b]]
                if not len(on):
                    continue
                rows.append(column(int(np.bitwise_or.reduce(1 << ch[on])), self.cmds.wr, row=row, count=1, col=0,
                                   bank=b))
                is_wr.append(True)
                vals.append(elem[on, b])
            if self.mode == "explicit":
                rows.append(precharge(slot_mask))
                is_wr.append(False)
        ins = np.array(rows, np.int64).reshape(-1, N_FIELDS)
        vals = np.concatenate(vals) if vals else np.zeros(0, np.int64)
        return ins, np.array(is_wr, bool), vals, int(np.bitwise_or.reduce(1 << ch)) if len(units) else 0

    def _v_write(self, p: int):
        """Instructions (layer 0 rows) writing V of position p (one masked column per bank and slot)."""
        ins, is_wr, _, mask = self._v_plan
        chunk, col = divmod(p, self.dev.tile_elems)
        out = ins.copy()
        out[out[:, 0] != OP_PRECHARGE, F_ROW] += chunk
        out[is_wr, 5] = col // self.dev.col_elems
        return out, mask

    def _v_index(self, lane: int) -> np.ndarray:
        key = ("v_index", lane)
        if key not in self._templates:
            _, _, vals, _ = self._v_plan
            wi = np.full((len(vals), self.dev.col_elems), -1, np.int32)
            wi[:, lane] = vals + self.spec.q_dim + self.spec.kv_dim
            self._templates[key] = wi
        return self._templates[key]

    # ------------------------------------------------------------------ compile one position
    @functools.cached_property
    def _layer_slots(self) -> dict[tuple[str, int], list[int]]:
        """(kind, index) -> op id of that slot in every layer (layer order)."""
        out: dict[tuple[str, int], list[int]] = {}
        for i, dyn in self._dyn.items():
            if dyn.layer >= 0:
                out.setdefault((dyn.kind, dyn.index), []).append(i)
        return out

    @functools.cached_property
    def _row_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows from layer 0's K (V) region to every layer's."""
        n = self.spec.n_layers
        k = np.array([self.placement.k_region(l).base_row for l in range(n)]) - self._kr0.base_row
        v = np.array([self.placement.v_region(l).base_row for l in range(n)]) - self._vr0.base_row
        return k, v

    @staticmethod
    def _per_layer(ins: np.ndarray, rel: np.ndarray, offsets: np.ndarray, ids: list[int]) -> np.ndarray:
        """[layers, n, 9]: the layer-0 block with each layer's row offset and op id (read-only)."""
        out = np.empty((len(ids),) + ins.shape, np.int64)
        out[:] = ins
        out[:, :, F_ROW] += rel[None, :] * offsets[:, None]
        out[:, :, F_OPID] = np.asarray(ids)[:, None]
        out.flags.writeable = False
        return out

    def _cached(self, key, build, keep: int = 3):
        """Small LRU for per-layer instruction arrays (they change every 16 positions at most)."""
        cache = self._lru.setdefault(key[0], {})
        if key not in cache:
            if len(cache) >= keep:
                cache.pop(next(iter(cache)))
            cache[key] = build()
        return cache[key]

    @functools.cached_property
    def _static(self) -> dict[str, list[tuple[dict, dict]]]:
        """Per-position op kinds -> per layer: (op fields, data-binding fields) that do not depend
        on the position; compile() adds instructions, counts and index arrays."""
        spec, dev, kr, vr = self.spec, self.dev, self._kr0, self._vr0
        gpt = spec.family == "gpt"
        ctx_mask = sum(1 << c for c in self._context_channels())
        bind0 = {"gb_src": "", "gb_index": None, "acc_dst": "", "acc_index": None, "wr_src": "", "wr_index": None,
                 "rd_dst": "", "rd_index": None}
        out: dict[str, list] = {}
        for (kind, index), ids in self._layer_slots.items():
            rows = []
            for l, i in enumerate(ids):
                f = {"id": i, "deps": self._dyn[i].deps, "layer": l, "meta": {}}
                b = dict(bind0)
                if kind in ("k_write", "v_write"):
                    src = f"L{l}.k" if (kind == "k_write" and not gpt) else f"L{l}.qkv"
                    f.update(name=f"L{l}.{kind}", tag="kv_write", kind="kv_write", reads=(src,), writes=(), macs=0)
                    b["wr_src"] = src
                elif kind == "scores":
                    src = f"L{l}.qkv" if gpt else f"L{l}.q"
                    dst = f"L{l}.s.part" if kr.pieces > 1 else f"L{l}.s"
                    f.update(name=f"L{l}.scores", tag="attention_scores", kind="gemv", reads=(src,),
                             writes=(dst,), chmask=dev.all_mask)
                    b.update(gb_src=src, acc_dst=dst)
                elif kind == "context":
                    dst = f"L{l}.ctx.part" if vr.n_chunks > 1 else f"L{l}.ctx"
                    f.update(name=f"L{l}.context", tag="attention_context", kind="gemv", reads=(f"L{l}.p",),
                             writes=(dst,), chmask=ctx_mask)
                    b.update(gb_src=f"L{l}.p", acc_dst=dst)
                else:  # ASIC ops
                    f.update(name=f"L{l}.{kind}", rows=1, inputs=1, reads=(), writes=())
                    if kind == "scores_reduce":
                        f.update(tag="reductions", kind="reduce", writes=(f"L{l}.s",),
                                 inputs=kr.pieces)
                    elif kind == "scale":
                        f.update(tag="attention_scores", kind="scale", reads=(f"L{l}.s",), writes=(f"L{l}.sc",),
                                 meta={"factor": 1.0 / math.sqrt(spec.d_head)})
                    elif kind == "softmax":
                        f.update(tag="softmax", kind="softmax", reads=(f"L{l}.sc",), writes=(f"L{l}.p",),
                                 rows=spec.n_heads)
                    elif kind == "context_reduce":
                        f.update(tag="reductions", kind="reduce", writes=(f"L{l}.ctx",),
                                 elements=spec.q_dim)
                rows.append((f, b))
            out[kind, index] = rows
        return out

    @functools.cached_property
    def _embed_slots(self) -> list[int]:
        return [i for i, d in self._dyn.items() if d.layer < 0]

    @functools.cached_property
    def _score_tensors(self) -> list[str]:
        names = [f"L{l}.{part}" for l in range(self.spec.n_layers) for part in ("s", "sc", "p")]
        return names

    def compile(self, position: int, token: int = 0) -> Program:
        """The Program of the decode step at `position` (0-based) consuming `token`.

        Assembling a step allocates ~10^3 objects without reference cycles; the cyclic garbage
        collector is paused meanwhile (and restored), which saves a quarter of the time."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._compile(position, token)
        finally:
            if was_enabled:
                gc.enable()

    def _compile(self, position: int, token: int) -> Program:
        spec, dev = self.spec, self.dev
        if not 0 <= position < self.context:
            raise MappingError(f"position {position} out of range 0..{self.context - 1}: the KV cache is "
                               f"reserved for {self.context} positions")
        if not 0 <= token < spec.vocab_size:
            raise MappingError(f"token {token} outside the vocabulary [0, {spec.vocab_size})")
        S = position + 1
        L, T, C, E = dev.lanes, dev.tile_elems, dev.channels, dev.col_elems
        H, q_dim, nl = spec.n_heads, spec.q_dim, spec.n_layers
        kr = self._kr0
        pieces = kr.pieces
        gpt = spec.family == "gpt"
        n_blocks = _cdiv(S, L)
        last_first_block = ((n_blocks - 1) // kr.slots) * kr.slots
        s_key = ("scores", n_blocks, min(C, S - last_first_block * L))
        n_chunks = _cdiv(S, T)
        c_key = ("context", n_chunks, _cdiv(S - (n_chunks - 1) * T, E))
        stm = self._scores_template(*s_key[1:])
        ctm = self._context_template(*c_key[1:])
        k_off, v_off = self._row_offsets
        slots, static = self._layer_slots, self._static
        ops = list(self._ops)
        tensors = dict(self._tens)
        hs = H * S
        tensors.update(dict.fromkeys(self._score_tensors, hs))
        if pieces > 1:
            tensors.update({f"L{l}.s.part": pieces * hs for l in range(nl)})
        for i in self._embed_slots:
            dyn = self._dyn[i]
            ops[i] = self._embedding_read(i, dyn, token if dyn.kind == "tok_read" else position, gpt)
        setattr_ = object.__setattr__
        new = object.__new__

        def build(kind, index, cls, per_layer, **common):
            """Ops of one kind in every layer: static fields + common + per-layer (op, binding) fields."""
            for l, (f, b) in enumerate(static[kind, index]):
                op = new(cls)
                d = {**f, **common}
                if per_layer is not None:
                    ins, bind = per_layer(l)
                    d["instructions"] = ins
                    if bind is not None:
                        bd = new(DataBinding)
                        setattr_(bd, "__dict__", {**b, **bind})
                        d["data"] = bd
                setattr_(op, "__dict__", d)
                ops[f["id"]] = op

        # KV writes
        kw_ins, kw_idx, kw_mask = self._k_write(position)
        kw_all = self._per_layer(kw_ins, (kw_ins[:, 0] != OP_PRECHARGE).astype(np.int64), k_off, slots[("k_write", 0)])
        kw_bind = {"wr_index": _offset(kw_idx, q_dim if gpt else 0)}
        build("k_write", 0, PimOp, lambda l: (kw_all[l], kw_bind), chmask=kw_mask)

        def v_all():
            ins, mask = self._v_write(position)
            return self._per_layer(ins, (ins[:, 0] != OP_PRECHARGE).astype(np.int64), v_off,
                                   slots[("v_write", 0)]), mask
        vw_all, vw_mask = self._cached(("v_write", position // E), v_all)
        vw_bind = {"wr_index": self._v_index(position % E)}
        build("v_write", 0, PimOp, lambda l: (vw_all[l], vw_bind), chmask=vw_mask)
        # scores
        s_all = self._cached(s_key, lambda: [self._per_layer(t["ins"], t["rel"].astype(np.int64), k_off,
                                                             slots[("scores", j)]) for j, t in enumerate(stm)])
        for j, t in enumerate(stm):
            acc_s = t["acc_s"]
            bind = {"gb_index": t["gb_index"],
                    "acc_index": np.where(acc_s < S, t["acc_hp"] * S + acc_s, -1).astype(np.int32)}
            build("scores", j, PimOp, lambda l, a=s_all[j], bind=bind: (a[l], bind),
                  macs=t["macs_per_position"] * S)
        if pieces > 1:
            for l, (f, _) in enumerate(static["scores_reduce", 0]):
                ops[f["id"]] = _new(AsicOp, **{**f, "elements": hs, "reads": tuple(
                    ref(f"L{l}.s.part", k * hs, (k + 1) * hs) for k in range(pieces))})
        build("scale", 0, AsicOp, None, elements=hs)
        build("softmax", 0, AsicOp, None, elements=hs)
        # context
        c_all = self._cached(c_key, lambda: [self._per_layer(t["ins"], t["rel"].astype(np.int64), v_off,
                                                             slots[("context", j)]) for j, t in enumerate(ctm)])
        t = ctm[0]
        c_bind = {"gb_index": np.where(t["gb_s"] < S, t["gb_h"] * S + t["gb_s"], -1).astype(np.int32),
                  "acc_index": t["acc_index"]}
        build("context", 0, PimOp, lambda l: (c_all[0][l], c_bind), macs=t["macs_per_position"] * S)
        if ("context_reduce", 0) in static:
            for l, (f, _) in enumerate(static["context_reduce", 0]):
                ops[f["id"]] = _new(AsicOp, **{**f, "inputs": n_chunks, "reads": tuple(
                    ref(f"L{l}.ctx.part", k * q_dim, (k + 1) * q_dim) for k in range(n_chunks))})
        return Program(ops=tuple(ops), command_names=dev.command_names, model=spec.name, hardware=dev.name,
                       position=position, strategy=self.strategy,
                       meta={"row_commands": self.mode, "context": self.context, "token": token,
                             "elements_per_column": E, "banks": dev.banks},
                       tensors=tensors)

    @functools.cached_property
    def _embed_plan(self) -> dict[str, tuple]:
        """Per table: the region and, per tile, (columns, destination index [columns, E])."""
        dev, p = self.dev, self.placement
        out = {}
        for kind, name in (("tok_read", p.token_table), ("pos_read", p.position_table)):
            if not name:
                continue
            reg = p.region(name)
            tiles = []
            for k in range(reg.n_tiles):
                n = reg.tile_cols(k)
                e = np.arange(n * dev.col_elems).reshape(n, dev.col_elems)
                tiles.append((k, n, np.where(e < reg.tile_len(k), k * dev.tile_elems + e, -1)))
            out[kind] = (reg, tiles, np.concatenate([t[2] for t in tiles]).astype(np.int32))
        return out

    def _embedding_read(self, i: int, dyn: _Dyn, index: int, gpt: bool) -> PimOp:
        """Read row `index` of the token (or position) table: one bank, one RD per column."""
        reg, tiles, idx = self._embed_plan[dyn.kind]
        lane = index % self.dev.lanes
        ch, bank, block = lane % self.dev.channels, lane // self.dev.channels, index // self.dev.lanes
        col = int(reg.col0(block))
        rows = [column(1 << ch, self.cmds.rd, row=int(reg.row(block, k)), count=n, col=col, bank=bank, opid=i)
                for k, n, _ in tiles]
        if self.mode == "explicit":
            rows.append(precharge(1 << ch, opid=i))
        dst = ("emb.tok" if dyn.kind == "tok_read" else "emb.pos") if gpt else "L0.x"
        return _pim_op(i, dyn.kind, "embedding", dyn.deps, 1 << ch, np.array(rows, np.int64), 0, "read", -1,
                       (), (dst,), DataBinding(rd_dst=dst, rd_index=idx), {"row_of_table": index})


_COMPILERS: dict[tuple, StepCompiler] = {}
_MAX_COMPILERS = 8


def compiler_for(spec: ModelSpec, hw, strategy: str = "pim-gpt", context: int | None = None,
                 row_commands: str | None = None) -> StepCompiler:
    """A cached StepCompiler: the position-independent part of the step is built once per shape."""
    hw_key = hw.model_dump_json() if hasattr(hw, "model_dump_json") else repr(hw)
    key = (repr(spec), hw_key, strategy, context, row_commands)
    comp = _COMPILERS.get(key)
    if comp is None:
        if len(_COMPILERS) >= _MAX_COMPILERS:
            _COMPILERS.pop(next(iter(_COMPILERS)))
        comp = _COMPILERS[key] = StepCompiler(spec, hw, strategy, context, row_commands)
    return comp


def compile_step(spec: ModelSpec, hw, position: int, strategy: str = "pim-gpt", context: int | None = None,
                 row_commands: str | None = None, token: int = 0) -> Program:
    """The Program of one decode step (cached by shape: only attention is rebuilt per position)."""
    return compiler_for(spec, hw, strategy, context, row_commands).compile(position, token)
