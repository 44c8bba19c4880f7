"""Where things happen in the forward pass: `Slot` (a layer's attention or MLP sublayer, or
the embeddings) and the TransformerLens hook names, made here and nowhere else.

The compiler counts time in sublayers (a schedule's `time`): 0 is the embeddings, then
layer l's attention and MLP. `Slot.at(time)` and `slot.time` convert, so no other module
does parity arithmetic; `hook(layer, name)` is the one place a `blocks.{l}.` name is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from rasp_compiler.errors import InternalError

EMBED, ATTENTION, MLP = "embed", "attn", "mlp"

# one layer's hooks, in forward order (TransformerLens's names)
LAYER_HOOKS = ("hook_resid_pre", "attn.hook_q", "attn.hook_k", "attn.hook_v",
               "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
               "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out",
               "hook_resid_post")
EMBED_HOOKS = ("hook_embed", "hook_pos_embed")


def hook(layer: int, name: str) -> str:
    """The hook `name` of block `layer`: hook(0, "attn.hook_z") is "blocks.0.attn.hook_z"."""
    return f"blocks.{layer}.{name}"


def hook_names(depth: int) -> list[str]:
    """Every hook of a model `depth` layers deep, in forward order."""
    return [*EMBED_HOOKS] + [hook(l, name) for l in range(depth) for name in LAYER_HOOKS]


@dataclass(frozen=True, order=True)
class Slot:
    """One sublayer: `Slot(l, "attn")`, `Slot(l, "mlp")`, or `EMBEDDINGS` (layer -1).
    Slots order as the forward runs them."""

    layer: int
    sublayer: str

    def __post_init__(self):
        if self.sublayer not in (EMBED, ATTENTION, MLP) or (self.sublayer == EMBED) != (
                self.layer == -1) or self.layer < -1:
            raise InternalError(f"no sublayer {self.sublayer!r} at layer {self.layer}: a slot is "
                                f"Slot(l, 'attn'), Slot(l, 'mlp') (l >= 0) or Slot.EMBEDDINGS")

    @classmethod
    def attention(cls, layer: int) -> "Slot":
        return cls(layer, ATTENTION)

    @classmethod
    def mlp(cls, layer: int) -> "Slot":
        return cls(layer, MLP)

    @classmethod
    def at(cls, time: int) -> "Slot":
        """The slot of schedule time `time` (0: the embeddings)."""
        if time == 0:
            return EMBEDDINGS
        layer, odd = divmod(time - 1, 2)
        return cls(layer, MLP if odd else ATTENTION)

    @classmethod
    def first_after(cls, time: int, sublayer: str) -> "Slot":
        """The first `sublayer` ("attn" or "mlp") slot strictly after schedule time `time`:
        where an op whose inputs are ready at `time` runs."""
        after = cls.at(time)
        if sublayer == ATTENTION:
            return cls.attention(after.layer + 1)
        return cls.mlp(after.layer if after.sublayer == ATTENTION else after.layer + 1)

    @property
    def time(self) -> int:
        """The schedule's time: 0 the embeddings, 2l+1 layer l's attention, 2l+2 its MLP."""
        return {EMBED: 0, ATTENTION: 2 * self.layer + 1, MLP: 2 * self.layer + 2}[self.sublayer]

    @property
    def name(self) -> str:
        """'embeddings', 'layer 0 attention', 'layer 0 MLP'."""
        if self.sublayer == EMBED:
            return "embeddings"
        return f"layer {self.layer} {'attention' if self.sublayer == ATTENTION else 'MLP'}"

    @property
    def residual_after(self) -> str:
        """The hook holding the residual right after this slot ("hook_embed+pos" for the
        embeddings: the sum of the two embedding hooks)."""
        if self.sublayer == EMBED:
            return "hook_embed+pos"
        return hook(self.layer, "hook_resid_mid" if self.sublayer == ATTENTION
                    else "hook_resid_post")

    @property
    def residual_before(self) -> str:
        """The hook holding the residual this slot reads."""
        return hook(self.layer, "hook_resid_pre" if self.sublayer == ATTENTION
                    else "hook_resid_mid")

    @property
    def output(self) -> str:
        """The hook holding what this slot writes."""
        return hook(self.layer, "hook_attn_out" if self.sublayer == ATTENTION
                    else "hook_mlp_out")

    def __str__(self) -> str:
        return self.name


EMBEDDINGS = Slot(-1, EMBED)
