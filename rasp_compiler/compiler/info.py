"""What the compiler tells about the model it built: the per-layer and selector reports.

`layer_infos` describes each head and MLP part of the lowered model (what it
computes, its coldness, its construction), and `selector_entries` each selector's
chosen construction with the layers its MLPs really cost, known only after
scheduling. Both become part of `ModelInfo` (model/records.py), which
`model.layout()`, the explorer and saved models read.
"""

from __future__ import annotations

from rasp_compiler.compiler.lower import LoweredModel
from rasp_compiler.compiler.ops import OpGraph, width_hidden_label
from rasp_compiler.compiler.schedule import Schedule
from rasp_compiler.model.records import HeadInfo, LayerInfo, MLPPartInfo, SelectorEntry


def selector_entries(ops: OpGraph, schedule: Schedule) -> tuple[SelectorEntry, ...]:
    """The selector report, with the layers each construction's MLPs really cost."""
    entries = []
    for choice in ops.selector_choices:
        heads = [h for h in choice.heads if h in schedule.time]
        if not heads:
            continue  # its user is dead code
        chosen = choice.chosen
        helpers = {t.label for t in chosen.tuples} | {f.label for f in chosen.features}
        extra = 0
        for head in heads:
            # When could this head run if its helper SOps cost nothing?
            base: set[str] = set()
            for label in ops.attention[head].reads:
                base |= set(ops.units[label].inputs) if label in helpers else {label}
            ready = max((schedule.time[b] for b in base), default=0)
            ideal = ready + 1 if ready % 2 == 0 else ready + 2
            extra = max(extra, (schedule.time[head] - ideal) // 2)
        actual = max(schedule.time[h] for h in heads)
        if len(chosen.heads) > 1 and choice.used_by in ops.units:
            extra += (schedule.time[choice.used_by] - (actual + 1)) // 2
        entries.append(SelectorEntry(
            selector=choice.selector,
            used_by=choice.used_by,
            written=choice.written,
            normal_form=choice.normal_form,
            construction=chosen.name,
            cost=str(chosen.cost),
            alternatives=tuple((o.name, str(o.cost)) for o in choice.alternatives),
            flags=choice.flags(extra_layers=max(0, extra)),
            heads=tuple(heads),
            score=chosen.cost.score,
        ))
    return tuple(entries)


def _head_expression(ops, op, written: dict[str, str]) -> str:
    text = written.get(op.selector, f"{op.selector} (built in)")
    if op.label not in (op.source, width_hidden_label(op.source)):
        text += f" [inclusion-exclusion part: {' & '.join(a.name() for a in op.atoms)}]"
    return text


def layer_infos(lowered: LoweredModel, ops: OpGraph) -> tuple[LayerInfo, ...]:
    written = {p.selector: p.written for p in ops.selector_choices}
    layers = []
    for heads, mlp in zip(lowered.heads, lowered.mlps):
        head_infos = []
        for h in heads:
            op = ops.attention[h.label]
            head_infos.append(HeadInfo(
                label=h.label, source=op.source, selector=op.selector, kind=op.kind,
                layer=h.layer, index=h.index, coldness=h.coldness, leak_bound=h.leak_bound,
                atoms=tuple(atom.describe() for atom in op.atoms),
                key_size=h.key_size, value_size=h.value_size,
                expression=_head_expression(ops, op, written),
                queries=op.queries, keys=op.keys, values=op.values,
            ))
        ranges = mlp.part_ranges()
        parts = tuple(
            MLPPartInfo(
                label=p.label, construction=p.construction, units=p.units, leaves=p.leaves,
                outputs=p.outputs, start=ranges[p.label][0], stop=ranges[p.label][1],
            )
            for p in mlp.parts
        )
        layers.append(LayerInfo(mlp.layer, tuple(head_infos), parts, mlp.hidden))
    return tuple(layers)
