#!/usr/bin/env python3
"""Golden files for ckpt's multi-architecture float32 forward pass (logits and llama.cpp-style
perplexity), made by the pinned reference stack (tools/requirements.txt).

Run by tools/make_fixtures.sh as its last step (it needs fixtures/models/tiny-llama's tokenizer
files and fixtures/eval/eval_tokens_u32le.bin, written by make_fixtures.py and
make_eval_goldens.py). The output is a pure function of this script, the pinned wheels and those
fixtures: a second run rewrites every file byte for byte. At the end it rewrites
fixtures/SHA256SUMS the way make_fixtures.py does.

Writes, under fixtures/architectures/:
  <case>/                 a tiny random model per architecture feature (bf16 model.safetensors,
                          config.json and generation_config.json as save_pretrained writes them,
                          the tiny-llama tokenizer files)
  <case>-nf4/             the same model quantized by transformers + bitsandbytes (NF4, no double
                          quantization, compute dtype float32) and saved by save_pretrained
  logits.safetensors      token_ids I32 [64] and F32 [32, 512] logits per folder (rows 32..63)
  manifest.json           per case: architecture, features, tensors, logits facts, feature
                          ablations, perplexity goldens (llama.cpp's method)
  README.md               how they were made and the exact definitions
  SPEC.md                 the transformers semantics a float32 forward pass must reproduce, per
                          family, with the decisive source lines of the pinned transformers

Options: --out DIR (default <repo>/fixtures). --only SECTIONS is accepted so that
tools/make_fixtures.sh can pass its own arguments through: this script runs only when --only is
absent or names the 'models' section. --spec-copy PATH also writes SPEC.md to PATH.
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import cite, log  # noqa: E402

# bitsandbytes wraps some CPU fallbacks in torch.compile; run them eagerly (same arithmetic).
fc.pin_environment(TORCHDYNAMO_DISABLE="1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import make_eval_goldens as meg  # noqa: E402  (compact JSON, perplexity helpers)
import make_quant_goldens as mqg  # noqa: E402  (quiet, portable_bnb, copy_tokenizer)

import bitsandbytes  # noqa: E402
import bitsandbytes.functional as bnbF  # noqa: E402
import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM,
    MistralConfig, MistralForCausalLM, MixtralConfig, MixtralForCausalLM, Olmo2Config, Olmo2ForCausalLM,
    Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
    Qwen3MoeConfig, Qwen3MoeForCausalLM,
)

REPO = TOOLS.parent
VOCAB = 512
SEED = 7300
N_TOKENS = 64
PPL_CTX = 64
PPL_SHORT_CTX = 32
PPL_CHUNKS = 16
BITE_MIN = 1e-2  # every feature ablation must move some logit by at least this much
TF = "transformers"
SUBDIR = "architectures"
MOE_TYPES = ("mixtral", "qwen3_moe")

# Scales of the random weights (see make_eval_goldens.INIT): logits of a few units, so that a
# 1e-4 logit tolerance is meaningful. Norm weights: 1 + 0.25 z where the weight multiplies
# directly; 0.25 z where the model multiplies by (1 + w) (Gemma 2/3, incl. their q/k norms), so
# the effective scale has the same distribution. Per-head q/k norms (Qwen3, Qwen3-MoE, Gemma 3)
# and OLMo 2's whole-projection q/k norms use the same rule: after the norm every q/k element has
# RMS ~1, so q.k/sqrt(head_dim) has std ~1 like the other families'.
INIT = {
    "order": "every parameter of the in-memory model (named_parameters, tied lm_head counted once), "
             "sorted by name, drawn from numpy Generator(PCG64(seed)).standard_normal(shape)",
    "embedding": "0.5 * z",
    "weight_2d_or_3d": "z / sqrt(shape[-1]) (in_features; MoE expert tensors [E, out, in] too; routers [E, hidden])",
    "bias": "0.3 * z",
    "norm_weight": "1 + 0.25 * z",
    "norm_weight_gemma": "0.25 * z (Gemma 2/3 RMSNorm multiplies by 1 + w)",
}

SAVED_FIRST_ROW = 32  # logits.safetensors keeps rows 32..63 of each 64-token forward
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

SHORT_FACTOR = [1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0]
LONG_FACTOR = [1.0, 1.2, 1.6, 2.4, 4.0, 6.0, 9.0, 12.0]
SHORT_FACTOR_P = [1.0, 1.1, 1.3, 1.6, 2.0, 2.5]
LONG_FACTOR_P = [1.0, 1.5, 2.5, 4.0, 6.0, 8.0]


def common(**kw):
    """Keys every case shares: vocab 512, bos = eos = <|endoftext|> (id 0), no pad token."""
    return {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": None, **kw}


# ---------------------------------------------------------------------------
# the cases
#
# Each: architecture class, config (built fresh every time), human-readable features, the
# ablations (config-dict edits or module patches that switch one feature off), and the extra
# perplexity contexts.


def rope(kind, theta, **kw):
    return {"rope_type": kind, "rope_theta": theta, **kw}


def llama_base(**kw):
    return common(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, hidden_act="silu", max_position_embeddings=128,
                  rms_norm_eps=1e-5, **kw)


CASES = {
    "llama3": dict(
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(**llama_base(
            tie_word_embeddings=True,
            rope_parameters=rope("llama3", 10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                 original_max_position_embeddings=32))),
        features=["GQA 2:1", "tied embeddings", "rope_type llama3 (factor 8, low_freq_factor 1, high_freq_factor 4, "
                  "original_max_position_embeddings 32; rope_theta 10000 so that all three bands occur: "
                  "frequency 0 kept, 1 smoothed, 2-7 divided by 8)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 10000.0)}},
    ),
    "llama-linear": dict(
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(**llama_base(tie_word_embeddings=False,
                                                rope_parameters=rope("linear", 10000.0, factor=4.0))),
        features=["GQA 2:1", "untied lm_head", "rope_type linear (factor 4: inv_freq / 4)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 10000.0)}},
    ),
    "llama-dynamic": dict(
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(**{**llama_base(tie_word_embeddings=True,
                                                    rope_parameters=rope("dynamic", 10000.0, factor=2.0)),
                                      "max_position_embeddings": 32}),
        features=["GQA 2:1", "tied embeddings", "rope_type dynamic (factor 2; threshold max_position_embeddings 32: "
                  "a 64-token forward rescales the base, a <= 32-token forward does not)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 10000.0)}},
        short_ctx=True,
    ),
    "llama-yarn": dict(
        cls=LlamaForCausalLM,
        config=lambda: LlamaConfig(**llama_base(
            tie_word_embeddings=True,
            rope_parameters=rope("yarn", 10000.0, factor=4.0, original_max_position_embeddings=32))),
        features=["GQA 2:1", "tied embeddings", "rope_type yarn (factor 4, original_max_position_embeddings 32, "
                  "max_position_embeddings 128; beta_fast 32, beta_slow 1, truncate true, attention_factor "
                  "0.1 ln 4 + 1 by default)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 10000.0)}},
    ),
    "mistral-sliding": dict(
        cls=MistralForCausalLM,
        config=lambda: MistralConfig(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=16, hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-5, sliding_window=16,
            tie_word_embeddings=False, rope_parameters=rope("default", 10000.0))),
        features=["GQA 2:1", "untied lm_head", "sliding_window 16 on every layer"],
        ablations={"no_sliding_window": {"sliding_window": None}},
    ),
    "qwen2-yarn": dict(
        cls=Qwen2ForCausalLM,
        config=lambda: Qwen2Config(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
            use_sliding_window=False,
            rope_parameters=rope("yarn", 1000000.0, factor=4.0, original_max_position_embeddings=32))),
        features=["GQA 2:1", "q/k/v biases", "tied embeddings", "rope_type yarn (factor 4, "
                  "original_max_position_embeddings 32, rope_theta 1e6: Qwen2.5 style)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 1000000.0)}},
    ),
    "qwen3": dict(
        cls=Qwen3ForCausalLM,
        config=lambda: Qwen3Config(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True,
            use_sliding_window=False, rope_parameters=rope("default", 1000000.0))),
        features=["GQA 2:1", "tied embeddings", "head_dim 16 != hidden/heads 8", "per-head q/k RMSNorm before RoPE"],
        ablations={"no_qk_norm": "qk_norm_identity"},
    ),
    "qwen3-moe": dict(
        cls=Qwen3MoeForCausalLM,
        config=lambda: Qwen3MoeConfig(**common(
            hidden_size=32, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, hidden_act="silu",
            max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False, num_experts=4,
            num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0],
            use_sliding_window=False, rope_parameters=rope("default", 1000000.0))),
        features=["GQA 2:1", "untied lm_head", "head_dim 16 != hidden/heads 8", "per-head q/k RMSNorm",
                  "layer 0 dense (mlp_only_layers [0], intermediate 64)",
                  "layer 1 MoE: 4 experts (moe_intermediate_size 32), top-2, norm_topk_prob true"],
        ablations={"norm_topk_prob_false": {"norm_topk_prob": False}, "no_qk_norm": "qk_norm_identity"},
    ),
    "mixtral": dict(
        cls=MixtralForCausalLM,
        config=lambda: MixtralConfig(**common(
            hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
            num_local_experts=4, num_experts_per_tok=2, sliding_window=16,
            rope_parameters=rope("default", 1000000.0))),
        features=["GQA 2:1", "untied lm_head", "MoE on every layer: 4 experts (intermediate 32), top-2, weights "
                  "renormalized over the top 2", "sliding_window 16 on every layer", "head_dim null in config.json "
                  "(= hidden/heads 16)"],
        ablations={"no_sliding_window": {"sliding_window": None}},
    ),
    "gemma2": dict(
        cls=Gemma2ForCausalLM,
        config=lambda: Gemma2Config(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=128, rms_norm_eps=1e-6,
            tie_word_embeddings=True, query_pre_attn_scalar=8, sliding_window=16, attn_logit_softcapping=5.0,
            final_logit_softcapping=3.0, rope_parameters=rope("default", 10000.0))),
        features=["GQA 2:1", "tied embeddings", "head_dim 16 != hidden/heads 8", "query_pre_attn_scalar 8 "
                  "(scale 8^-0.5, not head_dim^-0.5)", "attn_logit_softcapping 5.0", "final_logit_softcapping 3.0",
                  "layer_types [sliding, full] with sliding_window 16", "GeGLU (gelu_pytorch_tanh)",
                  "RMSNorm (1 + w), four norms per layer", "embeddings scaled by sqrt(hidden)"],
        ablations={"no_attn_softcap": {"attn_logit_softcapping": None},
                   "no_final_softcap": {"final_logit_softcapping": None},
                   "no_sliding_window": {"layer_types": ["full_attention", "full_attention"]},
                   "query_pre_attn_scalar_eq_head_dim": {"query_pre_attn_scalar": 16}},
    ),
    "gemma3": dict(
        cls=Gemma3ForCausalLM,
        config=lambda: Gemma3TextConfig(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=128, rms_norm_eps=1e-6,
            tie_word_embeddings=True, query_pre_attn_scalar=8, sliding_window=16, sliding_window_pattern=3,
            rope_parameters={"sliding_attention": rope("default", 10000.0),
                             "full_attention": rope("linear", 1000000.0, factor=8.0)})),
        features=["GQA 2:1", "tied embeddings", "head_dim 16 != hidden/heads 8", "query_pre_attn_scalar 8",
                  "per-head q/k RMSNorm (1 + w) before RoPE", "layer_types [sliding, sliding, full] "
                  "(sliding_window_pattern 3), sliding_window 16",
                  "local RoPE theta 10000 (sliding layers), global RoPE theta 1e6 with linear factor 8 (full layers)",
                  "GeGLU", "four norms per layer", "embeddings scaled by sqrt(hidden)"],
        ablations={"no_sliding_window": {"layer_types": ["full_attention"] * 3},
                   "local_theta_eq_global": {"rope_parameters": {
                       "sliding_attention": rope("default", 1000000.0),
                       "full_attention": rope("linear", 1000000.0, factor=8.0)}},
                   "no_global_linear_scaling": {"rope_parameters": {
                       "sliding_attention": rope("default", 10000.0),
                       "full_attention": rope("default", 1000000.0)}},
                   "no_qk_norm": "qk_norm_identity"},
    ),
    "phi3": dict(
        cls=Phi3ForCausalLM,
        config=lambda: Phi3Config(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            hidden_act="silu", max_position_embeddings=128, original_max_position_embeddings=32, rms_norm_eps=1e-5,
            tie_word_embeddings=False, sliding_window=16,
            rope_parameters=rope("longrope", 10000.0, short_factor=SHORT_FACTOR, long_factor=LONG_FACTOR,
                                 original_max_position_embeddings=32))),
        features=["fused qkv_proj [q; k; v] and gate_up_proj [gate; up]", "untied lm_head",
                  "rope_type longrope (8 short / 8 long factors, original_max_position_embeddings 32, "
                  "max_position_embeddings 128: attention_factor sqrt(1 + ln 4 / ln 32))",
                  "sliding_window 16 on every layer (honoured by Phi3 in 5.24)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 10000.0)},
                   "short_factor_at_64": "long_factor_eq_short",
                   "no_sliding_window": {"sliding_window": None}},
        short_ctx=True,
    ),
    "phi4-mini": dict(
        cls=Phi3ForCausalLM,
        config=lambda: Phi3Config(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            hidden_act="silu", max_position_embeddings=128, original_max_position_embeddings=32, rms_norm_eps=1e-5,
            tie_word_embeddings=True, sliding_window=None, partial_rotary_factor=0.75,
            rope_parameters=rope("longrope", 10000.0, short_factor=SHORT_FACTOR_P, long_factor=LONG_FACTOR_P,
                                 original_max_position_embeddings=32))),
        features=["fused qkv_proj and gate_up_proj", "GQA 2:1", "tied embeddings",
                  "partial_rotary_factor 0.75: RoPE on the first 12 of 16 dims of each head",
                  "rope_type longrope (6 short / 6 long factors, original 32, max 128)"],
        ablations={"rope_default": {"rope_parameters": rope("default", 10000.0, partial_rotary_factor=0.75)},
                   "short_factor_at_64": "long_factor_eq_short"},
        short_ctx=True,
    ),
    "olmo2": dict(
        cls=Olmo2ForCausalLM,
        config=lambda: Olmo2Config(**common(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False,
            rope_parameters=rope("default", 500000.0))),
        features=["untied lm_head", "no pre-norms: post_attention_layernorm and post_feedforward_layernorm on the "
                  "sublayer outputs", "q/k RMSNorm over the whole projection (heads*head_dim) before RoPE"],
        ablations={"no_qk_norm": "qk_norm_identity"},
    ),
}


# ---------------------------------------------------------------------------
# helpers


def arch_dir(out: Path) -> Path:
    return out / SUBDIR


def is_gemma(model) -> bool:
    return model.config.model_type in ("gemma2", "gemma3_text")


def init_random(model, seed: int) -> list:
    """Overwrites every parameter (sorted by name) from numpy PCG64(seed); see INIT."""
    r = np.random.Generator(np.random.PCG64(seed))
    gemma = is_gemma(model)
    names = []
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            z = r.standard_normal(tuple(p.shape))
            if name.endswith("norm.weight"):
                v = 0.25 * z if gemma else 1.0 + 0.25 * z
            elif name.endswith(".bias"):
                v = 0.3 * z
            elif "embed_tokens" in name:
                v = 0.5 * z
            elif p.dim() >= 2:
                v = z / math.sqrt(p.shape[-1])
            else:
                raise AssertionError(f"unexpected parameter {name} {tuple(p.shape)}")
            p.copy_(torch.from_numpy(v.astype(np.float32)))
            names.append(name)
    return names


def copy_tokenizer(out: Path, dst: Path):
    mqg.copy_tokenizer(out / "models" / "tiny-llama", dst)


def config_dict(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def config_with(folder: Path, edits: dict):
    """The folder's config.json with top-level keys replaced, built through the config class so that
    __post_init__ (layer_types, rope standardization) runs on the edited values."""
    d = config_dict(folder)
    d.update(copy.deepcopy(edits))
    d.pop("quantization_config", None)
    return transformers.AutoConfig.for_model(**d)


def load_plain(folder: Path, config=None, experts="eager"):
    kw = {"config": config} if config is not None else {}
    if experts is not None and config_dict(folder)["model_type"] in MOE_TYPES:
        kw["experts_implementation"] = experts
    with mqg.quiet():
        m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                              attn_implementation="eager", **kw)
    assert m.config._attn_implementation == "eager"
    return m.eval()


def widen_to_f32(model):
    """transformers 5.24 loads the tensors of a pre-quantized bitsandbytes folder that it does not
    quantize (embeddings, norms, lm_head, routers) in the file's dtype (bf16) even with
    dtype=torch.float32; widen them (exact) so that the forward runs in float32."""
    widened = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if isinstance(p, bitsandbytes.nn.Params4bit):
                continue
            if p.dtype == torch.bfloat16:
                p.data = p.data.float()
                widened.append(name)
        for name, b in model.named_buffers():
            if b.dtype == torch.bfloat16:
                raise AssertionError(f"bf16 buffer {name}")
    return sorted(widened)


def patch_bnb_cpu_dequantize():
    """bitsandbytes 0.50.2's CPU dequantize_4bit kernel (lib.cdequantize_blockwise_cpu_nf4_fp32, which
    Linear4bit's portable CPU path reaches through gemm_4bit) takes the absmax of element (row, col) as
    absmax[row * (in_features // blocksize) + col // blocksize]: right only when in_features is a
    multiple of the blocksize. quantize_4bit (and the CUDA kernels) use blocks over the row-major
    flattened weight. Register bitsandbytes' own pure-PyTorch kernel (backends/default/ops.py
    _dequantize_4bit_compute, the flattened-block definition) for CPU instead."""
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code

    def impl(A, absmax, blocksize, quant_type, shape, dtype):
        if A.dtype != torch.uint8:
            A = A.view(torch.uint8)
        return _dequantize_4bit_compute(A.reshape(-1), absmax, _get_4bit_code(quant_type, A.device), blocksize,
                                        shape, dtype)

    torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu", impl)


def misaligned_4bit(model, blocksize=64) -> list:
    return sorted(n for n, m in model.named_modules()
                  if isinstance(m, bitsandbytes.nn.Linear4bit) and m.in_features % blocksize)


def load_nf4(folder: Path):
    kw = {"experts_implementation": "eager"} if config_dict(folder)["model_type"] in MOE_TYPES else {}
    with mqg.quiet():
        m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                              attn_implementation="eager", **kw)
    m = mqg.portable_bnb(m.eval())
    widened = widen_to_f32(m)
    for mod in m.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            assert mod.compute_dtype == torch.float32, mod.compute_dtype
    return m, widened


@torch.no_grad()
def forward(model, ids) -> torch.Tensor:
    return model(input_ids=torch.tensor([list(ids)], dtype=torch.long), use_cache=False).logits[0]


def mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def qk_norm_identity(model):
    n = 0
    for mod in model.modules():
        for attr in ("q_norm", "k_norm"):
            if hasattr(mod, attr):
                setattr(mod, attr, torch.nn.Identity())
                n += 1
    assert n > 0
    return model


def tensor_table(path: Path) -> list:
    """[name, dtype, shape] of every tensor in a safetensors file, in file order (sorted by name)."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        rows = []
        for k in sorted(f.keys()):
            s = f.get_slice(k)
            rows.append([k, s.get_dtype(), list(s.get_shape())])
    return rows


# ---------------------------------------------------------------------------
# folders


def make_folder(out: Path, name: str, case: dict, seed: int) -> dict:
    d = fc.fresh_dir(arch_dir(out) / name)
    cfg = case["config"]()
    with mqg.quiet():
        model = case["cls"](cfg).eval()
    init_random(model, seed)
    model = model.to(torch.bfloat16)
    with mqg.quiet():
        model.save_pretrained(d)
    copy_tokenizer(out, d)
    saved = safetensors.torch.load_file(str(d / "model.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in saved.values())
    assert config_dict(d)["dtype"] == "bfloat16"
    tied = bool(cfg.tie_word_embeddings)
    assert ("lm_head.weight" in saved) == (not tied)
    # transformers must load the file back to exactly these weights (also through the MoE
    # per-expert -> fused conversion)
    mem = {k: v.float() for k, v in model.state_dict().items()}
    loaded = load_plain(d)
    lsd = loaded.state_dict()
    assert sorted(lsd) == sorted(mem), (sorted(lsd), sorted(mem))
    for k, v in lsd.items():
        assert torch.equal(v, mem[k]), k
    params = sum(p.numel() for p in model.parameters())
    size = (d / "model.safetensors").stat().st_size
    log(f"  {name}: {params} parameters, model.safetensors {size} bytes")
    mem_shapes = {k: list(v.shape) for k, v in sorted(model.state_dict().items())}
    file_names = sorted(saved)
    return {
        "folder": f"fixtures/{SUBDIR}/{name}",
        "architecture": case["cls"].__name__,
        "model_type": cfg.model_type,
        "seed": seed,
        "parameters": params,
        "tied_embeddings": tied,
        "features": case["features"],
        "model_safetensors_bytes": size,
        "tensors": tensor_table(d / "model.safetensors"),
        "in_memory_names_differ_from_file": sorted(set(mem_shapes) - set(file_names)),
        "in_memory_shapes_of_those": {k: mem_shapes[k] for k in sorted(set(mem_shapes) - set(file_names))},
        "reloads_identically": True,
    }


def nf4_config():
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_use_double_quant=False,
                                           bnb_4bit_compute_dtype=torch.float32)


def make_nf4_folder(out: Path, name: str) -> dict:
    src = arch_dir(out) / name
    d = fc.fresh_dir(arch_dir(out) / f"{name}-nf4")
    with mqg.quiet():
        m = transformers.AutoModelForCausalLM.from_pretrained(src, quantization_config=nf4_config(),
                                                              device_map="cpu")
        m.save_pretrained(d)
    copy_tokenizer(out, d)
    quantized, kept = [], []
    for mname, mod in m.named_modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            quantized.append(mname)
    base = safetensors.torch.load_file(str(src / "model.safetensors"))
    saved = safetensors.torch.load_file(str(d / "model.safetensors"))
    for k, v in base.items():
        if k.endswith(".weight") and k[: -len(".weight")] in quantized:
            # what transformers wrote must be exactly bitsandbytes' quantize_4bit of the bf16 weight
            p, qs = bnbF.quantize_4bit(v, blocksize=64, compress_statistics=False, quant_type="nf4",
                                       quant_storage=torch.uint8)
            rp, ra = mqg.ref_quantize_4bit(v.float().numpy(), 64, "nf4")
            assert np.array_equal(rp, p.numpy().reshape(-1)) and np.array_equal(ra, qs.absmax.numpy()), k
            for kk, vv in {"": p, **{"." + a: b for a, b in qs.as_dict(packed=True).items()}}.items():
                assert torch.equal(saved[k + kk], vv), f"{k + kk} differs from quantize_4bit"
        else:
            assert torch.equal(saved[k], v), f"transformers changed {k}"
            kept.append(k)
    assert "lm_head" not in quantized
    plain_linear = sorted(n for n, mod in m.named_modules() if type(mod) is torch.nn.Linear)
    assert plain_linear == ["lm_head"], plain_linear
    qc = config_dict(d)["quantization_config"]
    assert qc["bnb_4bit_use_double_quant"] is False and qc["bnb_4bit_compute_dtype"] == "float32"
    size = (d / "model.safetensors").stat().st_size
    log(f"  {name}-nf4: {len(quantized)} Linear4bit, model.safetensors {size} bytes")
    return {
        "folder": f"fixtures/{SUBDIR}/{name}-nf4",
        "quantized_modules": sorted(quantized),
        "unquantized_tensors": sorted(kept),
        "model_safetensors_bytes": size,
        "tensor_count": len(saved),
        "keys_per_quantized_weight": ["P.weight (U8 [(n+1)/2, 1])", "P.weight.absmax (F32 [ceil(n/64)])",
                                      "P.weight.quant_map (F32 [16])",
                                      "P.weight.quant_state.bitsandbytes__nf4 (U8: JSON)"],
        "quant_state_example": saved[f"{sorted(quantized)[0]}.weight.quant_state.bitsandbytes__nf4"]
        .numpy().tobytes().decode("utf-8"),
        "quantization_config": qc,
    }


# ---------------------------------------------------------------------------
# logits and feature ablations


def ablated_model(folder: Path, how):
    if how == "qk_norm_identity":
        return qk_norm_identity(load_plain(folder))
    if how == "long_factor_eq_short":
        rp = copy.deepcopy(config_dict(folder)["rope_parameters"])
        rp["long_factor"] = list(rp["short_factor"])
        return load_plain(folder, config_with(folder, {"rope_parameters": rp}))
    return load_plain(folder, config_with(folder, how))


def dequantized_plain(folder_bf16: Path, nf4_model):
    """A plain float32 model (from the bf16 folder) whose Linear weights are bitsandbytes'
    dequantize_4bit of the NF4 model's weights, computed in float32 (code[q] * absmax)."""
    plain = load_plain(folder_bf16)
    n = 0
    with torch.no_grad():
        for name, mod in nf4_model.named_modules():
            if isinstance(mod, bitsandbytes.nn.Linear4bit):
                qs = copy.copy(mod.weight.quant_state)
                qs.dtype = torch.float32
                w = bnbF.dequantize_4bit(mod.weight.data, qs)
                plain.get_submodule(name).weight.copy_(w)
                n += 1
        nf4_sd = {k: v for k, v in nf4_model.state_dict().items()}
        for k, v in plain.state_dict().items():
            mod_name = k.rsplit(".", 1)[0]
            if isinstance(nf4_model.get_submodule(mod_name), bitsandbytes.nn.Linear4bit):
                continue
            assert torch.equal(v, nf4_sd[k].float()), k
    assert n > 0
    return plain


def rope_facts(folder: Path, ids: list) -> dict:
    """inv_freq and attention scaling transformers uses in a forward of len(ids) tokens (fresh model),
    per layer type for Gemma 3; checked against ref_rope."""
    m = load_plain(folder)
    forward(m, ids)
    rot = m.model.rotary_emb
    cfg = config_dict(folder)
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    out = {}
    kinds = sorted(set(cfg["layer_types"])) if cfg["model_type"] == "gemma3_text" else [None]
    for lt in kinds:
        inv = (getattr(rot, f"{lt}_inv_freq") if lt else rot.inv_freq).double().numpy()
        sc = getattr(rot, f"{lt}_attention_scaling") if lt else rot.attention_scaling
        rp = cfg["rope_parameters"][lt] if lt else cfg["rope_parameters"]
        r_inv, r_sc = ref_rope(rp, cfg, hd, len(ids))
        assert np.allclose(inv, r_inv, rtol=2e-6, atol=0) and abs(sc - r_sc) < 1e-12, (folder, lt, inv, r_inv, sc, r_sc)
        out[lt or "all_layers"] = {"rope_type": rp["rope_type"], "inv_freq_f32": [float(v) for v in inv],
                                   "attention_scaling": float(sc)}
    return out


def make_logits(out: Path, ids: list, names: list) -> tuple:
    tensors = {"token_ids": torch.tensor(ids, dtype=torch.int32)}
    info = {}
    for name in names:
        case = CASES[name]
        folder = arch_dir(out) / name
        m = load_plain(folder)
        lg = forward(m, ids).float().contiguous()
        assert lg.shape == (N_TOKENS, VOCAB)
        lg64 = forward(copy.deepcopy(m).double(), ids)
        entry = {
            "folder": f"fixtures/{SUBDIR}/{name}",
            "compute": "from_pretrained(dtype=torch.float32, attn_implementation='eager'), bf16 weights widened "
                       "exactly; one sequence, positions 0..63, use_cache=False",
            "logit_abs_max": float(lg.abs().max()),
            "logit_std": float(lg.double().std()),
            "argmax_first_8": lg.argmax(-1)[:8].tolist(),
            "max_abs_diff_vs_float64_forward": mad(lg, lg64),
        }
        if m.config.model_type in MOE_TYPES:
            gm = load_plain(folder, experts=None)
            entry["experts_implementation"] = "eager"
            entry["default_experts_implementation"] = gm.config._experts_implementation
            entry["max_abs_diff_vs_default_experts_implementation"] = mad(forward(gm, ids), lg)
        abl = {}
        for aname, how in case["ablations"].items():
            a = forward(ablated_model(folder, how), ids)
            abl[aname] = {"edit": how, "max_abs_logit_change": mad(a, lg)}
            assert abl[aname]["max_abs_logit_change"] >= BITE_MIN, (name, aname, abl[aname])
        entry["ablations"] = abl
        entry["rope"] = {str(len(ids)): rope_facts(folder, ids)}
        if case.get("short_ctx"):
            entry["rope"][str(PPL_SHORT_CTX)] = rope_facts(folder, ids[:PPL_SHORT_CTX])
            # the first 32 tokens alone, fresh model (dynamic RoPE keeps state): the short branch
            short = forward(load_plain(folder), ids[:PPL_SHORT_CTX])
            diff_rows = mad(short, lg[:PPL_SHORT_CTX])
            ref = forward(ablated_model(folder, CASES[name]["ablations"]["rope_default"]), ids[:PPL_SHORT_CTX])
            entry["first_32_tokens_alone"] = {
                "max_abs_diff_vs_rows_0_31_of_the_64_token_forward": diff_rows,
                "max_abs_diff_vs_rope_default_on_32_tokens": mad(short, ref),
                "note": "a forward of 32 tokens is the short branch: it differs from rows 0..31 of the 64-token "
                        "forward (which uses the long branch for every position)",
            }
            assert diff_rows >= BITE_MIN
        tensors[name] = lg
        info[name] = entry
        log(f"  {name}: |logit| max {entry['logit_abs_max']:.3f}, f32 vs f64 {entry['max_abs_diff_vs_float64_forward']:.1e}, "
            + ", ".join(f"{k} {v['max_abs_logit_change']:.3g}" for k, v in abl.items()))

        # NF4
        nfolder = arch_dir(out) / f"{name}-nf4"
        q, widened = load_nf4(nfolder)
        lq = forward(q, ids).float().contiguous()
        deq = dequantized_plain(folder, q)
        ld = forward(deq, ids)
        ld64 = forward(copy.deepcopy(deq).double(), ids)
        tensors[f"{name}-nf4"] = lq
        info[f"{name}-nf4"] = {
            "folder": f"fixtures/{SUBDIR}/{name}-nf4",
            "compute": "from_pretrained(dtype=torch.float32, attn_implementation='eager'), portable_bnb (no "
                       "AVX512-BF16 repack), Linear4bit compute dtype float32 (dequantize_4bit to float32 then "
                       "F.linear); the non-quantized tensors, which transformers leaves in bf16, widened to float32",
            "widened_from_bf16": widened,
            "logit_abs_max": float(lq.abs().max()),
            "argmax_first_8": lq.argmax(-1)[:8].tolist(),
            "max_abs_diff_vs_dequantized_f32_plain_model": mad(lq, ld),
            "max_abs_diff_vs_dequantized_f64_plain_model": mad(lq, ld64),
            "max_abs_diff_vs_bf16_model_logits": mad(lq, lg),
        }
        assert info[f"{name}-nf4"]["max_abs_diff_vs_dequantized_f32_plain_model"] < 1e-4
        log(f"  {name}-nf4: vs dequantized f32 {info[f'{name}-nf4']['max_abs_diff_vs_dequantized_f32_plain_model']:.1e}, "
            f"vs f64 {info[f'{name}-nf4']['max_abs_diff_vs_dequantized_f64_plain_model']:.1e}, "
            f"vs bf16 model {info[f'{name}-nf4']['max_abs_diff_vs_bf16_model_logits']:.3f}")
    return tensors, info


# ---------------------------------------------------------------------------
# independent reference: SPEC.md in numpy float64, straight from config.json + model.safetensors
#
# Every golden folder (bf16 and NF4) is recomputed with this and must match transformers' float32
# logits to REF_TOL: that checks both SPEC.md and the file layouts it describes.

REF_TOL = 1e-4


def ref_weights(folder: Path) -> dict:
    """The file's tensors as float64; NF4 weights dequantized: code[q] * absmax[block] (high nibble
    first, blocks of `blocksize` over the row-major flattened weight)."""
    out = {}
    with safetensors.safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in t.items():
        if ".weight." in k:  # absmax, quant_map, quant_state.* of an NF4 weight
            continue
        if v.dtype == torch.uint8 and k + ".quant_state.bitsandbytes__nf4" in t:
            qs = json.loads(t[k + ".quant_state.bitsandbytes__nf4"].numpy().tobytes().decode("utf-8"))
            packed = v.numpy().reshape(-1)
            codes = np.empty(packed.size * 2, dtype=np.int64)
            codes[0::2] = packed >> 4
            codes[1::2] = packed & 15
            n = int(np.prod(qs["shape"]))
            codes = codes[:n]
            absmax = t[k + ".absmax"].numpy().astype(np.float64)
            qmap = t[k + ".quant_map"].numpy().astype(np.float64)
            bs = qs["blocksize"]
            w = (qmap[codes].astype(np.float32) * absmax[np.arange(n) // bs].astype(np.float32)).astype(np.float32)
            out[k] = w.astype(np.float64).reshape(qs["shape"])
        else:
            out[k] = v.float().numpy().astype(np.float64)
    return out


def ref_rms(x, w, eps, one_plus=False):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * ((1.0 + w) if one_plus else w)


def ref_act(name, x):
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu_pytorch_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    raise AssertionError(name)


def ref_rope(rp: dict, cfg: dict, head_dim: int, seq_len: int):
    """(inv_freq over the rotary dims, attention scaling) for one forward of seq_len tokens
    (seq_len = max position id + 1)."""
    theta = rp["rope_theta"]
    dim = int(head_dim * rp.get("partial_rotary_factor", 1.0))
    expo = np.arange(0, dim, 2, dtype=np.float64) / dim
    kind = rp["rope_type"]
    inv = 1.0 / theta ** expo
    if kind == "default":
        return inv, 1.0
    if kind == "linear":
        return inv / rp["factor"], 1.0
    if kind == "dynamic":
        mpe = cfg["max_position_embeddings"]
        if seq_len > mpe:
            f = rp["factor"]
            theta2 = theta * ((f * seq_len / mpe) - (f - 1)) ** (dim / (dim - 2))
            inv = 1.0 / theta2 ** expo
        return inv, 1.0
    if kind == "llama3":
        f, lo, hi, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        smooth = (old / wl - lo) / (hi - lo)
        out = np.where(wl > old / lo, inv / f, inv)
        mid = ~(wl < old / hi) & ~(wl > old / lo)
        return np.where(mid, (1 - smooth) * inv / f + smooth * inv, out), 1.0
    if kind == "yarn":
        f, orig = rp["factor"], rp["original_max_position_embeddings"]
        af = rp.get("attention_factor")
        if af is None:
            ms, msa = rp.get("mscale"), rp.get("mscale_all_dim")
            g = (lambda s, m=1.0: 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0)
            af = g(f, ms) / g(f, msa) if (ms and msa) else g(f)
        bf, bs = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1
        cd = (lambda r: dim * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(theta)))
        low, high = cd(bf), cd(bs)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0, 1)
        extra = 1 - ramp
        return (inv / f) * (1 - extra) + inv * extra, af
    if kind == "longrope":
        orig = rp["original_max_position_embeddings"]
        f = rp.get("factor") or cfg["max_position_embeddings"] / orig
        af = rp.get("attention_factor")
        if af is None:
            af = 1.0 if f <= 1.0 else math.sqrt(1 + math.log(f) / math.log(orig))
        ext = np.asarray(rp["long_factor"] if seq_len > orig else rp["short_factor"], dtype=np.float64)
        return 1.0 / (ext * theta ** expo), af
    raise AssertionError(kind)


def ref_apply_rope(x, inv, scale, pos):
    """x [T, heads, head_dim]; rotate_half on the first len(inv)*2 dims only."""
    rd = 2 * len(inv)
    ang = pos[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :] * scale
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :] * scale
    r, rest = x[..., :rd], x[..., rd:]
    rot = np.concatenate([-r[..., rd // 2:], r[..., : rd // 2]], -1)
    return np.concatenate([r * cos + rot * sin, rest], -1)


def ref_layer_windows(cfg: dict) -> list:
    """Per layer: the sliding window (keys j with i - j < W are visible) or None."""
    mt, n, sw = cfg["model_type"], cfg["num_hidden_layers"], cfg.get("sliding_window")
    if mt in ("mistral", "mixtral", "phi3", "qwen3_moe"):
        return [sw] * n  # (qwen3_moe: config sets sliding_window null unless use_sliding_window)
    if mt in ("qwen2", "qwen3", "gemma2", "gemma3_text"):
        return [sw if t == "sliding_attention" else None for t in cfg["layer_types"]]
    return [None] * n


def ref_forward(folder: Path, ids: list) -> np.ndarray:
    cfg = config_dict(folder)
    W = ref_weights(folder)
    mt = cfg["model_type"]
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    gemma = mt in ("gemma2", "gemma3_text")
    act = cfg.get("hidden_activation") or cfg["hidden_act"]
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    x = W["model.embed_tokens.weight"][np.asarray(ids)]
    if gemma:
        x = x * float(np.float32(math.sqrt(H)))
    windows = ref_layer_windows(cfg)
    scaling = cfg["query_pre_attn_scalar"] ** -0.5 if gemma else hd ** -0.5
    i_idx, j_idx = np.arange(T)[:, None], np.arange(T)[None, :]

    def lin(name, v):
        y = v @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    def mlp(p, v):
        if mt == "phi3":
            gu = lin(p + "mlp.gate_up_proj", v)
            g, u = np.split(gu, 2, axis=-1)
            return lin(p + "mlp.down_proj", u * ref_act(act, g))
        if mt == "mixtral" or (mt == "qwen3_moe" and p + "mlp.gate.weight" in W):
            pre = p + ("block_sparse_moe." if mt == "mixtral" else "mlp.")
            logits = v @ W[pre + "gate.weight"].T
            pr = np.exp(logits - logits.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            k = cfg["num_experts_per_tok"]
            top = np.argsort(-pr, axis=-1, kind="stable")[:, :k]
            wts = np.take_along_axis(pr, top, -1)
            if mt == "mixtral" or cfg["norm_topk_prob"]:
                wts = wts / wts.sum(-1, keepdims=True)
            out = np.zeros_like(v)
            for t in range(v.shape[0]):
                for e, wt in zip(top[t], wts[t]):
                    ep = f"{pre}experts.{e}."
                    if mt == "mixtral":
                        h = ref_act(act, v[t] @ W[ep + "w1.weight"].T) * (v[t] @ W[ep + "w3.weight"].T)
                        out[t] += wt * (h @ W[ep + "w2.weight"].T)
                    else:
                        h = ref_act(act, v[t] @ W[ep + "gate_proj.weight"].T) * (v[t] @ W[ep + "up_proj.weight"].T)
                        out[t] += wt * (h @ W[ep + "down_proj.weight"].T)
            return out
        return lin(p + "mlp.down_proj", ref_act(act, lin(p + "mlp.gate_proj", v)) * lin(p + "mlp.up_proj", v))

    def attn(l, p, v):
        if mt == "phi3":
            qkv = lin(p + "self_attn.qkv_proj", v)
            q, k, vv = qkv[:, : nh * hd], qkv[:, nh * hd: (nh + nkv) * hd], qkv[:, (nh + nkv) * hd:]
        else:
            q, k, vv = (lin(p + f"self_attn.{n}_proj", v) for n in "qkv")
        if mt == "olmo2":  # whole-projection norm, before the head split
            q = ref_rms(q, W[p + "self_attn.q_norm.weight"], eps)
            k = ref_rms(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k, vv = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), vv.reshape(T, nkv, hd)
        if mt in ("qwen3", "qwen3_moe", "gemma3_text"):  # per-head norm over head_dim
            q = ref_rms(q, W[p + "self_attn.q_norm.weight"], eps, one_plus=gemma)
            k = ref_rms(k, W[p + "self_attn.k_norm.weight"], eps, one_plus=gemma)
        rp = cfg["rope_parameters"]
        if mt == "gemma3_text":
            rp = rp[cfg["layer_types"][l]]
        inv, sc = ref_rope(rp, cfg, hd, T)
        q, k = ref_apply_rope(q, inv, sc, pos), ref_apply_rope(k, inv, sc, pos)
        rep = nh // nkv
        k, vv = np.repeat(k, rep, axis=1), np.repeat(vv, rep, axis=1)  # query head h uses kv head h // rep
        s = np.einsum("ihd,jhd->hij", q, k) * scaling
        if mt == "gemma2" and cfg.get("attn_logit_softcapping") is not None:
            c = cfg["attn_logit_softcapping"]
            s = np.tanh(s / c) * c
        visible = j_idx <= i_idx
        if windows[l] is not None:
            visible &= (i_idx - j_idx) < windows[l]
        s = np.where(visible[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hij,jhd->ihd", s, vv).reshape(T, nh * hd)
        return lin(p + "self_attn.o_proj", o)

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        nw = (lambda n: W[p + n + ".weight"])
        if gemma:
            x = x + ref_rms(attn(l, p, ref_rms(x, nw("input_layernorm"), eps, True)), nw("post_attention_layernorm"), eps, True)
            x = x + ref_rms(mlp(p, ref_rms(x, nw("pre_feedforward_layernorm"), eps, True)),
                            nw("post_feedforward_layernorm"), eps, True)
        elif mt == "olmo2":
            x = x + ref_rms(attn(l, p, x), nw("post_attention_layernorm"), eps)
            x = x + ref_rms(mlp(p, x), nw("post_feedforward_layernorm"), eps)
        else:
            x = x + attn(l, p, ref_rms(x, nw("input_layernorm"), eps))
            x = x + mlp(p, ref_rms(x, nw("post_attention_layernorm"), eps))
    x = ref_rms(x, W["model.norm.weight"], eps, one_plus=gemma)
    head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
    logits = x @ head.T
    if cfg.get("final_logit_softcapping") is not None:
        c = cfg["final_logit_softcapping"]
        logits = np.tanh(logits / c) * c
    return logits


def check_reference(out: Path, ids: list, tensors: dict, info: dict):
    for name, golden in tensors.items():
        if name == "token_ids":
            continue
        ref = ref_forward(arch_dir(out) / name, ids)
        d = float(np.abs(ref - golden.double().numpy()).max())
        info[name]["max_abs_diff_vs_numpy_spec_reference_f64"] = d
        checks = {"64_tokens": d}
        if CASES[name.removesuffix("-nf4")].get("short_ctx"):
            m = load_plain(arch_dir(out) / name) if not name.endswith("-nf4") else load_nf4(arch_dir(out) / name)[0]
            short = forward(m, ids[:PPL_SHORT_CTX]).double().numpy()
            checks["32_tokens"] = float(np.abs(ref_forward(arch_dir(out) / name, ids[:PPL_SHORT_CTX]) - short).max())
            info[name]["max_abs_diff_vs_numpy_spec_reference_f64_on_32_tokens"] = checks["32_tokens"]
        log(f"  {name}: numpy reference vs transformers " + ", ".join(f"{k} {v:.1e}" for k, v in checks.items()))
        assert max(checks.values()) < REF_TOL, (name, checks)


# ---------------------------------------------------------------------------
# perplexity (llama.cpp's method, exactly as make_eval_goldens.py)


def ppl_run(model, stream: list, ctx: int) -> dict:
    sub = stream[: ctx * PPL_CHUNKS]
    full = meg.perplexity_run(ForwardNoCache(model), sub, ctx)
    keep = ("ctx", "first", "n_chunks", "scored_per_chunk", "count", "sum_nll", "mean_nll", "ppl", "ppl_stderr",
            "log_ppl_stderr", "chunk_mean_nll")
    return {k: full[k] for k in keep}


class ForwardNoCache:
    """make_eval_goldens.forward calls model(input_ids=...); pass use_cache=False through."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False)


def make_perplexity(out: Path, stream: list, names: list) -> dict:
    runs = {}
    for name in names:
        for variant in (name, f"{name}-nf4"):
            folder = arch_dir(out) / variant
            ctxs = [PPL_CTX] + ([PPL_SHORT_CTX] if CASES[name].get("short_ctx") else [])
            runs[variant] = {}
            for ctx in ctxs:
                # a fresh model per context: dynamic RoPE keeps state between forwards
                m = load_plain(folder) if variant == name else load_nf4(folder)[0]
                r = ppl_run(m, stream, ctx)
                runs[variant][str(ctx)] = r
                log(f"  {variant} ctx {ctx}: {r['n_chunks']} chunks, PPL {r['ppl']:.4f} +/- {r['ppl_stderr']:.4f}")
    return {
        "tokens": "fixtures/eval/eval_tokens_u32le.bin (the tiny-llama token stream of fixtures/text/eval.txt)",
        "n_chunks": PPL_CHUNKS,
        "add_bos": False,
        "method": f"{meg.LLAMA_CPP}, function perplexity(): chunk i = tokens[i*ctx, (i+1)*ctx) for i < 16, "
                  "each a fresh forward (positions 0..ctx-1, no cache, no BOS replacement); logits at positions "
                  "ctx/2 .. ctx-2 score the next token; float64 log_softmax of the float32 logits",
        "runs": runs,
    }


# ---------------------------------------------------------------------------
# README


def shape_of(cfg: dict) -> str:
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    s = (f"hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} heads / "
         f"{cfg['num_key_value_heads']} kv, head_dim {hd}, intermediate {cfg['intermediate_size']}")
    if cfg["model_type"] == "qwen3_moe":
        s += f", {cfg['num_local_experts']} experts x {cfg['moe_intermediate_size']}"
    if cfg["model_type"] == "mixtral":
        s += f", {cfg['num_local_experts']} experts x {cfg['intermediate_size']}"
    return s


def short_names(names: list) -> list:
    """model.layers.3.mlp.experts.1.w1.weight -> mlp.experts.*.w1 (sorted, unique)."""
    out = set()
    for n in names:
        n = re.sub(r"\.\d+\.", ".*.", n).removesuffix(".weight")
        out.add(n.removeprefix("model.layers.*."))
    return sorted(out)


def g(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.3g}"


def make_readme(out: Path, manifest: dict):
    ad = arch_dir(out)
    mdl, lg, pp = manifest["models"], manifest["logits"]["cases"], manifest["perplexity"]
    v = manifest["versions"]
    case_rows = []
    for name, m in mdl.items():
        cfg = config_dict(ad / name)
        case_rows.append(f"| `{name}` | {m['architecture']} | {shape_of(cfg)} | {'; '.join(m['features'])} | "
                         f"{m['model_safetensors_bytes']:,} / {m['nf4']['model_safetensors_bytes']:,} |")
    logit_rows = []
    for name in mdl:
        e = lg[name]
        abl = "; ".join(f"{k} {g(a['max_abs_logit_change'])}" for k, a in e["ablations"].items())
        logit_rows.append(f"| `{name}` | {e['logit_abs_max']:.3f} | {e['max_abs_diff_vs_float64_forward']:.1e} | "
                          f"{e['max_abs_diff_vs_numpy_spec_reference_f64']:.1e} | {abl} |")
    nf4_rows = []
    for name in mdl:
        e = lg[f"{name}-nf4"]
        st = e["stock_bitsandbytes_cpu_dequantize"]
        nf4_rows.append(
            f"| `{name}-nf4` | {len(mdl[name]['nf4']['quantized_modules'])} | "
            f"{', '.join(short_names(mdl[name]['nf4']['unquantized_tensors']))} | "
            f"{e['logit_abs_max']:.3f} | {e['max_abs_diff_vs_dequantized_f64_plain_model']:.1e} | "
            f"{e['max_abs_diff_vs_numpy_spec_reference_f64']:.1e} | {e['max_abs_diff_vs_bf16_model_logits']:.3f} | "
            f"{len(st['linear4bit_with_in_features_not_multiple_of_64'])}: {g(st['max_abs_logit_error'])} |")
    ppl_rows = []
    for variant, runs in pp["runs"].items():
        for ctx, r in runs.items():
            ppl_rows.append(f"| `{variant}` | {ctx} | {r['n_chunks']} | {r['count']} | {r['sum_nll']:.6f} | "
                            f"{r['mean_nll']:.6f} | {r['ppl']:.4f} | {r['ppl_stderr']:.4f} |")
    short_rows = []
    for name in mdl:
        f32 = lg[name].get("first_32_tokens_alone")
        if f32:
            short_rows.append(f"| `{name}` | {g(f32['max_abs_diff_vs_rows_0_31_of_the_64_token_forward'])} | "
                              f"{g(f32['max_abs_diff_vs_rope_default_on_32_tokens'])} |")
    moe_rows = []
    for name in mdl:
        e = lg[name]
        if "experts_implementation" in e:
            moe_rows.append(f"`{name}`: {g(e['max_abs_diff_vs_default_experts_implementation'])} "
                            f"(default `{e['default_experts_implementation']}`)")
    sizes = {p.name + ("/" if p.is_dir() else ""): (sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                                                    if p.is_dir() else p.stat().st_size)
             for p in sorted(ad.iterdir()) if p.name not in ("README.md",)}
    total = sum(sizes.values())
    size_rows = "\n".join(f"| `{k}` | {v:,} |" for k, v in sizes.items())
    ex = mdl["llama3"]["nf4"]["quant_state_example"]
    text = f"""\
# Architecture goldens

Made by `tools/make_architecture_goldens.py` (the last step of `tools/make_fixtures.sh`) with torch
{v['torch']}, transformers {v['transformers']}, bitsandbytes {v['bitsandbytes']}, safetensors
{v['safetensors']}, tokenizers {v['tokenizers']}, numpy {v['numpy']}, on CPU, one thread,
`ATEN_CPU_CAPABILITY=avx2`. A second run rewrites every file byte for byte.

**`SPEC.md`** is the float32 forward pass of every family here, as transformers {v['transformers']}
computes it (config keys and defaults, tensor names, norms, residual order, attention, RoPE types,
sliding windows, MoE routing). The generator contains an independent numpy float64 implementation of
SPEC.md (`ref_forward`, reading only `config.json` and `model.safetensors`) and stops unless it
matches transformers' logits of all {len(lg)} folders to 1e-4 (column "numpy ref" below).

Total {total:,} bytes:

| path | bytes |
|---|---|
{size_rows}

## Folders

One tiny random model per case: `config.json` and `generation_config.json` exactly as
`save_pretrained` writes them, **bf16** `model.safetensors` (`"dtype": "bfloat16"`), and the tokenizer
files of `fixtures/models/tiny-llama` (`tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`: byte-level BPE, vocab 512, adds no BOS). `bos_token_id` = `eos_token_id` = 0
(`<|endoftext|>`), no pad token. transformers loads every folder back (`from_pretrained(dtype=torch.float32)`)
to exactly the in-memory weights (checked tensor by tensor, also through the MoE per-expert → fused
conversion).

Random weights (no training): every parameter of the in-memory model, sorted by name, from numpy
`Generator(PCG64(seed))` (seed {SEED} + case index in the order below): 2-D and 3-D weights
N(0, 1/in_features) (`shape[-1]`; MoE expert tensors and routers included), embeddings N(0, 0.5²),
biases N(0, 0.3²), RMSNorm weights 1 + 0.25·N(0, 1), except Gemma 2/3 norms (computed as `x̂·(1 + w)`),
which get w = 0.25·N(0, 1) so the effective scale has the same distribution. The same rule holds for the
per-head q/k norms (Qwen3, Qwen3-MoE; Gemma 3 with 1 + w) and OLMo 2's whole-projection q/k norms: after
the norm every q/k element has RMS ≈ |w| ≈ 1, so q·k/√head_dim has std ≈ 1 like the other families'.
Tied models use the N(0, 0.5²) embedding as lm_head, hence their larger logits (and perplexities far above
the vocabulary size: the models are random and confident).

| case | architecture | shape | features | bytes bf16 / NF4 |
|---|---|---|---|---|
{chr(10).join(case_rows)}

Every config makes its feature bite at 64 tokens (the logits length and the perplexity context):
sliding windows are 16; `original_max_position_embeddings` is 32 for llama3 / yarn / longrope and
`max_position_embeddings` (the dynamic threshold in 5.24) is 32 for `llama-dynamic`; `head_dim` ≠
hidden/heads in `qwen3`, `qwen3-moe`, `gemma2`, `gemma3`. Gemma 3's layer pattern: the config is
built with `sliding_window_pattern=3`, from which transformers 5.24 derives `layer_types`
`[sliding, sliding, full]` (layer i is full iff (i+1) % pattern == 0) and writes both `layer_types`
and `sliding_window_pattern` (and `_sliding_window_pattern`) to config.json; when `layer_types` is
present it wins. Gemma 2 gets its default `layer_types` (even layers sliding, odd layers full).

### Tensor names in the files

`save_pretrained` writes the published Hugging Face layout (`manifest.json` → `models.<case>.tensors`
lists every name, dtype and shape): `model.embed_tokens.weight`,
`model.layers.{{i}}.self_attn.{{q,k,v,o}}_proj.weight` (Qwen2 also `{{q,k,v}}_proj.bias`),
`model.layers.{{i}}.mlp.{{gate,up,down}}_proj.weight`, `model.layers.{{i}}.input_layernorm.weight`,
`post_attention_layernorm.weight`, `model.norm.weight`, `lm_head.weight` (absent when tied), plus:

- Qwen3 / Qwen3-MoE / Gemma 3: `self_attn.q_norm.weight`, `self_attn.k_norm.weight` ([head_dim]);
  OLMo 2: the same names with shape [heads·head_dim] and [kv_heads·head_dim].
- Gemma 2/3: also `pre_feedforward_layernorm.weight`, `post_feedforward_layernorm.weight`.
  OLMo 2: `post_attention_layernorm.weight`, `post_feedforward_layernorm.weight`, no `input_layernorm`.
- Phi-3 / Phi-4-mini: `self_attn.qkv_proj.weight` [(heads + 2·kv_heads)·head_dim, hidden] and
  `mlp.gate_up_proj.weight` [2·intermediate, hidden] instead of the separate projections.
- Qwen3-MoE sparse layers: `mlp.gate.weight` [experts, hidden] and
  `mlp.experts.{{e}}.{{gate,up,down}}_proj.weight`; its dense layer (`mlp_only_layers`) has the plain
  `mlp.{{gate,up,down}}_proj.weight`.
- Mixtral: `block_sparse_moe.gate.weight` and `block_sparse_moe.experts.{{e}}.{{w1,w2,w3}}.weight`
  (w1 = gate [I, H], w3 = up [I, H], w2 = down [H, I]).

transformers 5 holds MoE experts fused in memory (`mlp.experts.gate_up_proj` [E, 2·I, H] = per expert
[gate; up], `mlp.experts.down_proj` [E, H, I]; Mixtral's router as `mlp.gate.weight`) and converts on
load and back on save (`conversion_mapping.py`, `"mixtral"` and `"qwen2_moe"` entries; Qwen3-MoE uses
the latter). The files here are therefore already in the published per-expert layout
(`manifest.json` → `in_memory_names_differ_from_file` lists the fused in-memory names).

## NF4 folders (`<case>-nf4/`)

Made as a user would: `AutoModelForCausalLM.from_pretrained(<case>, quantization_config=
BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False,
bnb_4bit_compute_dtype=torch.float32), device_map="cpu")`, then `save_pretrained` and the tokenizer
files. Every `nn.Linear` except `lm_head` becomes `Linear4bit` (blocksize 64, no double quantization).
Per quantized weight `P.weight`: `P.weight` (U8 [(n+1)/2, 1], first element in the high nibble),
`P.weight.absmax` (F32 [⌈n/64⌉], blocks of 64 over the **row-major flattened** weight, so blocks span
rows when in_features is not a multiple of 64), `P.weight.quant_map` (F32 [16], the NF4 table) and
`P.weight.quant_state.bitsandbytes__nf4` (U8, JSON), e.g. `{ex}`. The generator checks every
quantized tensor against `bitsandbytes.functional.quantize_4bit` of the bf16 weight and against the
numpy reference quantizer of `tools/make_quant_goldens.py`; all other tensors are copied unchanged
(bf16). **Left unquantized** (bf16, same names as in the bf16 folder): embeddings, all norms (incl.
q/k norms), `lm_head` (transformers' bnb integration skips the output embedding), the MoE routers
(`mlp.gate` / `block_sparse_moe.gate`: a `TopKRouter` module, not `nn.Linear`) and **the MoE experts
themselves** (in transformers 5 they are 3-D `nn.Parameter`s of an `Experts` module, which
`replace_with_bnb_linear` does not touch; they are saved in the per-expert bf16 layout). So
`mixtral-nf4` and `qwen3-moe-nf4` quantize only attention (and Qwen3-MoE's dense MLP).

`quantization_config` in config.json: `{json.dumps(mdl['llama3']['nf4']['quantization_config'], sort_keys=True)}`.

## Logits (`logits.safetensors`)

`token_ids` (I32 [64]): the first 64 ids of `fixtures/eval/eval_tokens_u32le.bin`, also in
`manifest.json` → `logits.token_ids`. One F32 [32, 512] tensor per folder, named as the folder: rows
32..63 of the 64-token forward (row r is the prediction after ids[0..32+r]) **in one 64-token forward** (which matters for dynamic RoPE and longrope:
the whole forward uses the 64-token branch, also for rows < 32).

- `<case>`: `from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")` (bf16 → f32 is
  exact), `model(input_ids=[ids], use_cache=False)`. MoE folders with `experts_implementation="eager"`
  (5.24's default on CPU is `grouped_mm`; the difference is rounding only: {'; '.join(moe_rows)}).
- `<case>-nf4`: `from_pretrained(nf4 folder, dtype=torch.float32, attn_implementation="eager")`, then
  `portable_bnb` (no AVX512-BF16 repacked kernel), so every `Linear4bit` runs `dequantize_4bit` to
  float32 (code[q]·absmax) and `F.linear` in float32. Two fixes were needed for that to hold:
  1. transformers {v['transformers']} loads the tensors it does not quantize (embeddings, norms, lm_head,
     routers) in the file's dtype, **bf16, even with `dtype=torch.float32`** (only tensors that pass
     through a weight converter, the MoE experts, are cast). A forward would then run in bf16
     (RMSNorm returns `w_bf16 * x.to(bf16)`); the generator widens them to float32 (exact).
  2. **bitsandbytes {v['bitsandbytes']}'s CPU `dequantize_4bit` kernel is wrong when in_features is not a
     multiple of the blocksize**: `cdequantize_blockwise_cpu_nf4_fp32` takes the absmax of element
     (row, col) as `absmax[row·(in_features // 64) + col // 64]` (row-aligned blocks), but
     `quantize_4bit` and the file format use blocks over the flattened weight. With in_features 32 every
     row uses `absmax[0]`. The generator registers bitsandbytes' own pure-PyTorch kernel
     (`backends/default/ops.py` `_dequantize_4bit_compute`) for CPU before computing the goldens; the
     last column below is how far the stock kernel's logits are from them (0 exactly when no
     `Linear4bit` is misaligned; here 32-wide inputs are misaligned in every case).

| tensor | max \\|logit\\| | max \\|f32 − f64 forward\\| | numpy ref | feature ablations: max \\|Δlogit\\| |
|---|---|---|---|---|
{chr(10).join(logit_rows)}

The f64 forward is the same transformers model after `.double()` (RoPE angles are still computed in
float32 there, as transformers does); "numpy ref" is the generator's float64 SPEC.md implementation.
Each ablation reloads the folder with one config edit (or patch) that switches one feature off and
records how far the logits move (all ≥ {BITE_MIN}): `rope_default` = the same `rope_theta` with
`rope_type` default; `no_sliding_window` = `sliding_window: null` or every layer `full_attention`;
`no_qk_norm` = q/k norms replaced by identity; `short_factor_at_64` = `long_factor` set to
`short_factor`; the others are named after the edit (`manifest.json` → `ablations.*.edit`).

Short branch (`llama-dynamic`, `phi3`, `phi4-mini`): a forward of the first 32 tokens alone is the
short / undynamic branch. Max |Δ| of its logits vs rows 0..31 of the 64-token forward, and vs the same
model with `rope_type` default (0 for dynamic: ≤ 32 tokens is plain RoPE; not 0 for longrope: short
factors and the attention factor still apply):

| case | vs rows 0..31 of the 64-token forward | vs rope default, 32 tokens |
|---|---|---|
{chr(10).join(short_rows)}

`manifest.json` → `logits.cases.<case>.rope` has the `inv_freq` (float32, as transformers computed them)
and attention scaling of every forward length used (64; 32 for the short-branch cases), per layer
type for Gemma 3, each checked against the float64 formulas of SPEC.md (relative 2e-6).

NF4 (compute float32; "numpy ref" dequantizes the file itself: `quant_map[q] · absmax[i // 64]` in
float32, then the SPEC.md forward in float64):

| tensor | Linear4bit | left unquantized (bf16) | max \\|logit\\| | vs dequantized f64 forward | numpy ref | vs bf16 model | stock bnb CPU kernel: misaligned layers, max \\|Δlogit\\| |
|---|---|---|---|---|---|---|---|
{chr(10).join(nf4_rows)}

## Perplexity (llama.cpp's method)

Exactly as `fixtures/eval/README.md` defines it (`{meg.LLAMA_CPP}`, `perplexity()`), on the token
stream `fixtures/eval/eval_tokens_u32le.bin`, first {PPL_CHUNKS} chunks only: chunk i =
tokens[i·ctx, (i+1)·ctx), each one fresh forward (positions 0..ctx−1, batch 1, no cache, no BOS
replacement: the tokenizer adds none); logits at positions ctx/2 … ctx−2 score the next token;
per token v = −log_softmax(float64(logits))[target]; `count` = {PPL_CHUNKS}·(ctx − 1 − ctx/2);
`sum_nll` = Σv (math.fsum), `mean_nll` = sum_nll/count, `ppl` = exp(mean_nll),
`ppl_stderr` = ppl·sqrt((mean(v²) − mean(v)²)/(count − 1)). The models are the same loads as for the
logits (float32 compute; NF4 with both fixes above). A fresh model is loaded for every context length:
dynamic RoPE keeps state between forwards in transformers (after a 64-token forward, a later
32-token forward would reuse the 64-token frequencies, because the reset needs seq_len < 32).

| model | ctx | chunks | count | sum NLL | mean NLL | PPL | ± stderr |
|---|---|---|---|---|---|---|---|
{chr(10).join(ppl_rows)}

`manifest.json` → `perplexity.runs.<folder>.<ctx>` also has `chunk_mean_nll` (each chunk's mean NLL).
"""
    fc.write_text(ad / "README.md", text)


# ---------------------------------------------------------------------------
# SPEC.md


def make_spec(manifest: dict) -> str:
    T = transformers
    v = manifest["versions"]["transformers"]

    def c(rel, anchor, nth=1):
        return cite(T, rel, anchor, nth)

    lg = manifest["logits"]["cases"]
    worst = max(e["max_abs_diff_vs_numpy_spec_reference_f64"] for e in lg.values())
    worst32 = max((e.get("max_abs_diff_vs_numpy_spec_reference_f64_on_32_tokens", 0.0) for e in lg.values()))
    rope = {n: lg[n]["rope"] for n in manifest["models"]}
    yarn_af = rope["llama-yarn"]["64"]["all_layers"]["attention_scaling"]
    lr_af = rope["phi3"]["64"]["all_layers"]["attention_scaling"]
    L = "models/llama/modeling_llama.py"
    RU = "modeling_rope_utils.py"
    MU = "masking_utils.py"
    G2 = "models/gemma2/modeling_gemma2.py"
    G3 = "models/gemma3/modeling_gemma3.py"
    G3C = "models/gemma3/configuration_gemma3.py"
    P3 = "models/phi3/modeling_phi3.py"
    O2 = "models/olmo2/modeling_olmo2.py"
    Q3M = "models/qwen3_moe/modeling_qwen3_moe.py"
    MX = "models/mixtral/modeling_mixtral.py"
    return f"""\
# Float32 forward pass of the fixture architectures, as transformers {v} computes it

For: `LlamaForCausalLM`, `MistralForCausalLM`, `MixtralForCausalLM`, `Qwen2ForCausalLM`,
`Qwen3ForCausalLM`, `Qwen3MoeForCausalLM`, `Gemma2ForCausalLM`, `Gemma3ForCausalLM` (text only),
`Phi3ForCausalLM` (Phi-3 and Phi-4-mini) and `Olmo2ForCausalLM` (GPT-2 is unchanged: see
`fixtures/eval`). One sequence of T tokens at positions 0..T−1, no KV cache, no padding, eager attention,
float32 everywhere. Generated by `tools/make_architecture_goldens.py`; source references are
`transformers/<file>:<line>` of the pinned wheel.

**Verified**: the generator's `ref_forward` is this document in numpy float64, reading only
`config.json` and `model.safetensors` (NF4 folders dequantized from the file). It matches transformers'
float32 logits of all {len(lg)} folders in `fixtures/architectures` to {worst:.1e} (64 tokens) and
{worst32:.1e} (32-token forwards of the short-branch cases). Anything not exercised there is marked
*(not exercised)*.

Notation: x is [T, hidden]; `W` of a linear layer is stored [out, in] and applied as y = x·Wᵀ (+ b).
"rms(x)" = x / sqrt(mean(x²) + eps) over the last axis.

## 1. config.json keys and 5.24 defaults (used when a key is absent)

| family (model_type) | head_dim absent → | rms_norm_eps | tie_word_embeddings | rope_theta | sliding_window | activation key |
|---|---|---|---|---|---|---|
| Llama (`llama`) | hidden/heads | 1e-6 | false | 10000 | — (no sliding) | `hidden_act` silu |
| Mistral (`mistral`) | hidden/heads | 1e-6 | false | 10000 | **4096** (all layers) | `hidden_act` silu |
| Mixtral (`mixtral`) | hidden/heads (also when `null`) | 1e-5 | false | **1e6** | null | `hidden_act` silu |
| Qwen2 (`qwen2`) | hidden/heads | 1e-6 | false | 10000 | 4096 but only if `use_sliding_window` (default false) | `hidden_act` silu |
| Qwen3 (`qwen3`) | **128** | 1e-6 | false | 10000 | as Qwen2 | `hidden_act` silu |
| Qwen3-MoE (`qwen3_moe`) | hidden/heads | 1e-6 | false | 10000 | as Qwen2 (all layers) | `hidden_act` silu |
| Gemma 2 (`gemma2`) | **256** | 1e-6 | **true** | 10000 | **4096** | `hidden_activation` gelu_pytorch_tanh |
| Gemma 3 (`gemma3_text`) | **256** | 1e-6 | **true** | global 1e6, local 1e4 | **4096** | `hidden_activation` gelu_pytorch_tanh |
| Phi-3 (`phi3`) | hidden/heads | 1e-5 | false | 10000 | null | `hidden_act` silu |
| OLMo 2 (`olmo2`) | hidden/heads | 1e-5 | false | 10000 | — | `hidden_act` silu |

- `head_dim`: a present, non-null key wins in **every** family, also where the config class has no such
  field (Qwen2, Qwen3-MoE, Phi-3, OLMo 2 read `getattr(config, "head_dim", hidden // heads)`,
  e.g. {c(L, 'self.head_dim = getattr(config, "head_dim"')}); Mistral/Mixtral use
  `getattr(config, "head_dim", None) or hidden // heads`, so `null` also means hidden/heads. (Phi-3's
  config validation checks the longrope factor lists against hidden/heads · partial_rotary_factor, so
  there head_dim has to equal hidden/heads.)
- `num_key_value_heads` absent or null → `num_attention_heads` (Llama, Qwen2/3, Phi-3, OLMo 2; the
  others have class defaults: Mistral/Mixtral 8, Gemma 2/3 4, Qwen3-MoE 4 — published configs carry it).
- Mixtral and Qwen3-MoE write `num_local_experts` (`num_experts` is an alias in both:
  `attribute_map = {{"num_experts": "num_local_experts"}}`); published Qwen3-MoE configs use
  `num_experts`. Accept both.
- Biases: Qwen2 has q/k/v biases always (`bias=True` hard-coded), no o_proj bias. Llama/Qwen3/Qwen3-MoE/
  Gemma/OLMo 2 use `attention_bias` (default false) for q/k/v/o; Llama `mlp_bias` (default false) for
  the MLP. Mistral, Mixtral and Phi-3 have no biases.
- `final_logit_softcapping` / `attn_logit_softcapping`: Gemma 2 defaults **30.0 / 50.0** when absent;
  Gemma 3 defaults null / null. `query_pre_attn_scalar` default 256 (Gemma 2/3).

## 2. Tensor names (as save_pretrained writes them; the fixtures' files)

Per layer prefix `P = model.layers.{{i}}.`:

| family | attention | MLP | norms |
|---|---|---|---|
| Llama, Mistral, Qwen2 | `P.self_attn.{{q,k,v,o}}_proj.weight` (+ Qwen2 `{{q,k,v}}_proj.bias`) | `P.mlp.{{gate,up,down}}_proj.weight` | `P.input_layernorm`, `P.post_attention_layernorm` |
| Qwen3 | same + `P.self_attn.{{q,k}}_norm.weight` [head_dim] | same | same |
| Qwen3-MoE | as Qwen3 | sparse layers: `P.mlp.gate.weight` [E, H], `P.mlp.experts.{{e}}.{{gate,up,down}}_proj.weight`; dense layers as Llama | same |
| Mixtral | as Llama | `P.block_sparse_moe.gate.weight` [E, H], `P.block_sparse_moe.experts.{{e}}.w1` (gate [I,H]), `.w3` (up [I,H]), `.w2` (down [H,I]) `.weight` | same |
| Gemma 2 | as Llama | as Llama | `P.input_layernorm`, `P.post_attention_layernorm`, `P.pre_feedforward_layernorm`, `P.post_feedforward_layernorm` |
| Gemma 3 | as Qwen3 (`q_norm`/`k_norm` [head_dim]) | as Llama | as Gemma 2 |
| Phi-3 | `P.self_attn.qkv_proj.weight` [(nH+2·nKV)·hd, H], `P.self_attn.o_proj.weight` | `P.mlp.gate_up_proj.weight` [2I, H], `P.mlp.down_proj.weight` | as Llama |
| OLMo 2 | as Llama + `P.self_attn.q_norm.weight` [nH·hd], `P.self_attn.k_norm.weight` [nKV·hd] | as Llama | `P.post_attention_layernorm`, `P.post_feedforward_layernorm` (no input norm) |

(norm names end in `.weight`.) Plus `model.embed_tokens.weight` [V, H], `model.norm.weight` [H] and
`lm_head.weight` [V, H] — absent when `tie_word_embeddings` is true, then the embedding matrix is the
output matrix. transformers 5 fuses MoE experts in memory (`mlp.experts.gate_up_proj` [E, 2I, H] =
[gate; up] per expert, `mlp.experts.down_proj` [E, H, I]) but converts back on save, so files have the
per-expert names above.

## 3. Building blocks

**RMSNorm, three variants** (eps = `rms_norm_eps`; the mean is over the last axis):
- Llama-style (Llama, Mistral, Mixtral, Qwen2/3, Qwen3-MoE, Phi-3): `w * rms(x)`
  ({c(L, 'variance = hidden_states.pow(2).mean(-1, keepdim=True)')}: computed in float32, the
  normalized x cast back to the input dtype, then times w).
- Gemma 2/3: `rms(x) * (1 + w)` — **1 + w**, stored w is centred on 0 ({c(G2, 'output = output * (1.0 + self.weight.float())')},
  {c(G3, 'output = output * (1.0 + self.weight.float())')}); float32 throughout, cast at the end.
  Also for Gemma 3's q/k norms.
- OLMo 2: `w * rms(x)` with the product done before the cast ({c(O2, 'return (self.weight * hidden_states).to(input_dtype)')});
  identical in float32.

**Embedding**: row lookup. Gemma 2/3 multiply by `embed_scale = sqrt(hidden_size)` held as a
float32 tensor and cast to the weight dtype ({c(G3, 'return super().forward(input_ids) * self.embed_scale.to(self.weight.dtype)')}):
in a float32 model the factor is float32(sqrt(H)) (5.656854… for H = 32). (In a bf16 model it is rounded
to bf16, e.g. sqrt(3072) = 55.4256 → 55.5; not used here.)

**Attention** (per layer; nH = heads, nKV = kv heads, hd = head_dim, rep = nH/nKV):
1. q = x·Wqᵀ (+bq) [T, nH·hd], k, v = … [T, nKV·hd]. Phi-3: qkv = x·Wqkvᵀ, split
   **q = qkv[:, :nH·hd], k = next nKV·hd columns, v = the rest** ({c(P3, 'query_pos = self.config.num_attention_heads * self.head_dim')}).
2. q/k norms: Qwen3 / Qwen3-MoE: per head, RMSNorm over hd with weight [hd] on q viewed [T, nH, hd]
   ({c('models/qwen3/modeling_qwen3.py', 'query_states = self.q_norm(self.q_proj(hidden_states).view')}); Gemma 3: the same
   with (1 + w) ({c(G3, 'query_states = self.q_norm(query_states)')}); OLMo 2: **over the whole projection**
   [T, nH·hd] with weight [nH·hd] (k: [nKV·hd]) **before** splitting into heads
   ({c(O2, 'query_states = self.q_norm(self.q_proj(hidden_states))')}). Always before RoPE; v is never normed.
3. Split heads: q → [nH, T, hd] (head h = columns h·hd..(h+1)·hd−1), k, v → [nKV, T, hd].
4. RoPE on q and k (section 4).
5. GQA: query head h uses kv head **h // rep** (`repeat_kv` expands [nKV, rep] then flattens:
   {c(L, 'hidden_states[:, :, None, :, :].expand')}).
6. scores = q·kᵀ · scaling, scaling = hd^−0.5, except Gemma 2/3: **query_pre_attn_scalar^−0.5**
   ({c(G2, 'self.scaling = config.query_pre_attn_scalar**-0.5')}, {c(G3, 'self.scaling = config.query_pre_attn_scalar**-0.5')}).
7. Gemma 2 only: scores = tanh(scores / attn_logit_softcapping) · attn_logit_softcapping, **before** the
   mask ({c(G2, 'attn_weights = attn_weights / softcap')}). Gemma 3 stores `attn_logit_softcapping` but
   never passes it to the attention function: **no attention softcap in Gemma 3**, whatever the config says.
8. Mask: add finfo(float32).min where key j is not visible ({c(MU, 'min_dtype = torch.finfo(dtype).min')}):
   visible iff j ≤ i and, on a sliding layer with window W, **i − j < W** (`kv_idx > q_idx - sliding_window`,
   {c(MU, 'return kv_idx > q_idx - sliding_window')}): a query sees itself and the W − 1 previous tokens.
   Since j = i is always visible, masking = excluding those keys from the softmax.
9. softmax over keys in float32, out = probs·v [nH, T, hd], heads concatenated back to [T, nH·hd]
   (head-major), then o_proj.

**MLP**: down(act(gate(x)) · up(x)). Phi-3: gu = x·Wgate_upᵀ, **gate = gu[:, :I], up = gu[:, I:]**,
down(up · act(gate)) ({c(P3, 'gate, up_states = up_states.chunk(2, dim=-1)')}). act: `silu` x·σ(x);
`gelu_pytorch_tanh` (Gemma; GeGLU) = `torch.nn.functional.gelu(x, approximate="tanh")` =
0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))) ({c('activations.py', 'return input * 0.5 * (1.0 + torch.tanh')}).

**Decoder layer order**:
- Llama, Mistral, Mixtral, Qwen2/3, Qwen3-MoE, Phi-3 (pre-norm):
  `h = x + attn(norm_in(x)); x = h + mlp(norm_post_attn(h))` (Phi-3's residual dropouts are identity
  in eval).
- Gemma 2/3 (four norms, "sandwich"): `h = x + norm_post_attn(attn(norm_in(x)));
  x = h + norm_post_ff(mlp(norm_pre_ff(h)))` ({c(G2, 'hidden_states = self.post_attention_layernorm(hidden_states)')}).
- OLMo 2 (post-norm on the branch, no pre-norm): `h = x + norm_post_attn(attn(x));
  x = h + norm_post_ff(mlp(h))` ({c(O2, 'hidden_states = self.post_attention_layernorm(hidden_states)')}).

**Head**: logits = norm_final(x)·Wlmᵀ (Gemma: (1 + w) final norm). Gemma 2/3: if
`final_logit_softcapping` is non-null, logits = tanh(logits / c)·c
({c(G2, 'logits = logits / self.config.final_logit_softcapping')}, {c(G3, 'logits = logits / self.config.final_logit_softcapping')}).

## 4. RoPE

**Application** ({c(L, 'def rotate_half')}, {c(P3, 'rotary_dim = cos.shape[-1]')}): with
`inv_freq` of length r/2 (r = rotary dims) and attention scaling s from the rope type:
angle[p, k] = float32(p) · inv_freq[k] (float32 product, {c(L, 'freqs = position_ids[..., None].float()')}),
cos = [cos(angle), cos(angle)]·s, sin = [sin(angle), sin(angle)]·s (the k-th frequency at dims k and
k + r/2: the **half-split (NeoX) layout**, not interleaved pairs); on the first r dims of every q and k
head: out = x·cos + rotate_half(x)·sin with rotate_half(x) = [−x[r/2:r], x[:r/2]]; dims r..hd pass
through unchanged. r = int(hd · partial_rotary_factor) (Phi-4-mini: int(16·0.75) = 12 here; all other
cases r = hd). The attention scaling s multiplies cos **and** sin, so q·k scales by s² (yarn, longrope).

**inv_freq** (d = r; e_k = (2k)/d for k = 0..d/2−1, computed in float32; θ = `rope_theta`):
- `default`: inv = θ^−e_k. `linear`: inv = θ^−e_k / factor ({c(RU, 'inv_freq /= factor')}). s = 1.
- `dynamic`: L = max(position_ids) + 1 of this forward; if L > `max_position_embeddings` (**not**
  `original_max_position_embeddings`): θ' = θ·(factor·L/max_position_embeddings − (factor − 1))^(d/(d−2)),
  inv = θ'^−e_k; otherwise default. s = 1 ({c(RU, 'base = base * ((factor * seq_len / config.max_position_embeddings)')};
  the arithmetic runs in float32 tensors). `llama-dynamic`: L = 64 > 32 → θ' = 10000·3^(8/7) ≈ 35098.
  **transformers is stateful here**: the recomputed frequencies are kept
  ({c(RU, 'if seq_len > max_seq_len_cached:')}) and only reset when L < max_position_embeddings
  ({c(RU, 'if seq_len < self.original_max_seq_len and max_seq_len_cached > self.original_max_seq_len')}), so a
  later forward with max_position_embeddings ≤ L ≤ (the largest L seen so far) reuses the frequencies of
  that largest L.
  The goldens always use a fresh model; implement the stateless rule above.
- `yarn` ({c(RU, 'def _compute_yarn_parameters')}): f = factor, o = `original_max_position_embeddings`;
  pos = θ^e_k; extrapolated = 1/pos, interpolated = 1/(f·pos); find_dim(n) =
  d·ln(o/(2π·n)) / (2·ln θ); low = find_dim(beta_fast), high = find_dim(beta_slow), beta_fast default 32,
  beta_slow default 1 (`or` defaults: 0 also means default); if `truncate` (default **true**, read from the
  top-level rope_parameters) low = floor(low), high = ceil(high); low = max(low, 0), high = min(high, d−1);
  if low == high: high += 0.001; ramp[k] = clamp((k − low)/(high − low), 0, 1) for k = 0..d/2−1;
  w = 1 − ramp; inv = interpolated·(1 − w) + extrapolated·w. With g(f, m) = 1 if f ≤ 1 else
  0.1·m·ln f + 1: s = `attention_factor` if given; else, if `mscale` and `mscale_all_dim` are both set
  (non-zero), s = g(f, mscale)/g(f, mscale_all_dim); else s = g(f, 1) = **0.1·ln f + 1** ({yarn_af:.6f}
  for f = 4). If `factor` is null: f = max_position_embeddings / o. Static: independent of T.
  Here θ = 1e4, d = 16, o = 32: low 0, high 2 (frequency 0 extrapolated, 1 half, 2..7 interpolated);
  θ = 1e6 (qwen2-yarn): high 1.
- `llama3` ({c(RU, 'def _compute_llama3_parameters')}): o = `original_max_position_embeddings`,
  λ_k = 2π/inv_k (default inv); lowλ = o/low_freq_factor, highλ = o/high_freq_factor; λ > lowλ:
  inv/factor; λ < highλ: inv; otherwise (medium, {c(RU, 'is_medium_freq = ')}) with
  t = (o/λ − low_freq_factor)/(high_freq_factor − low_freq_factor): (1 − t)·inv/factor + t·inv. s = 1.
  Static.
- `longrope` ({c(RU, 'def _compute_longrope_parameters')}): o = `original_max_position_embeddings`;
  **per forward**, L = max(position_ids) + 1: ext = `long_factor` if L > o else `short_factor`
  ({c(RU, 'inv_freq = torch.where(seq_len > original_max_position_embeddings')}; so 32 tokens → short,
  33+ → long, for every position of that forward); inv = 1/(ext_k · θ^e_k) (lists of length d/2);
  s = `attention_factor` if given, else with f = `factor` or, if absent, max_position_embeddings / o:
  s = sqrt(1 + ln f / ln o) if f > 1 else 1 ({c(RU, 'attention_factor = math.sqrt(1 + math.log(factor)')});
  **s applies in both branches** (it is computed once at init). Here f = 128/32 = 4, o = 32:
  s = {lr_af:.6f}.

**Where the parameters come from**: `rope_parameters` in config.json (5.x form: `rope_type`,
`rope_theta`, the type's keys). Older configs: `rope_scaling` (with `type` or `rope_type`) plus top-level
`rope_theta` and `partial_rotary_factor` are merged into it ({c(RU, 'def convert_rope_params_to_dict')});
for llama3/yarn/longrope a missing `original_max_position_embeddings` defaults to
`max_position_embeddings`. **Phi-3**: the top-level `original_max_position_embeddings` (class default
4096) **overrides** the one inside rope_parameters ({c(RU, 'self.rope_parameters["original_max_position_embeddings"] = self.original')});
rope types `su` and `yarn` are renamed to `longrope` ({c('models/phi3/configuration_phi3.py', 'if rope_parameters_type is not None and rope_parameters_type in ["su", "yarn"]')});
only `default` and `longrope` validate; a top-level `partial_rotary_factor` (Phi-4-mini) is copied
into rope_parameters (default 1.0). **Gemma 3**: rope_parameters is nested by layer type,
`{{"sliding_attention": {{...}}, "full_attention": {{...}}}}`; legacy keys map as `rope_theta` →
full_attention θ (default 1e6), `rope_local_base_freq` → sliding_attention θ (default 1e4),
`rope_scaling` → merged into **full_attention only** ({c(G3C, 'def convert_rope_params_to_dict')}).
Each layer uses the cos/sin of its own layer type (here: sliding θ 1e4 default, full θ 1e6 linear
factor 8).

## 5. Which layers slide

Window semantics everywhere: key j visible from query i iff 0 ≤ i − j < W (section 3, step 8).
- Mistral: every layer uses `sliding_window` when it is non-null (**default 4096 if the key is absent**;
  `null` = full attention); `layer_types` is ignored ({c('models/mistral/modeling_mistral.py', 'mask_function = create_causal_mask if')}).
- Mixtral, Phi-3, Qwen3-MoE: the same rule, all layers, default null ({c(MX, 'mask_function = create_causal_mask if')},
  {c(P3, 'mask_function = create_causal_mask if')}, {c(Q3M, 'mask_function = create_causal_mask if')}). Phi-3 **does** honour
  it (Phi-3-mini-4k ships `sliding_window: 2047`). Qwen3-MoE's config nulls `sliding_window` unless
  `use_sliding_window` is true.
- Qwen2 / Qwen3: `sliding_window` is nulled unless `use_sliding_window` is true; then
  `layer_types[i]` = sliding iff i ≥ `max_window_layers` (default 28) unless config.json has
  `layer_types` ({c('models/qwen2/configuration_qwen2.py', 'if self.sliding_window is not None and i >= self.max_window_layers')}). *(not exercised)*
- Gemma 2: `layer_types` from config.json, else sliding iff (i + 1) % 2 ≠ 0, i.e. **even layers slide**
  ({c('models/gemma2/configuration_gemma2.py', '"sliding_attention" if bool((i + 1) % 2)')}); window `sliding_window` (default 4096).
- Gemma 3: `layer_types` from config.json, else from `sliding_window_pattern` (default 6): layer i is
  full iff (i + 1) % pattern == 0 ({c(G3C, '"sliding_attention" if bool((i + 1) % self._sliding_window_pattern)')}).
  Sliding layers also use the sliding rope parameters (section 4).
- Llama, OLMo 2: never.

## 6. MoE

- **Mixtral** (every layer; {c(MX, 'router_probs = torch.nn.functional.softmax(router_logits.float(), dim=-1)')}):
  router logits = x·Wgateᵀ [T, E]; p = softmax(logits) in float32; take the top k = `num_experts_per_tok`
  of p; **renormalize** the k weights to sum 1; out = Σ_e w_e · w2_e(silu(w1_e·x) · w3_e·x).
- **Qwen3-MoE** ({c(Q3M, 'router_probs = torch.nn.functional.softmax(router_logits, dtype=torch.float, dim=-1)')}):
  softmax over all E experts first, then top-k, renormalize only if `norm_topk_prob` (class default
  **false**; Qwen3-30B-A3B ships true); experts `gate_proj`/`up_proj`/`down_proj` of size
  `moe_intermediate_size`. Layer i is sparse iff i ∉ `mlp_only_layers` and `num_experts` > 0 and
  (i + 1) % `decoder_sparse_step` == 0 ({c(Q3M, '(layer_idx + 1) % config.decoder_sparse_step')}); other layers are a
  dense MLP of `intermediate_size`. No shared expert.
- Ties in top-k do not occur with these weights; the expert sum order is irrelevant at 1e-4.

## 7. Per-family checklist

- **llama**: pre-norm, RoPE (any type), GQA, optional biases, tie optional.
- **mistral**: llama + sliding window on all layers (default 4096!).
- **mixtral**: mistral + MoE (softmax → top-k → renormalize), default θ 1e6.
- **qwen2**: llama + q/k/v biases; sliding only with `use_sliding_window`.
- **qwen3**: llama + per-head q/k RMSNorm (before RoPE), head_dim default 128.
- **qwen3_moe**: qwen3 + MoE layers (softmax → top-k → optional renormalize), dense layers per
  `mlp_only_layers` / `decoder_sparse_step`.
- **gemma2**: (1 + w) norms, four per layer; embeddings × float32(sqrt(H)); scale
  query_pre_attn_scalar^−0.5; attention softcap before the mask; final softcap; alternating sliding
  window (even layers); GeGLU; tied; defaults softcaps 50/30, head_dim 256.
- **gemma3_text**: gemma2 minus attention softcap, plus per-head (1 + w) q/k norms before RoPE,
  local/global pattern (default 6), per-layer-type RoPE (local θ, global θ + scaling).
- **phi3**: fused qkv [q; k; v] and gate_up [gate; up]; longrope (short/long per forward length,
  attention factor always); partial rotary (first r dims, half-split within them); sliding window if set.
- **olmo2**: no input norm; post-attention and post-feedforward norms on the branch outputs; q/k
  RMSNorm over the whole projection before the head split and RoPE.

## 8. NF4 folders

`P.weight` U8 [(n+1)/2, 1]: codes of the row-major flattened [out, in] weight, two per byte, **first
element in the high nibble**; `P.weight.absmax` F32 [⌈n/64⌉] (blocksize in the quant_state JSON) over
consecutive blocks of the **flattened** weight (blocks span rows when in % 64 ≠ 0); `P.weight.quant_map`
F32 [16] (the NF4 table); `P.weight.quant_state.bitsandbytes__nf4` U8 JSON (`quant_type`, `blocksize`,
`dtype` of the original weight, `shape`). Weight = float32(quant_map[q] · absmax[i // 64]), then the
float32 forward above. No double quantization in these folders (see `fixtures/quant/README.md` for
it). Unquantized (bf16): embeddings, norms, lm_head, MoE routers and experts. bitsandbytes
{manifest['versions']['bitsandbytes']}'s own CPU kernel gets the absmax index wrong whenever in % 64 ≠ 0
(README.md); the goldens use the flattened-block definition above.
"""


# ---------------------------------------------------------------------------
# top level


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    ap.add_argument("--spec-copy", type=Path, default=None, help="also write SPEC.md to this path")
    ap.add_argument("--cases", default=None, help=argparse.SUPPRESS)  # development: a subset of CASES
    args = ap.parse_args()
    if not fc.models_section_requested(args.only, "make_architecture_goldens"):
        return
    fc.setup_libraries()
    out = args.out.resolve()
    for need in ["models/tiny-llama/tokenizer.json", "eval/eval_tokens_u32le.bin"]:
        if not (out / need).is_file():
            sys.exit(f"error: {out / need} missing: run tools/make_fixtures.py and tools/make_eval_goldens.py first")
    start = time.monotonic()
    names = list(CASES) if args.cases is None else args.cases.split(",")
    ad = fc.fresh_dir(arch_dir(out))
    stream = np.frombuffer((out / "eval" / "eval_tokens_u32le.bin").read_bytes(), dtype="<u4").astype(np.int64).tolist()
    ids = stream[:N_TOKENS]

    log("architectures: folders")
    models = {}
    for i, name in enumerate(names):
        models[name] = make_folder(out, name, CASES[name], SEED + i)
        models[name]["nf4"] = make_nf4_folder(out, name)
    log("architectures: NF4 through the stock bitsandbytes CPU kernel")
    stock = {}
    for name in names:
        q = load_nf4(arch_dir(out) / f"{name}-nf4")[0]
        stock[name] = (forward(q, ids), misaligned_4bit(q))
    patch_bnb_cpu_dequantize()
    log("architectures: logits")
    tensors, logits = make_logits(out, ids, names)
    for name in names:
        lq, bad = stock[name]
        e = mad(lq, tensors[f"{name}-nf4"])
        logits[f"{name}-nf4"]["stock_bitsandbytes_cpu_dequantize"] = {
            "linear4bit_with_in_features_not_multiple_of_64": bad,
            "max_abs_logit_error": e}
        assert (e == 0.0) == (not bad), (name, e, bad)
        log(f"  {name}-nf4: stock bitsandbytes CPU kernel off by {e:.3g} ({len(bad)} misaligned Linear4bit)")
    # Only rows 32..63 are committed (half the bytes): every feature bites there (windows of 16, original
    # contexts of 32, the 64-token RoPE branch), and each of those rows depends on all the earlier positions.
    saved = {k: (v if k == "token_ids" else v[SAVED_FIRST_ROW:].contiguous()) for k, v in tensors.items()}
    safetensors.torch.save_file(saved, str(ad / "logits.safetensors"), metadata={"format": "pt"})
    log("architectures: numpy reference (SPEC.md)")
    check_reference(out, ids, tensors, logits)
    log("architectures: perplexity")
    ppl = make_perplexity(out, stream, names)
    manifest = {
        "generator": "tools/make_architecture_goldens.py",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "bitsandbytes": bitsandbytes.__version__, "safetensors": safetensors.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__},
        "init": INIT,
        "tokenizer": "fixtures/models/tiny-llama (tokenizer.json, tokenizer_config.json, special_tokens_map.json): "
                     "byte-level BPE, vocab 512, adds no BOS",
        "models": models,
        "logits": {
            "file": "logits.safetensors",
            "token_ids": ids,
            "tensors": "token_ids I32 [64]; per folder an F32 [32, 512] tensor named as the folder; row r = logits "
                       "after reading ids[0..32+r] in one 64-token forward (rows 32..63 of it)",
            "first_row": SAVED_FIRST_ROW,
            "cases": logits,
        },
        "perplexity": ppl,
    }
    meg.write_compact(ad / "manifest.json", manifest)
    if "make_readme" in globals():
        make_readme(out, manifest)
        spec = make_spec(manifest)
        fc.write_text(ad / "SPEC.md", spec)
        if args.spec_copy is not None:
            fc.write_text(args.spec_copy, spec)
    fc.write_sums(out)
    log(f"make_architecture_goldens: done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
