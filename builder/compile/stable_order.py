"""A fixed order for the shape computations TVM's `relax.transform.VMShapeLower` emits (reproducible builds, issue 27).

VMShapeLower (TVM 0.27, src/relax/backend/vm/vm_shape_lower.cc) keeps the symbolic shape expressions of a Relax
function in an `std::unordered_map` keyed by `StructuralHash`. That hash does not map free variables, so a shape
variable (`seq_len`, ...) hashes by its address, and the map's iteration order follows heap addresses. The pass
walks that map to decide the order in which a `shape_func` stores its values into the shape heap, e.g.

    H[2] = H[0] * 512
    H[3] = H[0] * 1024      (another process: these two the other way round)

Heap addresses move with the size of the process environment, the cwd and argv, so the same build gave other
bytes of `.so` / `.wasm` in another environment (a few instructions in another order). The stores of one shape
function are independent: each value reads only slots of shape *variables*, filled before the function runs, and
writes a slot of a compound expression. `order_shape_funcs` sorts them by heap slot, an order that depends on the
function's structure only; a function whose stores read a slot another store writes is left as it is.
"""

import tvm
import tvm_ffi
from tvm import tirx
from tvm.ir.expr import TensorLoad  # what tirx.BufferLoad builds in TVM 0.27


def _slot(indices) -> int | None:
    return int(indices[0]) if len(indices) == 1 and isinstance(indices[0], tirx.IntImm) else None


def sorted_stores(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """`func` with its shape-heap stores in slot order, or None when it is not a shape function of that form."""
    if len(func.params) != 1 or not isinstance(func.body, tirx.SeqStmt):
        return None
    stores = list(func.body.seq)
    heap = stores[0].buffer if isinstance(stores[0], tirx.BufferStore) else None
    if heap is None or not all(isinstance(s, tirx.BufferStore) and s.buffer.same_as(heap)
                               and _slot(s.indices) is not None for s in stores):
        return None
    written = {_slot(s.indices) for s in stores}
    read = set()

    def load(ld):  # a load from another buffer counts as None: not a shape function of this form
        read.add(_slot(ld.indices) if ld.source.same_as(heap) else None)

    for s in stores:
        tvm_ffi.structural_walk(s.value, [(TensorLoad, load)])
    if len(written) != len(stores) or read & written or None in read:
        return None  # not independent stores: their order may matter
    ordered = sorted(stores, key=lambda s: _slot(s.indices))
    if all(a.same_as(b) for a, b in zip(ordered, stores, strict=True)):
        return func
    return func.with_body(tirx.SeqStmt(ordered))


@tvm.transform.module_pass(opt_level=0, name="OrderShapeFuncs")
def order_shape_funcs(mod: tvm.ir.IRModule, _ctx) -> tvm.ir.IRModule:
    """Run right after VMShapeLower: every host shape function's stores sorted by slot."""
    for gv, func in list(mod.functions.items()):
        if isinstance(func, tirx.PrimFunc) and gv.name_hint.startswith("shape_func") \
                and func.attrs and func.attrs.get("tirx.is_host_func"):
            new = sorted_stores(func)
            if new is not None and not new.same_as(func):
                mod[gv] = new
    return mod


def after_shape_lower(passes: list) -> list:
    """`passes` (a TVM pipeline's pass list) with `order_shape_funcs` right after each VMShapeLower."""
    out = []
    for p in passes:
        out.append(p)
        if p.info.name == "VMShapeLower":
            out.append(order_shape_funcs)
    return out
