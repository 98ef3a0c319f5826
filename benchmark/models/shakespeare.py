"""`shakespeare-char`: a two-layer GPT-style character model of Tiny Shakespeare, with TransformerLens-style hook
points at every stage.

Input: character ids `# [b, T]` int64 (T ≤ 128; the 65 characters of the corpus, `data.shakespeare.VOCAB`). Output:
the next character's logits at every position `# [b, T, 65]`. d = 128, H = 4 heads of e = 32, m = 512, L = 2 layers,
pre-LayerNorm (ε = 1e-5), learned positions, causal attention, GELU (exact, erf) MLP, biases everywhere, no dropout,
no weight tying. Stages (each ends at the hook-point module of the same name, an `nn.Identity` a forward hook may
replace); for each layer l ∈ {0, 1}, `blocks_l_` names that layer's:

  hook_embed                 E   = W_E[tokens]                                         # [b, T, d]
  blocks_l_hook_resid_pre    r   = E + W_pos[:T]  (l = 0)  /  the previous resid_post  # [b, T, d]
  blocks_l_ln1_hook_normalized  x = LN(r) = (r − μ) / √(σ² + ε) · w + β               # [b, T, d]
  blocks_l_attn_hook_pattern A_hqk = softmax_k≤q((x_q W_Q^h + b_Q^h) · (x_k W_K^h + b_K^h) / √e)   # [b, H, T, T]
  blocks_l_attn_hook_z       z_qh = Σ_k A_hqk · (x_k W_V^h + b_V^h)                    # [b, T, H, e] (each head)
  blocks_l_hook_resid_mid    s   = r + Σ_h z_h W_O^h + b_O                             # [b, T, d]
  blocks_l_ln2_hook_normalized  y = LN(s)                                              # [b, T, d]
  blocks_l_mlp_hook_pre      u   = y W_in + b_in                                       # [b, T, m]
  blocks_l_mlp_hook_post     n   = GELU(u)                                             # [b, T, m] (the neurons)
  blocks_l_hook_resid_post   t   = s + n W_out + b_out                                 # [b, T, d]
  ln_final_hook_normalized   f   = LN(t of the last layer)                             # [b, T, d]
  logits                     ℓ   = f W_U + b_U                                         # [b, T, 65]

TransformerLens calls these `hook_embed`, `blocks.0.hook_resid_pre`, `blocks.0.ln1.hook_normalized`,
`blocks.0.attn.hook_pattern`, `blocks.0.attn.hook_z`, …, `ln_final.hook_normalized`; here dots become underscores so
that every name is also a Python parameter name a submission can declare.

Units: a neuron is the last axis of `mlp_hook_pre`/`mlp_hook_post` (and of the residual stages), at every position
(`# [b, T, units]`); a head is axis 2 of `attn_hook_z` (`# [b, T, H, e]`), replaced as one unit with its e values at
every position. `unit_axes` says so per stage. The attention pattern's heads sit on axis 1 (`# [b, H, T, T]`).

A transformer is not a chain: a layer's `attn_hook_z` reads its `ln1_hook_normalized` (the values) besides the
pattern, `hook_resid_mid` reads `hook_resid_pre`, and `hook_resid_post` reads `hook_resid_mid`; those are `carried`.

`forward` (training) computes the same function as one fused graph; evaluation goes through `run` (they agree
within 1e-5, tested). Initialisation (in this order, from the global RNG), as GPT-2: every matrix `randn · 0.02`,
the output projections W_O and W_out `randn · 0.02 / √(2L)`, biases zero, LayerNorm weights one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import StagedModel

VOCAB, CONTEXT = 65, 128
D_MODEL, N_HEADS, D_HEAD, D_MLP, N_LAYERS = 128, 4, 32, 512, 2
LN_EPS = 1e-5

_BLOCK_STAGES = ("hook_resid_pre", "ln1_hook_normalized", "attn_hook_pattern", "attn_hook_z", "hook_resid_mid",
                 "ln2_hook_normalized", "mlp_hook_pre", "mlp_hook_post", "hook_resid_post")


def _block_names(layer: int) -> tuple[str, ...]:
    return tuple(f"blocks_{layer}_{s}" for s in _BLOCK_STAGES)


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """True where query q may not see key k (k > q)  # [T, T]"""
    return torch.ones(t, t, dtype=torch.bool, device=device).triu(1)


class Block(nn.Module):
    """One pre-LayerNorm transformer block's parameters (the computation is `ShakespeareChar.run_stage`'s)."""

    def __init__(self) -> None:
        super().__init__()
        d, h, e, m = D_MODEL, N_HEADS, D_HEAD, D_MLP
        out_std = 0.02 / math.sqrt(2 * N_LAYERS)
        self.ln1_w, self.ln1_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.W_Q = nn.Parameter(torch.randn(h, d, e) * 0.02)
        self.W_K = nn.Parameter(torch.randn(h, d, e) * 0.02)
        self.W_V = nn.Parameter(torch.randn(h, d, e) * 0.02)
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(h, e)) for _ in range(3))
        self.W_O = nn.Parameter(torch.randn(h, e, d) * out_std)
        self.b_O = nn.Parameter(torch.zeros(d))
        self.ln2_w, self.ln2_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.W_in = nn.Parameter(torch.randn(d, m) * 0.02)
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_out = nn.Parameter(torch.randn(m, d) * out_std)
        self.b_out = nn.Parameter(torch.zeros(d))

    def pattern(self, x: torch.Tensor) -> torch.Tensor:
        """The attention pattern `# [b, H, T, T]` of `x = LN1(resid_pre) # [b, T, d]` (causal)."""
        q = torch.einsum("btd,hde->bhte", x, self.W_Q) + self.b_Q[:, None]  # [b, H, T, e]
        k = torch.einsum("btd,hde->bhte", x, self.W_K) + self.b_K[:, None]  # [b, H, T, e]
        scores = torch.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(D_HEAD)  # [b, H, T, T]
        scores = scores.masked_fill(causal_mask(x.shape[1], x.device), float("-inf"))
        return scores.softmax(-1)

    def z(self, pattern: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each head's output before W_O `# [b, T, H, e]` from `pattern # [b, H, T, T]` and `x # [b, T, d]`."""
        v = torch.einsum("btd,hde->bhte", x, self.W_V) + self.b_V[:, None]  # [b, H, T, e]
        return torch.einsum("bhqk,bhke->bqhe", pattern, v)

    def attn_out(self, z: torch.Tensor) -> torch.Tensor:
        """Σ_h z_h W_O^h + b_O  `# [b, T, d]`"""
        return torch.einsum("bthe,hed->btd", z, self.W_O) + self.b_O


class ShakespeareChar(StagedModel):
    """Two pre-LayerNorm transformer blocks over characters; next-character logits at every position."""

    input_name = "tokens"
    vocab_size = VOCAB
    stage_names = ("hook_embed", *_block_names(0), *_block_names(1), "ln_final_hook_normalized", "logits")
    carried = tuple(f"blocks_{l}_{s}" for l in range(N_LAYERS)
                    for s in ("hook_resid_pre", "ln1_hook_normalized", "hook_resid_mid"))
    #: The axis of a batch `# [b, ...]` where a stage's units sit: the last for every stage but the heads' outputs
    #: (axis 2 of `# [b, T, H, e]`: a head is one unit) and patterns (axis 1 of `# [b, H, T, T]`).
    unit_axes = {name: (2 if name.endswith("attn_hook_z") else 1 if name.endswith("attn_hook_pattern") else -1)
                 for name in stage_names}

    #: Per-example activation shape of every stage (at the full context T = 128).
    stage_shapes = {name: ((N_HEADS, CONTEXT, CONTEXT) if name.endswith("attn_hook_pattern")
                           else (CONTEXT, N_HEADS, D_HEAD) if name.endswith("attn_hook_z")
                           else (CONTEXT, D_MLP) if "mlp_hook" in name
                           else (CONTEXT, VOCAB) if name == "logits" else (CONTEXT, D_MODEL))
                    for name in stage_names}

    def __init__(self) -> None:
        super().__init__()
        d = D_MODEL
        self.W_E = nn.Parameter(torch.randn(VOCAB, d) * 0.02)
        self.W_pos = nn.Parameter(torch.randn(CONTEXT, d) * 0.02)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYERS))
        self.ln_f_w, self.ln_f_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.W_U = nn.Parameter(torch.randn(d, VOCAB) * 0.02)
        self.b_U = nn.Parameter(torch.zeros(VOCAB))
        for name in self.stage_names:
            self.add_module(name, nn.Identity())

    @staticmethod
    def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(x − μ) / √(σ² + ε) · w + b over the last axis (σ² the biased variance), as `F.layer_norm`."""
        return F.layer_norm(x, (D_MODEL,), w, b, LN_EPS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The logits `# [b, T, 65]` of `tokens # [b, T]`, fused (the training graph). No hooks run."""
        r = self.W_E[tokens] + self.W_pos[: tokens.shape[1]]  # [b, T, d]
        for block in self.blocks:
            x = self.layer_norm(r, block.ln1_w, block.ln1_b)
            r = r + block.attn_out(block.z(block.pattern(x), x))
            y = self.layer_norm(r, block.ln2_w, block.ln2_b)
            r = r + F.gelu(y @ block.W_in + block.b_in) @ block.W_out + block.b_out
        return self.layer_norm(r, self.ln_f_w, self.ln_f_b) @ self.W_U + self.b_U

    def run_stage(self, name: str, x: torch.Tensor, carry: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        hook = getattr(self, name)
        if name == "hook_embed":
            return hook(self.W_E[x])  # [b, T, d] from tokens [b, T]
        if name == "ln_final_hook_normalized":
            return hook(self.layer_norm(x, self.ln_f_w, self.ln_f_b))  # [b, T, d]
        if name == "logits":
            return hook(x @ self.W_U + self.b_U)  # [b, T, V]
        if not name.startswith("blocks_"):
            raise KeyError(f"{type(self).__name__} has no stage '{name}'")
        layer = int(name.split("_")[1])
        stage = name[len(f"blocks_{layer}_"):]
        block = self.blocks[layer]
        if stage == "hook_resid_pre":
            return hook(x + self.W_pos[: x.shape[1]] if layer == 0 else x)  # [b, T, d]
        if stage == "ln1_hook_normalized":
            return hook(self.layer_norm(x, block.ln1_w, block.ln1_b))  # [b, T, d]
        if stage == "attn_hook_pattern":
            return hook(block.pattern(x))  # [b, H, T, T]
        assert carry is not None, f"stage '{name}' reads carried activations"
        if stage == "attn_hook_z":
            return hook(block.z(x, carry[f"blocks_{layer}_ln1_hook_normalized"]))  # [b, T, H, e]
        if stage == "hook_resid_mid":
            return hook(carry[f"blocks_{layer}_hook_resid_pre"] + block.attn_out(x))  # [b, T, d]
        if stage == "ln2_hook_normalized":
            return hook(self.layer_norm(x, block.ln2_w, block.ln2_b))  # [b, T, d]
        if stage == "mlp_hook_pre":
            return hook(x @ block.W_in + block.b_in)  # [b, T, m]
        if stage == "mlp_hook_post":
            return hook(F.gelu(x))  # [b, T, m]
        if stage == "hook_resid_post":
            return hook(carry[f"blocks_{layer}_hook_resid_mid"] + x @ block.W_out + block.b_out)  # [b, T, d]
        raise KeyError(f"{type(self).__name__} has no stage '{name}'")
