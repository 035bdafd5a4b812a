"""
Pretrain a small GPT for a fixed time budget. This is the file the agent edits.

Reads top to bottom: device and attention backend, the model, the optimizer, the knobs, the
training loop. Under autoresearch it trains for AUTORESEARCH_BUDGET_S seconds on the task's
budget clock (wall time, or the CPU seconds of the run's process tree: prepare.budget_clock),
prints a summary, and saves the model to $AUTORESEARCH_OUT; evaluate.py (read-only) then
rebuilds the model from this file and computes the number that counts, val_bpb. Run by hand
(`uv run train.py`), it calls evaluate.py itself at the end, so you see that same number.

The nanochat and tinylm templates share this file line for line except the knobs block.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from prepare import BUDGET_CLOCK, MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, budget_clock, cpu_threads, make_dataloader

# ---------------------------------------------------------------------------
# Device, precision and attention backend
# ---------------------------------------------------------------------------


def detect_device() -> torch.device:
    """CUDA (NVIDIA, or AMD through ROCm), else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return platform.processor() or platform.machine() or "CPU"


def use_bf16(device: torch.device) -> bool:
    """bf16 autocast only where it is fast: GPUs with bf16 tensor cores (NVIDIA Ampere and newer,
    AMD Instinct). On a CPU a bf16 backward pass is reported to be hundreds of times slower than
    fp32, and MPS support is patchy, so those train in fp32."""
    if device.type != "cuda":
        return False
    return torch.version.hip is not None or torch.cuda.get_device_capability(device)[0] >= 8


def autocast(device: torch.device):
    if use_bf16(device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_works(device: torch.device) -> bool:
    """torch.compile makes its GPU kernels with Triton: CUDA or ROCm on Linux. Not on MPS or
    Windows; and on a CPU the C++ compile would eat much of a short budget."""
    return device.type == "cuda" and platform.system() != "Windows" and importlib.util.find_spec("triton") is not None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def load_flash_attention_3():
    """FlashAttention-3 kernels from the `kernels` package (Hopper only, fetched from the Hugging
    Face hub on first use, cached after). None anywhere else or when they fail to load."""
    if not torch.cuda.is_available() or torch.version.hip is not None:
        return None
    if torch.cuda.get_device_capability() != (9, 0):
        return None
    try:
        from kernels import get_kernel

        return get_kernel("varunneal/flash-attention-3").flash_attn_interface
    except Exception as exc:  # not installed, offline, no matching build: fall back to SDPA
        print(f"FlashAttention-3 not available ({type(exc).__name__}: {exc}); using PyTorch SDPA", flush=True)
        return None


FA3 = load_flash_attention_3()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """Causal attention over (B, T, heads, head_dim) tensors: the query at t sees the keys at
    t - window ... t. FA3 where it loaded, else PyTorch SDPA with a sliding-window mask."""
    T = q.size(1)
    if FA3 is not None and q.is_cuda:
        if torch.is_autocast_enabled("cuda"):  # norms may have handed back fp32; FA3 wants bf16
            q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
        if q.dtype in (torch.bfloat16, torch.float16):
            y = FA3.flash_attn_func(q, k, v, causal=True, window_size=(window, 0))
            return y[0] if isinstance(y, tuple) else y
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if k.size(1) != q.size(1):  # grouped-query attention: share each kv head among q heads
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        v = v.repeat_interleave(q.size(1) // v.size(1), dim=1)
    if window >= T - 1:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        pos = torch.arange(T, device=q.device)
        distance = pos[:, None] - pos[None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=(distance >= 0) & (distance <= window))
    return y.transpose(1, 2)


# ---------------------------------------------------------------------------
# Model: GPT with rotary embeddings, QK-norm, value embeddings, sliding windows
# ---------------------------------------------------------------------------


@dataclass
class GPTConfig:
    sequence_len: int = 2048
    vocab_size: int = 8192
    n_layer: int = 8
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 512
    window_pattern: str = "SSSL"
    softcap: float = 15.0


def norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without a learned scale."""
    return F.rms_norm(x, (x.size(-1),))


def has_value_embedding(layer: int, n_layer: int) -> bool:
    """Every other layer, counted back from the last one (which always has one)."""
    return layer % 2 == (n_layer - 1) % 2


def rotary_tables(length: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position x frequency, shaped (1, length, 1, head_dim / 2) to broadcast over (B, T, H, D/2)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the pairs (x[i], x[i + D/2]) by a position-dependent angle."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    # the value-embedding gate looks at this many channels of the input (not searched by tune)
    VE_GATE_CHANNELS = 32  # search: fixed

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        assert config.n_embd % config.n_head == 0 and config.n_head % config.n_kv_head == 0
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.gate_channels = min(self.VE_GATE_CHANNELS, config.n_embd)
        self.ve_gate = None
        if has_value_embedding(layer, config.n_layer):
            self.ve_gate = nn.Linear(self.gate_channels, self.n_kv_head, bias=False)

    def forward(self, x, ve, cos, sin, window: int) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:
            # value embedding: a per-token vector mixed into v, by a gate in (0, 2) that the
            # input decides per head (1 at init, since the gate weights start at zero)
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.gate_channels]))
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        q = norm(apply_rotary(q, cos, sin))  # QK-norm keeps attention logits bounded
        k = norm(apply_rotary(k, cos, sin))
        y = attention(q, k, v, window)
        return self.c_proj(y.reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())  # relu squared


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(config, layer)
        self.mlp = MLP(config)

    def forward(self, x, ve, cos, sin, window: int) -> torch.Tensor:
        x = x + self.attn(norm(x), ve, cos, sin, window)
        return x + self.mlp(norm(x))


def window_sizes(config: GPTConfig) -> list[int]:
    """Per layer, how many earlier tokens attention sees: L = the whole context, S = half of it.
    The pattern repeats over the layers; the last layer always gets L."""
    pattern = config.window_pattern.upper()
    assert pattern and set(pattern) <= {"S", "L"}, f"WINDOW_PATTERN must use only S and L, got {pattern!r}"
    full, short = config.sequence_len, config.sequence_len // 2
    sizes = [full if pattern[i % len(pattern)] == "L" else short for i in range(config.n_layer)]
    sizes[-1] = full
    return sizes


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # per layer: x <- resid_lambda * x + x0_lambda * x0, where x0 is the normed embedding
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        kv_dim = config.n_kv_head * (config.n_embd // config.n_head)
        self.value_embeds = nn.ModuleDict({
            str(i): nn.Embedding(config.vocab_size, kv_dim)
            for i in range(config.n_layer) if has_value_embedding(i, config.n_layer)
        })
        self.windows = window_sizes(config)
        # tables for 10x the training context, so longer inputs still work
        cos, sin = rotary_tables(10 * config.sequence_len, config.n_embd // config.n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        bound = 3**0.5 * self.config.n_embd**-0.5  # uniform with std 1/sqrt(width)
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for linear in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(linear.weight, -bound, bound)
            # output projections start at zero: every block begins as the identity
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        for embedding in self.value_embeds.values():
            nn.init.uniform_(embedding.weight, -bound, bound)
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)

    def estimate_flops(self) -> float:
        """Training FLOPs per token: 6 per matmul weight (forward and backward) plus attention."""
        c = self.config
        lookups = self.wte.weight.numel() + sum(e.weight.numel() for e in self.value_embeds.values())
        lookups += self.resid_lambdas.numel() + self.x0_lambdas.numel()
        matmuls = 6 * (sum(p.numel() for p in self.parameters()) - lookups)
        head_dim = c.n_embd // c.n_head
        scores = sum(12 * c.n_head * head_dim * min(w + 1, c.sequence_len) for w in self.windows)
        return matmuls + scores

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        """Logits (B, T, vocab) in fp32, or the cross-entropy loss when TARGETS are given."""
        T = idx.size(1)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, ve, cos, sin, self.windows[i])
        logits = self.lm_head(norm(x)).float()
        softcap = self.config.softcap
        logits = softcap * torch.tanh(logits / softcap)  # smoothly bounded to (-softcap, softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction=reduction)


# ---------------------------------------------------------------------------
# Optimizer: Muon for the matrices inside the blocks, AdamW for everything else
# ---------------------------------------------------------------------------

# Polar Express (Amsel et al., 2025): per-iteration coefficients of the odd polynomial
# a x + b x^3 + c x^5 that drives the singular values of a matrix to 1 in few steps
POLAR_EXPRESS_COEFFS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def muon_update(grads, params, momentum_buf, second_buf, momentum, lr, wd, beta2,
                ns_steps: int, red_dim: int, ortho_dtype: torch.dtype) -> None:
    """One Muon step on a stack of same-shaped matrices (all arguments are tensors except the last three)."""
    # Nesterov momentum
    momentum_buf.lerp_(grads, 1 - momentum)
    update = grads.lerp(momentum_buf, momentum)
    # orthogonalize: push every singular value of the update towards 1 (Polar Express iterations)
    X = update.to(ortho_dtype)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the wide orientation so the Gram matrix X X^T is the small one
        X = X.mT
    for a, b, c in POLAR_EXPRESS_COEFFS[:ns_steps]:
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    if tall:
        X = X.mT
    g = X.float()
    # NorMuon: a second-moment estimate per row (or column) evens out the update's scale across
    # neurons, then the whole update is rescaled back to the norm it had
    mean_sq = g.square().mean(dim=red_dim, keepdim=True)
    second_buf.lerp_(mean_sq, 1 - beta2)
    scale = second_buf.clamp_min(1e-10).rsqrt()
    norm_before = mean_sq.sum(dim=(-2, -1), keepdim=True).sqrt()
    norm_after = (mean_sq * scale.square()).sum(dim=(-2, -1), keepdim=True).sqrt()
    g = g * scale * (norm_before / norm_after.clamp_min(1e-10))
    # cautious weight decay: only shrink weights where the update already pushes them toward zero
    agrees = (g * params) >= 0
    params.sub_(lr * (g + wd * params * agrees))


class MuonAdamW:
    """One optimizer, two rules: param groups of kind "muon" (stacks of same-shaped matrices) and
    of kind "adamw". Each group keeps its starting lr as initial_lr for the schedule. (A plain
    class: torch.optim.Optimizer would pull in torch._dynamo, seconds of import for nothing.)"""

    def __init__(self, groups: list[dict], compiled: bool, ortho_dtype: torch.dtype) -> None:
        for group in groups:
            group["initial_lr"] = group["lr"]
        self.param_groups = groups
        self.state: dict[torch.Tensor, dict] = {}
        self.ortho_dtype = ortho_dtype
        self.muon_fn = torch.compile(muon_update, dynamic=False, fullgraph=True) if compiled else muon_update

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon(group)
            else:
                self._adamw(group)

    def _adamw(self, group: dict) -> None:
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.setdefault(p, {})
            if not state:
                state["step"] = 0
                state["m"] = torch.zeros_like(p)
                state["v"] = torch.zeros_like(p)
            state["step"] += 1
            m, v, t = state["m"], state["v"], state["step"]
            m.lerp_(p.grad, 1 - beta1)
            v.lerp_(p.grad.square(), 1 - beta2)
            p.mul_(1 - group["lr"] * group["weight_decay"])  # decoupled weight decay
            denom = (v / (1 - beta2**t)).sqrt_().add_(group["eps"])
            p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**t))

    def _muon(self, group: dict) -> None:
        params = group["params"]
        grads = torch.stack([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        rows, cols = grads.shape[-2:]
        state = self.state.setdefault(params[0], {})
        if not state:
            red_dim = -1 if rows >= cols else -2  # normalize along the longer side's neurons
            state["red_dim"] = red_dim
            state["momentum_buf"] = torch.zeros_like(grads)
            shape = (len(params), rows, 1) if red_dim == -1 else (len(params), 1, cols)
            state["second_buf"] = torch.zeros(shape, dtype=torch.float32, device=grads.device)
            # hyperparameters live in 0-d device tensors, so a compiled step never recompiles
            state["hyper"] = [torch.zeros((), dtype=torch.float32, device=grads.device) for _ in range(4)]
        momentum, lr, wd, beta2 = state["hyper"]
        momentum.fill_(group["momentum"])
        lr.fill_(group["lr"] * max(1.0, rows / cols) ** 0.5)  # tall matrices take bigger steps
        wd.fill_(group["weight_decay"])
        beta2.fill_(group["beta2"])
        stacked = torch.stack(list(params))
        self.muon_fn(grads, stacked, state["momentum_buf"], state["second_buf"], momentum, lr, wd, beta2,
                     group["ns_steps"], state["red_dim"], self.ortho_dtype)
        torch._foreach_copy_(list(params), list(stacked.unbind(0)))


# ---------------------------------------------------------------------------
# Knobs: edit them here, there are no command-line flags
# ---------------------------------------------------------------------------

# Sized for a laptop CPU, following the original's advice for small machines: a shallow
# model, one attention window (L), short sequences, a small batch, a small vocabulary.

# Model shape. Width = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM.
DEPTH = 4  # search: int(2, 8)
ASPECT_RATIO = 32  # search: [16, 32, 48, 64]
HEAD_DIM = 64  # search: [32, 64, 128]
# Attention window per layer, repeating: L sees the whole context, S half of it (the last layer is always L).
WINDOW_PATTERN = "L"  # search: ["L", "SL", "SSSL"]

# Batch. Tokens per optimizer step; each forward pass takes DEVICE_BATCH_SIZE rows of MAX_SEQ_LEN tokens.
TOTAL_BATCH_SIZE = 2**12  # search: [2048, 4096, 8192, 16384]
DEVICE_BATCH_SIZE = 8  # search: [4, 8]

# Learning rates. The AdamW ones are scaled by (width / 768) ** -0.5.
EMBEDDING_LR = 0.6  # search: log(0.1, 2.0)
UNEMBEDDING_LR = 0.004  # search: log(0.001, 0.02)
MATRIX_LR = 0.04  # search: log(0.01, 0.1)
SCALAR_LR = 0.5  # search: log(0.1, 2.0)
WEIGHT_DECAY = 0.2  # search: float(0.0, 0.5)
ADAM_BETAS = (0.8, 0.95)

# Schedule, as fractions of the time budget: warm up, hold, then decay linearly to FINAL_LR_FRAC.
WARMUP_RATIO = 0.0  # search: float(0.0, 0.2)
WARMDOWN_RATIO = 0.5  # search: float(0.2, 0.8)
FINAL_LR_FRAC = 0.0  # search: float(0.0, 0.2)

# torch.compile, where it works (see compile_works).
COMPILE = True

# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

# Dense bf16 tensor-core peaks (FLOP/s) from vendor datasheets, for MFU. Looked up by name,
# longer names first so that "H200" is not taken for "H20".
GPU_PEAK_FLOPS = [
    ("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("GH200", 989.5e12), ("H200", 989.5e12),
    ("H100", 989.5e12), ("H800", 989.5e12), ("H20", 148e12), ("B200", 2250e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362.05e12), ("L40", 181.05e12), ("L4", 121e12),
    ("RTX 5090", 209.5e12), ("RTX 5080", 112.6e12), ("RTX 4090", 165.2e12), ("RTX 3090", 71e12),
    ("MI325X", 1307.4e12), ("MI300X", 1307.4e12), ("MI250X", 383e12),
]


def peak_flops(device: torch.device, bf16: bool) -> tuple[float, str]:
    """The device's peak FLOP/s for the dtype we train in, and where the number came from. A GPU
    from the table gets its datasheet figure; anything else (CPUs, Apple, other GPUs) the best
    matmul throughput measured in a short probe, which flatters MFU a little."""
    if device.type == "cuda" and bf16:
        name = torch.cuda.get_device_name(device)
        for key, flops in GPU_PEAK_FLOPS:
            if key in name:
                return flops, f"datasheet {key}"
    n = 4096 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(5):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        synchronize(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best, "measured matmul"


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory; on a CPU the peak resident memory of this process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
    except ImportError:  # Windows
        return 0.0


def build_optimizer(model: GPT, compiled: bool, ortho_dtype: torch.dtype) -> MuonAdamW:
    scale = (model.config.n_embd / 768) ** -0.5  # AdamW rates were tuned at width 768
    adamw = dict(kind="adamw", betas=ADAM_BETAS, eps=1e-10, weight_decay=0.0)
    groups = [
        dict(adamw, params=[model.lm_head.weight], lr=UNEMBEDDING_LR * scale),
        dict(adamw, params=[model.wte.weight], lr=EMBEDDING_LR * scale),
        dict(adamw, params=list(model.value_embeds.parameters()), lr=EMBEDDING_LR * scale),
        dict(adamw, params=[model.resid_lambdas], lr=SCALAR_LR * 0.01),
        dict(adamw, params=[model.x0_lambdas], lr=SCALAR_LR, betas=(0.96, 0.95)),
    ]
    matrices = list(model.blocks.parameters())
    for shape in sorted({tuple(p.shape) for p in matrices}):
        groups.append(dict(kind="muon", params=[p for p in matrices if tuple(p.shape) == shape],
                           lr=MATRIX_LR, momentum=0.95, beta2=0.95, ns_steps=5, weight_decay=WEIGHT_DECAY))
    grouped = sum(len(g["params"]) for g in groups)
    assert grouped == len(list(model.parameters())), "every parameter must be in exactly one group"
    return MuonAdamW(groups, compiled=compiled, ortho_dtype=ortho_dtype)


def lr_multiplier(progress: float) -> float:
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    left = (1.0 - progress) / WARMDOWN_RATIO
    return left + (1.0 - left) * FINAL_LR_FRAC


def muon_momentum(step: int) -> float:
    """0.85 rising to 0.95 over the first 300 steps."""
    frac = min(step / 300, 1.0)
    return 0.85 + 0.10 * frac


def weight_decay_at(progress: float) -> float:
    return WEIGHT_DECAY * (1.0 - progress)


def main() -> None:
    t_start = time.time()
    seed = int(os.environ.get("AUTORESEARCH_SEED") or 0)
    budget = float(os.environ.get("AUTORESEARCH_BUDGET_S") or TIME_BUDGET)
    torch.manual_seed(seed)
    torch.set_num_threads(cpu_threads())  # no more threads than cores we get: spare ones would spin
    clock = budget_clock()
    device = detect_device()
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for whatever runs outside autocast
    bf16 = use_bf16(device)
    compiled = COMPILE and compile_works(device)
    print(f"device={device.type} ({device_name(device)}) bf16={bf16} compile={compiled} "
          f"attention={'fa3' if FA3 is not None else 'sdpa'} seed={seed} budget={budget:g}s ({BUDGET_CLOCK} clock) threads={torch.get_num_threads()}", flush=True)

    tokenizer = Tokenizer.from_directory()
    width = -(-DEPTH * ASPECT_RATIO // HEAD_DIM) * HEAD_DIM
    config = GPTConfig(sequence_len=MAX_SEQ_LEN, vocab_size=tokenizer.get_vocab_size(), n_layer=DEPTH,
                       n_head=width // HEAD_DIM, n_kv_head=width // HEAD_DIM, n_embd=width,
                       window_pattern=WINDOW_PATTERN)
    with torch.device(device):
        model = GPT(config)
    model.init_weights()
    num_params = sum(p.numel() for p in model.parameters())
    flops_per_token = model.estimate_flops()
    print(f"config={asdict(config)} params={num_params:,} flops_per_token={flops_per_token:.3e}", flush=True)

    tokens_per_pass = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
    assert TOTAL_BATCH_SIZE % tokens_per_pass == 0, "TOTAL_BATCH_SIZE must be a multiple of DEVICE_BATCH_SIZE * MAX_SEQ_LEN"
    grad_accum = TOTAL_BATCH_SIZE // tokens_per_pass
    optimizer = build_optimizer(model, compiled, torch.bfloat16 if bf16 else torch.float32)
    train_model = torch.compile(model, dynamic=False) if compiled else model
    loader = make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, "train", device=device)
    x, y, epoch = next(loader)
    peak, peak_source = peak_flops(device, bf16)
    untimed = 10 if compiled else 1  # the first steps compile and warm up; they do not count
    print(f"grad_accum={grad_accum} peak_flops={peak:.3e} ({peak_source}) untimed_steps={untimed}", flush=True)

    step, training_time, wall_time, smooth_loss = 0, 0.0, 0.0, 0.0
    while True:
        synchronize(device)
        t0, c0 = time.time(), clock()
        for _ in range(grad_accum):
            with autocast(device):
                loss = train_model(x, y)
            (loss / grad_accum).backward()
            x, y, epoch = next(loader)  # fetch the next batch while the device works
        progress = min(training_time / budget, 1.0)
        lrm = lr_multiplier(progress)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = muon_momentum(step)
                group["weight_decay"] = weight_decay_at(progress)
        optimizer.step()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if not math.isfinite(loss_value) or loss_value > 100:
            print(f"FAIL: the loss diverged ({loss_value}) at step {step}", flush=True)
            sys.exit(1)
        synchronize(device)
        dt = time.time() - t0
        if step >= untimed:
            training_time += clock() - c0  # on the budget's clock
            wall_time += dt
        smooth_loss = 0.9 * smooth_loss + 0.1 * loss_value
        mfu = 100 * flops_per_token * TOTAL_BATCH_SIZE / dt / peak
        print(f"step {step:05d} ({100 * progress:.1f}%) | loss {smooth_loss / (1 - 0.9 ** (step + 1)):.6f} | "
              f"lrm {lrm:.2f} | dt {1000 * dt:.0f}ms | tok/sec {TOTAL_BATCH_SIZE / dt:,.0f} | mfu {mfu:.1f}% | "
              f"epoch {epoch} | remaining {max(0.0, budget - training_time):.0f}s", flush=True)
        if step == 0:  # Python's GC pauses show up as slow steps; nothing here needs it
            gc.collect()
            gc.freeze()
            gc.disable()
        step += 1
        if step > untimed and training_time >= budget:
            break

    timed_steps = step - untimed
    tokens_per_sec = TOTAL_BATCH_SIZE * timed_steps / wall_time if wall_time > 0 else 0.0
    own_out = not os.environ.get("AUTORESEARCH_OUT")
    out_dir = Path(tempfile.mkdtemp(prefix="train-")) if own_out else Path(os.environ["AUTORESEARCH_OUT"])
    out_dir.mkdir(parents=True, exist_ok=True)
    # serve.py rebuilds GPT(GPTConfig(**config)) from this file and loads these weights
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    torch.save({"config": asdict(config), "state_dict": state}, out_dir / "model.pt")

    print("---")
    print(f"training_seconds: {training_time:.1f}")  # on the budget clock
    print(f"training_wall_s:  {wall_time:.1f}")
    print(f"total_seconds:    {time.time() - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_memory_mb(device):.1f}")
    print(f"mfu_percent:      {100 * flops_per_token * tokens_per_sec / peak:.2f}")
    print(f"tokens_per_sec:   {tokens_per_sec:.0f}")
    print(f"total_tokens_M:   {step * TOTAL_BATCH_SIZE / 1e6:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.1f}")
    print(f"depth:            {DEPTH}", flush=True)

    if "AUTORESEARCH_PHASE" not in os.environ:
        # run by hand: score the model exactly as the harness would (val_bpb, holdout_bpb)
        env = {**os.environ, "AUTORESEARCH_OUT": str(out_dir), "AUTORESEARCH_PHASE": "evaluate"}
        done = subprocess.run([sys.executable, str(Path(__file__).resolve().with_name("evaluate.py"))], env=env)
        if own_out:
            shutil.rmtree(out_dir, ignore_errors=True)
        sys.exit(done.returncode)


if __name__ == "__main__":
    main()
