"""Models to time with no downloads: a LLaMA-style decoder with random weights.

:func:`build_llama` writes the architecture out with plain modules and explicit matmuls
(torch 1.13 has no ``scaled_dot_product_attention``): RMSNorm, rotary position embeddings,
a SwiGLU MLP, grouped-query attention with a KV cache. On the ``meta`` device it allocates
nothing, so LLaMA-2-70B can be timed (``offload(timing_only=True)``) on a small machine.
:func:`generate` runs a prefill and the decode steps under the regions ``prefill``/``decode``.
"""

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from .context import region

#: The hyper-parameters of the presets (published model cards; tiny is ours, for tests).
PRESETS = {
    "tiny": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=256, hidden_dim=172, max_seq_len=512),
    "llama2-7b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, vocab_size=32000, hidden_dim=11008, max_seq_len=4096),
    "llama2-13b": dict(dim=5120, n_layers=40, n_heads=40, n_kv_heads=40, vocab_size=32000, hidden_dim=13824, max_seq_len=4096),
    "llama2-70b": dict(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, vocab_size=32000, hidden_dim=28672, max_seq_len=4096),
    "llama3-8b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, vocab_size=128256, hidden_dim=14336,
                      max_seq_len=8192, rope_theta=500000.0),
}


@dataclasses.dataclass
class LlamaConfig:
    """The usual LLaMA hyper-parameters (the defaults are LLaMA-2-7B's)."""

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 32
    vocab_size: int = 32000
    hidden_dim: int = 11008
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 4096

    def __post_init__(self):
        for f in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "hidden_dim", "max_seq_len"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ValueError("LlamaConfig.%s = %r: want a positive int" % (f, v))
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError("LlamaConfig: dim %d must split into %d heads of even size" % (self.dim, self.n_heads))
        if self.n_heads % self.n_kv_heads:
            raise ValueError("LlamaConfig: n_heads %d must be a multiple of n_kv_heads %d" % (self.n_heads, self.n_kv_heads))

    @classmethod
    def preset(cls, name):
        """The config of a named preset (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ValueError("unknown LLaMA preset %r: want one of %s" % (name, ", ".join(PRESETS)))
        return cls(**PRESETS[name])

    @property
    def head_dim(self):
        """Dimensions per attention head."""
        return self.dim // self.n_heads

    def gemms_per_forward(self):
        """Device ops of one forward pass: per layer 7 projections and 2 attention matmuls, plus the head."""
        return self.n_layers * 9 + 1


class RMSNorm(nn.Module):
    """x / rms(x) · weight."""

    def __init__(self, dim, eps, device=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    """Grouped-query attention with rotary embeddings and a KV cache, in explicit matmuls.

    Hidden states are 2-D [batch·tokens, dim], so each projection is one GEMM; the cache is
    [batch, kv heads, positions, head dim], so the attention products are plain bmm's.
    """

    def __init__(self, cfg, device=None):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.dim, cfg.head_dim
        self.wq = nn.Linear(d, cfg.n_heads * hd, bias=False, device=device)
        self.wk = nn.Linear(d, cfg.n_kv_heads * hd, bias=False, device=device)
        self.wv = nn.Linear(d, cfg.n_kv_heads * hd, bias=False, device=device)
        self.wo = nn.Linear(cfg.n_heads * hd, d, bias=False, device=device)
        self.cache_k = self.cache_v = None

    def setup_cache(self, batch, length, device):
        """Allocates an empty KV cache for ``batch`` sequences of up to ``length`` tokens."""
        shape = (batch, self.cfg.n_kv_heads, length, self.cfg.head_dim)
        self.cache_k = torch.zeros(shape, device=device)
        self.cache_v = torch.zeros(shape, device=device)

    def forward(self, x, b, t, pos, cos, sin, mask):
        cfg = self.cfg
        hd, nh, nkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        if self.cache_k is None or self.cache_k.shape[0] != b or self.cache_k.shape[2] < pos + t:
            raise RuntimeError("Attention: KV cache does not fit batch %d, positions %d…%d; call model.setup_cache" % (b, pos, pos + t))
        # Rotary embedding: x·cos + rotate_half(x)·sin, with rotate_half's sign folded into sin.
        q = self.wq(x).view(b, t, nh, hd)
        q = torch.addcmul(q * cos, q.roll(hd // 2, -1), sin)
        k = self.wk(x).view(b, t, nkv, hd)
        k = torch.addcmul(k * cos, k.roll(hd // 2, -1), sin)
        v = self.wv(x).view(b, t, nkv, hd)
        s = pos + t
        self.cache_k.narrow(2, pos, t).copy_(k.transpose(1, 2))
        self.cache_v.narrow(2, pos, t).copy_(v.transpose(1, 2))
        keys, values = self.cache_k.narrow(2, 0, s), self.cache_v.narrow(2, 0, s)
        rep = nh // nkv
        if rep > 1:
            keys = keys[:, :, None].expand(b, nkv, rep, s, hd)
            values = values[:, :, None].expand(b, nkv, rep, s, hd)
        keys = keys.reshape(b * nh, s, hd)
        values = values.reshape(b * nh, s, hd)
        q = q.transpose(1, 2).reshape(b * nh, t, hd)
        scores = torch.bmm(q, keys.transpose(1, 2)) * (1.0 / math.sqrt(hd))
        if mask is not None:
            scores = scores + mask
        out = torch.bmm(F.softmax(scores, dim=-1), values)
        return self.wo(out.view(b, nh, t, hd).transpose(1, 2).reshape(b * t, nh * hd))


class FeedForward(nn.Module):
    """The SwiGLU MLP: w2(silu(w1 x) · w3 x)."""

    def __init__(self, cfg, device=None):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False, device=device)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False, device=device)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False, device=device)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm attention and MLP with residuals."""

    def __init__(self, cfg, device=None):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps, device)
        self.attention = Attention(cfg, device)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps, device)
        self.feed_forward = FeedForward(cfg, device)

    def forward(self, x, b, t, pos, cos, sin, mask):
        h = x + self.attention(self.attention_norm(x), b, t, pos, cos, sin, mask)
        return h + self.feed_forward(self.ffn_norm(h))


def _rope_tables(cfg):
    """cos and signed sin of the rotary angles, [max_seq_len, head_dim]."""
    hd = cfg.head_dim
    freqs = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(cfg.max_seq_len, dtype=torch.float32), freqs)
    # rotate_half(x) = cat(-x2, x1) = roll(x, hd/2) with the first half negated: fold the sign into sin.
    sin = torch.cat((-ang.sin(), ang.sin()), dim=-1)
    return torch.cat((ang.cos(), ang.cos()), dim=-1), sin


class Llama(nn.Module):
    """A LLaMA decoder. ``forward(tokens, pos)`` returns the logits of each sequence's last position."""

    def __init__(self, cfg, device=None):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim, device=device)
        self.layers = nn.ModuleList(TransformerBlock(cfg, device) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps, device)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False, device=device)
        cos, sin = _rope_tables(cfg)
        self.register_buffer("rope_cos", cos.to(device), persistent=False)
        self.register_buffer("rope_sin", sin.to(device), persistent=False)

    def setup_cache(self, batch, length):
        """Allocates each layer's KV cache for ``batch`` sequences of up to ``length`` tokens."""
        if length > self.cfg.max_seq_len:
            raise ValueError("sequence of %d tokens exceeds max_seq_len %d" % (length, self.cfg.max_seq_len))
        dev = self.output.weight.device
        for layer in self.layers:
            layer.attention.setup_cache(batch, length, dev)

    def forward(self, tokens, pos=0, all_logits=False):
        """Logits [batch, vocab] of the last position (``all_logits``: [batch, tokens, vocab])."""
        b, t = tokens.shape
        if pos + t > self.cfg.max_seq_len:
            raise ValueError("positions %d…%d exceed max_seq_len %d" % (pos, pos + t, self.cfg.max_seq_len))
        h = self.tok_embeddings(tokens).view(b * t, self.cfg.dim)
        cos = self.rope_cos[pos:pos + t].view(1, t, 1, -1)
        sin = self.rope_sin[pos:pos + t].view(1, t, 1, -1)
        mask = None
        if t > 1:
            mask = torch.full((t, pos + t), float("-inf"), device=h.device).triu(pos + 1)
        for layer in self.layers:
            h = layer(h, b, t, pos, cos, sin, mask)
        h = self.norm(h)
        if all_logits:
            return self.output(h).view(b, t, -1)
        return self.output(h.view(b, t, -1)[:, -1])


def build_llama(cfg, seed=0, device="cpu"):
    """A :class:`Llama` for ``cfg`` (a LlamaConfig or a preset name) with random weights.

    ``device="meta"`` allocates nothing (shapes only, for ``offload(timing_only=True)``);
    on the CPU the weights are drawn from N(0, 0.02²) with ``seed`` (norms start at 1).
    """
    if isinstance(cfg, str):
        cfg = LlamaConfig.preset(cfg)
    if not isinstance(cfg, LlamaConfig):
        raise TypeError("build_llama: want a LlamaConfig or preset name, got %s" % type(cfg).__name__)
    device = torch.device(device)
    if device.type == "meta":
        return Llama(cfg, device="meta").eval()
    model = Llama(cfg, device="meta").to_empty(device=device)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        cos, sin = _rope_tables(cfg)
        model.rope_cos, model.rope_sin = cos.to(device), sin.to(device)
    return model.eval()


def generate(model, prompt_len, new_tokens, batch=1, seed=0):
    """Greedy generation: a prefill of ``prompt_len`` random tokens, then decode steps.

    The prefill (region ``"prefill"``) yields the first new token; each further token is one
    decode step (region ``"decode"``) of one position, so ``new_tokens`` tokens cost one
    prefill and ``new_tokens - 1`` decode steps. Returns the tokens [batch, prompt_len + new_tokens].
    """
    for name, v in (("prompt_len", prompt_len), ("new_tokens", new_tokens), ("batch", batch)):
        if not isinstance(v, int) or v < 1:
            raise ValueError("generate: %s %r: want a positive int" % (name, v))
    cfg = model.cfg
    dev = model.output.weight.device
    model.setup_cache(batch, prompt_len + new_tokens)
    if dev.type == "meta":
        tokens = torch.zeros(batch, prompt_len, dtype=torch.long, device=dev)
    else:
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, cfg.vocab_size, (batch, prompt_len), generator=g).to(dev)
    out = [tokens]
    with torch.no_grad():
        with region("prefill"):
            nxt = model(tokens, 0).argmax(-1, keepdim=True)
        out.append(nxt)
        with region("decode"):
            for pos in range(prompt_len, prompt_len + new_tokens - 1):
                nxt = model(nxt, pos).argmax(-1, keepdim=True)
                out.append(nxt)
    return torch.cat(out, dim=1)
