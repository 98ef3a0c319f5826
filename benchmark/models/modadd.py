"""`modadd-p113`: the one-layer transformer of Nanda et al. (2023) for (a + b) mod 113, with TransformerLens-style
hook points.

Input: the tokens `a b =` `# [b, 3]` int64, with a, b in 0..112 and `=` the token 113 (vocabulary 114, context 3).
Only the last position's output is read (the answer), so every stage after the attention pattern is computed for
that position only. Stages (each ends at the hook-point module of the same name, an `nn.Identity` a forward hook
may replace), with d = 128, H = 4 heads of e = 32, m = 512, p = 113:

  hook_embed        E   = W_E[tokens]                                      # [b, 3, d]
  hook_resid_pre    r   = E + W_pos                                        # [b, 3, d]
  attn_hook_pattern A_h = softmax_k((r_last W_Q^h) · (r_k W_K^h) / √e)     # [b, H, 3]  (the last query's pattern)
  attn_hook_z       z_h = Σ_k A_hk · r_k W_V^h                             # [b, H, e]  (each head's output)
  hook_resid_mid    s   = r_last + Σ_h z_h W_O^h                           # [b, d]
  mlp_hook_pre      u   = s W_in + b_in                                    # [b, m]
  mlp_hook_post     n   = ReLU(u)                                          # [b, m]     (the neurons)
  hook_resid_post   t   = s + n W_out + b_out                              # [b, d]
  logits            ℓ   = t W_U                                            # [b, p]

No LayerNorm, no biases in attention. TransformerLens calls these `hook_embed`, `blocks.0.hook_resid_pre`,
`blocks.0.attn.hook_pattern`, `blocks.0.attn.hook_z`, `blocks.0.hook_resid_mid`, `blocks.0.mlp.hook_pre`,
`blocks.0.mlp.hook_post`, `blocks.0.hook_resid_post`; here the `blocks.0.` prefix is dropped and dots become
underscores, so that every name is also a Python parameter name a submission can declare.

A transformer is not a chain: `attn_hook_z` reads the residual stream `hook_resid_pre` as well as the pattern,
and `hook_resid_post` reads `hook_resid_mid`. Those two are `carried` (`StagedModel.run`).

`forward` (training) computes the same function as one fused graph, the graph the pinned checkpoint was trained
with: `run` splits it at the hook points, which changes the order autograd sums gradients in, so training through
`run` would give other bits. Evaluation goes through `run`; the two agree within 1e-5 on all 12,769 pairs (tested).

Initialisation (in this order, from the global RNG): every matrix `randn / √fan_in` (W_O: fan-in H·e), biases zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import StagedModel

P = 113  # the modulus; tokens 0..P-1 are numbers, token P is "="
VOCAB, CONTEXT = P + 1, 3
D_MODEL, N_HEADS, D_HEAD, D_MLP = 128, 4, 32, 512


class ModAddTransformer(StagedModel):
    """One attention layer (4 heads) and one ReLU MLP over `a b =`; logits over the 113 answers."""

    input_name = "tokens"
    vocab_size = VOCAB
    stage_names = ("hook_embed", "hook_resid_pre", "attn_hook_pattern", "attn_hook_z", "hook_resid_mid",
                   "mlp_hook_pre", "mlp_hook_post", "hook_resid_post", "logits")
    carried = ("hook_resid_pre", "hook_resid_mid")
    #: Stages with a position axis (`# [b, 3, d]`): inputs only; a target's units sit on axis 1, and these have
    #: positions there.
    positional = ("hook_embed", "hook_resid_pre")
    #: Per-example activation shape of every stage.
    stage_shapes = {"hook_embed": (CONTEXT, D_MODEL), "hook_resid_pre": (CONTEXT, D_MODEL),
                    "attn_hook_pattern": (N_HEADS, CONTEXT), "attn_hook_z": (N_HEADS, D_HEAD),
                    "hook_resid_mid": (D_MODEL,), "mlp_hook_pre": (D_MLP,), "mlp_hook_post": (D_MLP,),
                    "hook_resid_post": (D_MODEL,), "logits": (P,)}

    def __init__(self) -> None:
        super().__init__()
        d, h, e, m = D_MODEL, N_HEADS, D_HEAD, D_MLP
        self.W_E = nn.Parameter(torch.randn(VOCAB, d) / math.sqrt(d))
        self.W_pos = nn.Parameter(torch.randn(CONTEXT, d) / math.sqrt(d))
        self.W_Q = nn.Parameter(torch.randn(h, d, e) / math.sqrt(d))
        self.W_K = nn.Parameter(torch.randn(h, d, e) / math.sqrt(d))
        self.W_V = nn.Parameter(torch.randn(h, d, e) / math.sqrt(d))
        self.W_O = nn.Parameter(torch.randn(h, e, d) / math.sqrt(e * h))
        self.W_in = nn.Parameter(torch.randn(d, m) / math.sqrt(d))
        self.b_in = nn.Parameter(torch.zeros(m))
        self.W_out = nn.Parameter(torch.randn(m, d) / math.sqrt(m))
        self.b_out = nn.Parameter(torch.zeros(d))
        self.W_U = nn.Parameter(torch.randn(d, P) / math.sqrt(d))
        for name in self.stage_names:
            self.add_module(name, nn.Identity())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The logits `# [b, p]` of `tokens # [b, 3]`, fused (the training graph; module docstring). No hooks run."""
        x = self.W_E[tokens] + self.W_pos  # [b, 3, d]
        last = x[:, -1]  # [b, d]
        q = torch.einsum("bd,hde->bhe", last, self.W_Q)  # [b, H, e]
        k = torch.einsum("bpd,hde->bhpe", x, self.W_K)  # [b, H, 3, e]
        v = torch.einsum("bpd,hde->bhpe", x, self.W_V)  # [b, H, 3, e]
        pattern = (torch.einsum("bhe,bhpe->bhp", q, k) / math.sqrt(D_HEAD)).softmax(-1)  # [b, H, 3]
        z = torch.einsum("bhp,bhpe->bhe", pattern, v)  # [b, H, e]
        resid_mid = last + torch.einsum("bhe,hed->bd", z, self.W_O)  # [b, d]
        post = F.relu(resid_mid @ self.W_in + self.b_in)  # [b, m]
        return (resid_mid + post @ self.W_out + self.b_out) @ self.W_U  # [b, p]

    def run_stage(self, name: str, x: torch.Tensor, carry: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        hook = getattr(self, name)
        if name == "hook_embed":
            return hook(self.W_E[x])  # [b, 3, d] from tokens [b, 3]
        if name == "hook_resid_pre":
            return hook(x + self.W_pos)  # [b, 3, d]
        if name == "attn_hook_pattern":
            q = torch.einsum("bd,hde->bhe", x[:, -1], self.W_Q)  # [b, H, e]: the last position's query
            k = torch.einsum("bpd,hde->bhpe", x, self.W_K)  # [b, H, 3, e]
            return hook((torch.einsum("bhe,bhpe->bhp", q, k) / math.sqrt(D_HEAD)).softmax(-1))  # [b, H, 3]
        assert carry is not None, f"stage '{name}' reads carried activations"
        if name == "attn_hook_z":
            v = torch.einsum("bpd,hde->bhpe", carry["hook_resid_pre"], self.W_V)  # [b, H, 3, e]
            return hook(torch.einsum("bhp,bhpe->bhe", x, v))  # [b, H, e]
        if name == "hook_resid_mid":
            return hook(carry["hook_resid_pre"][:, -1] + torch.einsum("bhe,hed->bd", x, self.W_O))  # [b, d]
        if name == "mlp_hook_pre":
            return hook(x @ self.W_in + self.b_in)  # [b, m]
        if name == "mlp_hook_post":
            return hook(F.relu(x))  # [b, m]
        if name == "hook_resid_post":
            return hook(carry["hook_resid_mid"] + x @ self.W_out + self.b_out)  # [b, d]
        if name == "logits":
            return hook(x @ self.W_U)  # [b, p]
        raise KeyError(f"{type(self).__name__} has no stage '{name}'")
