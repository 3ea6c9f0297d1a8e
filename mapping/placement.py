"""Placement: where every weight element and every KV-cache entry lives on the device.

Address of an element: (channel, bank, row, element within the row); element e of a row is lane
e % E of column e // E (E = elements per column access). Every region occupies whole row
indices across all banks of all channels, so a row pass (one all-bank row on every channel)
engages all C x B MAC units, and regions never share a row.

Layouts (T = elements per row pass = min(global buffer, row); L = C x B lanes):
- GEMV matrix W[out, in] (or several with the same input, concatenated along `out`): output j
  sits in lane j % L (channel = lane % C, bank = lane // C), block j // L; its inputs are cut
  into tiles of T; tile k of block b is row base + k * blocks + b. A row pass of (b, k) gives
  the partial sums of L outputs over one input tile, one per bank.
- K cache of a layer (row-major, heads concatenated): position s sits in lane s % L, block
  s // L; its K vector (Hkv heads of d_head) fills rows base + block * KT + t, heads packed
  whole into the columns of a row (head_cols columns each). A head wider than a row pass is
  cut into pieces, one row each.
- V cache of a layer (column-major): for kv head g and head element d, positions run along a
  row: unit (g, d // B) holds B head elements, one per bank, in rows of T positions. Units are
  spread evenly over channels; unit slot u, position chunk s // T is row base + u * chunks + s // T.
Norm gains and biases stay in the ASIC (loaded once); they are listed, not placed.

Strategies: `pim-gpt` (default) puts matrices that share an input (LLaMA's q/k/v, gate/up)
in one region so one global-buffer fill serves all of them; `naive` gives each matrix its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from workloads.spec import ModelSpec

from .device import Device, MappingError, device_of, with_channels

STRATEGIES = ("pim-gpt", "naive")


class CapacityError(MappingError):
    """The model and its KV-cache reservation do not fit the device."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Member:
    """One weight matrix inside a GEMV region: outputs [offset, offset + n_out) of the region."""

    param: str            # checkpoint name
    offset: int
    n_out: int
    transposed: bool      # stored [in, out] in the checkpoint (GPT-2 Conv1D)


@dataclass(frozen=True)
class GemvRegion:
    name: str
    members: tuple[Member, ...]
    n_out: int
    n_in: int
    base_row: int
    dev: Device = field(repr=False)
    kind: str = "gemv"
    slots: int = 1        # output blocks sharing a row (rows packed), only when n_in fits one tile

    @property
    def n_blocks(self) -> int:
        return _cdiv(self.n_out, self.dev.lanes)

    @property
    def n_row_blocks(self) -> int:
        return _cdiv(self.n_blocks, self.slots)

    @property
    def n_tiles(self) -> int:
        return _cdiv(self.n_in, self.dev.tile_elems)

    @property
    def n_rows(self) -> int:
        return self.n_row_blocks * self.n_tiles

    @property
    def payload_elems(self) -> int:
        return self.n_out * self.n_in

    @property
    def slot_cols(self) -> int:
        """Columns of one slot (the whole input when packed)."""
        return self.tile_cols(0)

    def row(self, block, tile):
        return self.base_row + tile * self.n_row_blocks + np.asarray(block) // self.slots

    def col0(self, block):
        """First column of a block's slot in its row."""
        return (np.asarray(block) % self.slots) * self.slot_cols

    def tile_len(self, tile: int) -> int:
        """Input elements of tile `tile` (the last may be short)."""
        return min(self.dev.tile_elems, self.n_in - tile * self.dev.tile_elems)

    def tile_cols(self, tile: int) -> int:
        return _cdiv(self.tile_len(tile), self.dev.col_elems)

    def lane_of(self, j):
        """Output index -> (channel, bank, block)."""
        j = np.asarray(j)
        lane = j % self.dev.lanes
        return lane % self.dev.channels, lane // self.dev.channels, j // self.dev.lanes

    def address(self, j, i):
        """(channel, bank, row, element) of W[j, i] (arrays broadcast)."""
        ch, bank, block = self.lane_of(j)
        i = np.asarray(i)
        tile = i // self.dev.tile_elems
        elem = i - tile * self.dev.tile_elems + self.col0(block) * self.dev.col_elems
        return ch, bank, self.row(block, tile), elem

    def lanes_used(self, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
        """(channels, banks) holding any of outputs [lo, hi)."""
        hi = self.n_out if hi is None else hi
        if hi - lo >= self.dev.lanes:
            return self.dev.channels, self.dev.banks
        ch, bank, _ = self.lane_of(np.arange(lo, hi))
        return len(np.unique(ch)), len(np.unique(bank))


@dataclass(frozen=True)
class KRegion:
    """One layer's K cache, row-major, heads packed whole into rows (see the module docstring)."""

    name: str
    layer: int
    n_heads: int          # kv heads
    d_head: int
    context: int
    base_row: int
    dev: Device = field(repr=False)
    kind: str = "k_cache"
    slots: int = 1        # position blocks sharing a row (when a position's K fills less than a row)

    @property
    def head_cols(self) -> int:
        return _cdiv(self.d_head, self.dev.col_elems)

    @property
    def pieces(self) -> int:
        """Row pieces per head (1 unless a head is wider than a row pass)."""
        return _cdiv(self.head_cols, self.dev.tile_cols)

    @property
    def heads_per_row(self) -> int:
        return max(1, self.dev.tile_cols // self.head_cols)

    @property
    def rows_per_position(self) -> int:
        if self.pieces > 1:
            return self.n_heads * self.pieces
        return _cdiv(self.n_heads, self.heads_per_row)

    @property
    def position_cols(self) -> int:
        """Columns one position's K takes in a row (rows_per_position == 1 only)."""
        return self.n_heads * self.head_cols

    @property
    def n_blocks(self) -> int:
        return _cdiv(self.context, self.dev.lanes)

    @property
    def n_row_blocks(self) -> int:
        return _cdiv(self.n_blocks, self.slots)

    @property
    def n_rows(self) -> int:
        return self.n_row_blocks * self.rows_per_position

    @property
    def payload_elems(self) -> int:
        return self.context * self.n_heads * self.d_head

    def segments(self) -> list[tuple[int, int, int, int, int]]:
        """(row t, first column, columns, kv head, first head element) of every head piece of one
        position in slot 0 (slot k adds k * position_cols to the column)."""
        segs = []
        tc, ce = self.dev.tile_cols, self.dev.col_elems
        for g in range(self.n_heads):
            if self.pieces == 1:
                t, slot = divmod(g, self.heads_per_row)
                segs.append((t, slot * self.head_cols, self.head_cols, g, 0))
            else:
                for p in range(self.pieces):
                    cols = min(tc, self.head_cols - p * tc)
                    segs.append((g * self.pieces + p, 0, cols, g, p * tc * ce))
        return segs

    def lane_of(self, s):
        s = np.asarray(s)
        lane = s % self.dev.lanes
        return lane % self.dev.channels, lane // self.dev.channels, s // self.dev.lanes

    def row(self, block, t):
        return self.base_row + (np.asarray(block) // self.slots) * self.rows_per_position + t

    def address(self, s, g, e):
        """(channel, bank, row, element) of K[s, head g, element e] (arrays broadcast)."""
        s, g, e = np.broadcast_arrays(np.asarray(s), np.asarray(g), np.asarray(e))
        ch, bank, block = self.lane_of(s)
        tc, ce = self.dev.tile_cols, self.dev.col_elems
        if self.pieces == 1:
            t, slot = np.divmod(g, self.heads_per_row)
            elem = (slot * self.head_cols + (block % self.slots) * self.position_cols) * ce + e
        else:
            piece = e // (tc * ce)
            t = g * self.pieces + piece
            elem = e - piece * tc * ce
        return ch, bank, self.row(block, t), elem


@dataclass(frozen=True)
class VRegion:
    """One layer's V cache, column-major: positions along rows (see the module docstring)."""

    name: str
    layer: int
    n_heads: int          # kv heads
    d_head: int
    context: int
    base_row: int
    dev: Device = field(repr=False)
    kind: str = "v_cache"

    @property
    def groups_per_head(self) -> int:
        return _cdiv(self.d_head, self.dev.banks)

    @property
    def n_units(self) -> int:
        return self.n_heads * self.groups_per_head

    def unit_range(self, ch: int) -> tuple[int, int]:
        """Units [lo, hi) on channel `ch` (an even split: sizes differ by at most one)."""
        n, c = self.n_units, self.dev.channels
        return ch * n // c, (ch + 1) * n // c

    @property
    def slots(self) -> int:
        return _cdiv(self.n_units, self.dev.channels)

    @property
    def n_chunks(self) -> int:
        return _cdiv(self.context, self.dev.tile_elems)

    @property
    def n_rows(self) -> int:
        return self.slots * self.n_chunks

    @property
    def payload_elems(self) -> int:
        return self.context * self.n_heads * self.d_head

    def unit_channel(self, unit):
        """Unit -> (channel, slot) for the even split of unit_range."""
        unit = np.asarray(unit)
        n, c = self.n_units, self.dev.channels
        starts = np.arange(c + 1) * n // c  # channel ch holds units [starts[ch], starts[ch + 1])
        ch = np.searchsorted(starts, unit, side="right") - 1
        return ch, unit - starts[ch]

    def row(self, slot, chunk):
        return self.base_row + slot * self.n_chunks + chunk

    def address(self, s, g, d):
        """(channel, bank, row, element) of V[s, head g, element d] (arrays broadcast)."""
        s, g, d = np.broadcast_arrays(np.asarray(s), np.asarray(g), np.asarray(d))
        unit = g * self.groups_per_head + d // self.dev.banks
        ch, slot = self.unit_channel(unit)
        chunk = s // self.dev.tile_elems
        return ch, d % self.dev.banks, self.row(slot, chunk), s - chunk * self.dev.tile_elems


Region = GemvRegion | KRegion | VRegion


# --------------------------------------------------------------------------- model inventory


@dataclass(frozen=True)
class GemvGroup:
    """A logical GEMV of the step: one input, one output tensor (members concatenated)."""

    role: str                          # qkv, attn_out, ffn_up, ffn_down, lm_head
    members: tuple[Member, ...]
    n_in: int

    @property
    def n_out(self) -> int:
        return sum(m.n_out for m in self.members)


def layer_groups(spec: ModelSpec, layer: int) -> list[GemvGroup]:
    """The step's GEMVs of one layer, members in output order (checkpoint names)."""
    mats = {m.role: m for m in spec.per_layer_matrices(layer)}

    def grp(role, roles):
        ms, off = [], 0
        for r in roles:
            m = mats[r]
            ms.append(Member(m.name, off, m.out_features, m.transposed_in_checkpoint))
            off += m.out_features
        return GemvGroup(role, tuple(ms), mats[roles[0]].in_features)

    if spec.family == "gpt":
        return [grp("qkv", ["qkv"]), grp("attn_out", ["attn_out"]), grp("ffn_up", ["ffn_up"]),
                grp("ffn_down", ["ffn_down"])]
    return [grp("qkv", ["q", "k", "v"]), grp("attn_out", ["attn_out"]), grp("ffn_up", ["ffn_gate", "ffn_up"]),
            grp("ffn_down", ["ffn_down"])]


def lm_head_group(spec: ModelSpec) -> GemvGroup:
    m = spec.lm_head_matrix()
    return GemvGroup("lm_head", (Member(m.name, 0, m.out_features, False),), m.in_features)


def asic_params(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Parameter vectors the ASIC keeps (norm gains, biases): name -> shape."""
    out = {}
    for layer in range(spec.n_layers):
        out.update(spec.per_layer_vectors(layer))
    for name, shape in spec.global_tensors().items():
        if len(shape) == 1:
            out[name] = shape
    return out


# --------------------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    spec: ModelSpec = field(repr=False)
    dev: Device = field(repr=False)
    strategy: str
    context: int
    regions: tuple[Region, ...]
    # per layer: role -> region names in output order (one for pim-gpt, one per matrix for naive)
    layer_regions: tuple[dict[str, tuple[str, ...]], ...] = field(repr=False)
    lm_head: tuple[str, ...] = ()
    token_table: str = ""         # region whose rows are the token embeddings
    position_table: str = ""      # GPT: region of learned positions (rows < context)
    asic_params: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_name", {r.name: r for r in self.regions})

    def region(self, name: str) -> Region:
        return self._by_name[name]

    def k_region(self, layer: int) -> KRegion:
        return self._by_name[f"L{layer}.k_cache"]

    def v_region(self, layer: int) -> VRegion:
        return self._by_name[f"L{layer}.v_cache"]

    @property
    def rows_used(self) -> int:
        return sum(r.n_rows for r in self.regions)

    def payload_bytes(self, kinds: tuple[str, ...] | None = None) -> int:
        return sum(r.payload_elems for r in self.regions if kinds is None or r.kind in kinds) * self.dev.elem_bytes

    def allocated_bytes(self, kinds: tuple[str, ...] | None = None) -> int:
        return sum(r.n_rows for r in self.regions if kinds is None or r.kind in kinds) * self.dev.row_index_bytes

    @property
    def asic_param_bytes(self) -> int:
        return sum(math.prod(s) for s in self.asic_params.values()) * self.dev.elem_bytes


def _gemv_slots(n_out: int, n_in: int, dev: Device, pack: bool) -> int:
    """Output blocks per row: several when the whole input fits in a fraction of a row pass."""
    if not pack or n_in > dev.tile_elems:
        return 1
    return max(1, min(dev.tile_cols // _cdiv(n_in, dev.col_elems), _cdiv(n_out, dev.lanes)))


def _gemv_regions(name: str, group: GemvGroup, fuse: bool, dev: Device, row: int) -> tuple[list[GemvRegion], int]:
    regions = []
    parts = [group.members] if fuse else [(m,) for m in group.members]
    for members in parts:
        base = members[0].offset
        ms = tuple(replace(m, offset=m.offset - base) for m in members)
        rname = name if len(parts) == 1 else f"{name}.{members[0].param.rsplit('.', 2)[-2]}"
        n_out = sum(m.n_out for m in ms)
        reg = GemvRegion(rname, ms, n_out, group.n_in, row, dev, slots=_gemv_slots(n_out, group.n_in, dev, fuse))
        regions.append(reg)
        row += reg.n_rows
    return regions, row


def _layout(spec: ModelSpec, dev: Device, strategy: str, context: int) -> Placement:
    if strategy not in STRATEGIES:
        raise MappingError(f"unknown mapping strategy '{strategy}'; expected one of {', '.join(STRATEGIES)}")
    fuse = strategy == "pim-gpt"
    regions: list[Region] = []
    row = 0
    layer_regions = []
    position_table = ""
    if spec.family == "gpt":
        wpe = GemvRegion("wpe", (Member("transformer.wpe.weight", 0, context, False),), context, spec.d_model, row, dev,
                         kind="table")
        regions.append(wpe)
        row += wpe.n_rows
        position_table = wpe.name
    for layer in range(spec.n_layers):
        roles = {}
        for g in layer_groups(spec, layer):
            regs, row = _gemv_regions(f"L{layer}.{g.role}", g, fuse, dev, row)
            regions += regs
            roles[g.role] = tuple(r.name for r in regs)
        layer_regions.append(roles)
    head, row = _gemv_regions("lm_head", lm_head_group(spec), fuse, dev, row)
    regions += head
    token_table = head[0].name
    if not spec.tied_embeddings:
        emb = GemvRegion("embed", (Member(spec.embedding_name, 0, spec.vocab_size, False),), spec.vocab_size,
                         spec.d_model, row, dev, kind="table")
        regions.append(emb)
        row += emb.n_rows
        token_table = emb.name
    for layer in range(spec.n_layers):
        k = KRegion(f"L{layer}.k_cache", layer, spec.n_kv_heads, spec.d_head, context, row, dev)
        if fuse and k.rows_per_position == 1:
            k = replace(k, slots=max(1, min(dev.tile_cols // k.position_cols, k.n_blocks)))
        row += k.n_rows
        v = VRegion(f"L{layer}.v_cache", layer, spec.n_kv_heads, spec.d_head, context, row, dev)
        row += v.n_rows
        regions += [k, v]
    return Placement(spec, dev, strategy, context, tuple(regions), tuple(layer_regions), tuple(r.name for r in head),
                     token_table, position_table, asic_params(spec))


def _fits(spec, dev, strategy, context) -> bool:
    return _layout(spec, dev, strategy, context).rows_used <= dev.rows


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _capacity_message(spec: ModelSpec, dev: Device, strategy: str, context: int, p: Placement) -> str:
    need = p.allocated_bytes()
    msg = (f"{spec.name} with a KV cache for {context} positions does not fit {dev.name}: it needs "
           f"{need:,} bytes ({_gib(need)}: weights {p.allocated_bytes(('gemv', 'table')):,}, KV cache "
           f"{p.allocated_bytes(('k_cache', 'v_cache')):,}, of which padding {need - p.payload_bytes():,}) = "
           f"{p.rows_used:,} rows per bank, but {dev.channels} channels x {dev.banks} banks x {dev.rows:,} rows x "
           f"{dev.row_bytes} B hold {dev.capacity_bytes:,} bytes ({_gib(dev.capacity_bytes)}).")
    options = []
    more = next((c for c in range(dev.channels + 1, 64) if _fits(spec, with_channels(dev, c), strategy, context)), None)
    if more is not None:
        options.append(f"{more} channels (--set dram.channels={more})")
    if _fits(spec, dev, strategy, 1):
        lo, hi = 1, context - 1
        while lo < hi:  # largest context that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _fits(spec, dev, strategy, mid) else (lo, mid - 1)
        options.append(f"a context of at most {lo} positions (--context {lo})")
    else:
        options.append("no shorter context helps: the weights alone do not fit")
    return msg + " Would fit: " + "; ".join(options) + "."


def place(spec: ModelSpec, hw, strategy: str = "pim-gpt", context: int | None = None) -> Placement:
    """Place `spec` on hardware `hw` (a config or a Device), reserving KV space for `context`
    positions (default: the model's max_context). Raises CapacityError when it does not fit."""
    dev = hw if isinstance(hw, Device) else device_of(hw)
    context = spec.max_context if context is None else int(context)
    if not 1 <= context <= spec.max_context:
        raise MappingError(f"context {context} out of range 1..{spec.max_context} (max_context of {spec.name})")
    p = _layout(spec, dev, strategy, context)
    if p.rows_used > dev.rows:
        raise CapacityError(_capacity_message(spec, dev, strategy, context, p))
    return p


# --------------------------------------------------------------------------- addresses and tables


def gemv_addresses(reg: GemvRegion, member: Member) -> tuple[np.ndarray, ...]:
    """Addresses of every element of a member matrix, [n_out, n_in] each: (channel, bank, row, element)."""
    j = np.arange(member.offset, member.offset + member.n_out)[:, None]
    i = np.arange(reg.n_in)[None, :]
    return tuple(np.broadcast_to(a, (member.n_out, reg.n_in)) for a in reg.address(j, i))


def flat_address(dev: Device, ch, bank, row, elem) -> np.ndarray:
    """One integer per element address, unique over the device."""
    ch, bank, row, elem = (np.asarray(a, np.int64) for a in (ch, bank, row, elem))
    return ((ch * dev.banks + bank) * dev.rows + row) * dev.row_elems + elem


def placement_table(p: Placement) -> list[dict]:
    """One row per region (weight matrix or group, table, K or V cache of a layer)."""
    out = []
    for r in p.regions:
        alloc = r.n_rows * p.dev.row_index_bytes
        payload = r.payload_elems * p.dev.elem_bytes
        if isinstance(r, GemvRegion):
            chans, banks = r.lanes_used()
            tensors = ", ".join(m.param for m in r.members)
            shape = f"{r.n_out}x{r.n_in}"
        elif isinstance(r, KRegion):
            chans, banks = min(p.dev.channels, r.context), min(p.dev.banks, _cdiv(r.context, p.dev.channels))
            tensors, shape = f"K cache layer {r.layer} (row-major)", f"{r.context}x{r.n_heads}x{r.d_head}"
        else:
            chans, banks = min(p.dev.channels, r.n_units), min(p.dev.banks, r.d_head)
            tensors, shape = f"V cache layer {r.layer} (column-major)", f"{r.context}x{r.n_heads}x{r.d_head}"
        out.append({"region": r.name, "kind": r.kind, "tensors": tensors, "shape": shape, "channels": chans,
                    "banks": banks, "first_row": r.base_row, "rows": r.n_rows, "bytes": payload,
                    "allocated_bytes": alloc, "utilisation": payload / alloc if alloc else 0.0})
    return out


def placement_summary(p: Placement) -> dict:
    d = p.dev
    total = p.allocated_bytes()
    return {
        "model": p.spec.name, "hardware": d.name, "strategy": p.strategy, "context": p.context,
        "rows_used": p.rows_used, "rows_per_bank": d.rows, "capacity_bytes": d.capacity_bytes,
        "allocated_bytes": total, "payload_bytes": p.payload_bytes(),
        "padding_bytes": total - p.payload_bytes(),
        "padding_fraction": (total - p.payload_bytes()) / total if total else 0.0,
        "weight_bytes": p.payload_bytes(("gemv", "table")), "kv_cache_bytes": p.payload_bytes(("k_cache", "v_cache")),
        "kv_allocated_bytes": p.allocated_bytes(("k_cache", "v_cache")),
        "asic_param_bytes": p.asic_param_bytes,
    }
