"""Control flow: ``If`` on a constant condition is folded to the branch it
takes (whose nodes are then walked like any others, so the branch may carry
the stream); ``Loop`` on constants is run node by node with the same folding
as the main graph, its trips bounded by the load's work budget before the
first one runs (a trip count of 10**12 is refused at once)."""

from __future__ import annotations

from collections import ChainMap
from typing import Any, Callable

import numpy as np

from ...errors import WeightsError
from .fold import LOOP_NODE_COST
from .tensors import _tensor
from .values import _Const, _Graph, _int_values

Run = Callable[[_Graph, Any, Any], None]


def _control_flow(g: _Graph, node: Any, ins: list, env: Any, run: Run) -> list:
    if node.op_type == "If":
        return _if(g, node, ins, env, run)
    return _loop(g, node, ins, env, run)


def _subgraph(g: _Graph, node: Any, name: str) -> Any:
    for a in node.attribute:
        if a.name == name and a.HasField("g"):
            return a.g
    raise WeightsError(f"{g.where()}: no {name} subgraph")


def _scalar(g: _Graph, v: _Const, what: str) -> Any:
    arr = np.asarray(v.value)
    if arr.size != 1:
        raise WeightsError(f"{g.where()}: {what} has {arr.size} values (expected 1)")
    return arr.reshape(-1)[0]


def _initializers(g: _Graph, graph: Any) -> dict:
    if graph.sparse_initializer:
        raise WeightsError(f"{g.where()}: sparse initializers are not supported")
    where = f" (in a subgraph of {g.label()})"
    return {t.name: _Const(_tensor(t, g.path, g.budget, where)) for t in graph.initializer}


def _run_subgraph(g: _Graph, node: Any, graph: Any, env: Any, bound: dict, run: Run) -> list:
    """The output values of ``graph`` run in a scope that sees ``env`` (outer
    names) with ``bound`` (its inputs and initializers) on top."""
    scope = ChainMap(dict(bound), env)
    here = (g.node, g.index)
    run(g, graph.node, scope)
    g.node, g.index = here
    missing = [o.name for o in graph.output if o.name not in scope]
    if missing:
        raise WeightsError(f"{g.where()}: subgraph output(s) {missing} are not produced")
    return [scope[o.name] for o in graph.output]


def _if(g: _Graph, node: Any, ins: list, env: Any, run: Run) -> list:
    # If-21: runs then_branch when cond is true, else_branch otherwise
    cond = ins[0] if ins else None
    if not isinstance(cond, _Const):
        raise g.fail("If on a condition that is not a constant (a stream runs one fixed branch)")
    name = "then_branch" if bool(_scalar(g, cond, "If condition")) else "else_branch"
    branch = _subgraph(g, node, name)
    outs = _run_subgraph(g, node, branch, env, _initializers(g, branch), run)
    if len(outs) != len(node.output):
        raise WeightsError(
            f"{g.where()}: {name} has {len(outs)} outputs for the node's {len(node.output)}"
        )
    return outs


def _loop(g: _Graph, node: Any, ins: list, env: Any, run: Run) -> list:
    # Loop-21: inputs (M, cond, v_initial...); body (iteration_num, cond, v...) ->
    # (cond, v..., scan_outputs...); outputs: final v..., scan outputs stacked
    body = _subgraph(g, node, "body")
    m, cond, carried = (ins + [None, None])[0], (ins + [None, None])[1], list(ins[2:])
    if not all(v is None or isinstance(v, _Const) for v in [m, cond] + carried):
        raise g.fail("Loop over values that are not constants cannot stream")
    n_carried = len(carried)
    n_scan = len(body.output) - 1 - n_carried
    if n_scan < 0 or len(body.input) != 2 + n_carried:
        raise WeightsError(
            f"{g.where()}: Loop body has {len(body.input)} inputs and {len(body.output)} outputs "
            f"for {n_carried} loop-carried values"
        )
    trips = None
    if m is not None:
        values = _int_values(g, m.value, "Loop trip count")
        if len(values) != 1:
            raise WeightsError(f"{g.where()}: Loop trip count has {len(values)} values (expected 1)")
        trips = max(values[0], 0)
    keep = True if cond is None else bool(_scalar(g, cond, "Loop condition"))
    if trips is None and cond is None:
        raise WeightsError(f"{g.where()}: Loop with neither a trip count nor a condition never ends")
    per_trip = (len(body.node) + 1) * LOOP_NODE_COST
    if trips is not None:
        g.budget.count(trips * per_trip, f"{g.label()}: a Loop of {trips:,} trips")
    consts = _initializers(g, body)
    names = [vi.name for vi in body.input]
    scans: list[list] = [[] for _ in range(n_scan)]
    start = g.budget.used
    i = 0
    while keep and (trips is None or i < trips):
        if trips is None:
            g.budget.count(per_trip, f"{g.label()}: Loop trips")
        bound = {names[0]: _Const(np.array(i, np.int64)), names[1]: _Const(np.array(keep))}
        bound.update(zip(names[2:], carried))
        outs = _run_subgraph(g, node, body, env, {**consts, **bound}, run)
        if not all(isinstance(v, _Const) for v in outs):
            raise g.fail("the Loop body computes values that are not constants")
        keep = bool(_scalar(g, outs[0], "Loop body condition"))
        carried = outs[1:1 + n_carried]
        for kept, v in zip(scans, outs[1 + n_carried:]):
            kept.append(v.value)
        # what the trip folded is gone, except what it carries on and scans
        g.budget.used = start + sum(v.value.nbytes for v in carried) + sum(
            a.nbytes for kept in scans for a in kept)
        i += 1
    stacked = []
    for kept in scans:
        g.budget.take(sum(a.nbytes for a in kept), f"{g.label()}: Loop scan output")
        stacked.append(_Const(np.stack(kept) if kept else np.zeros((0,), np.float32)))
    return carried + stacked
