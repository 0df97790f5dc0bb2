#!/usr/bin/env python3
"""Golden files for ckpt's evaluation stack (tokenizer.json, forward pass, perplexity, KL
divergence), made by the pinned reference stack (tools/requirements.txt).

Run by tools/make_fixtures.sh after tools/make_fixtures.py and tools/make_quant_goldens.py (it
needs fixtures/models/tiny-llama, tiny-gpt2, tiny-llama-bnb-nf4, tiny-llama-ct-int8 and
fixtures/text/eval.txt). The output is a pure function of this script, the pinned wheels, those
fixtures and the shared tokenizer/corpus assets: a second run rewrites every file byte for byte.
At the end it rewrites fixtures/SHA256SUMS the way make_fixtures.py does.

Writes:
  fixtures/models/tiny-qwen2/        random Qwen2ForCausalLM (q/k/v biases, GQA, tied, rope_theta 1e6), F32
  fixtures/models/tiny-mistral/      random MistralForCausalLM (untied, head_dim != hidden/heads), F32
  fixtures/eval/logits.safetensors   transformers' f32 logits [48, 512] of the four fixture architectures
  fixtures/eval/eval_tokens_u32le.bin  the token stream of fixtures/text/eval.txt (raw little-endian u32)
  fixtures/eval/kld_values.safetensors per-token KL(base||candidate) of the two quantized tiny-llamas
  fixtures/eval/manifest.json        logits metadata, perplexity goldens, KL-divergence goldens
  fixtures/eval/tokenizers.json      tokenizer goldens (tricky strings, two corpora) and pipeline facts
  fixtures/eval/README.md            the exact definitions

Options: --out DIR (default <repo>/fixtures). --only SECTIONS is accepted so that
tools/make_fixtures.sh can pass its own arguments through: this script runs only when --only is
absent or names the 'models' section. --time-tokenizers measures HF tokenizers' encoding speed on
the two corpora (single thread) and prints it as JSON on stdout; it writes nothing under fixtures/
(timings are not reproducible byte for byte).
"""

import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

# First, before torch is imported: pins the environment for determinism (see fixture_common.py).
import fixture_common as fc  # noqa: E402
from fixture_common import log  # noqa: E402,F401

fc.pin_environment(TORCHDYNAMO_DISABLE="1")

import argparse
import hashlib
import json
import math
import shutil
import struct
import time

import make_fixtures as mf  # noqa: E402  (shares helpers and the environment pins)
import make_quant_goldens as mqg  # noqa: E402  (dequantized_f32_model for the NF4 folder)

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

REPO = TOOLS.parent
SHARED = REPO / ".." / "shared" / "assets"
SEED = 5150
N_LOGIT_TOKENS = 48
PPL_MODELS = ["tiny-llama", "tiny-gpt2"]
PPL_CTXS = [128, 64]
KLD_CTX = 128
LOGIT_MODELS = ["tiny-llama", "tiny-gpt2", "tiny-qwen2", "tiny-mistral"]
TOKENIZER_FILES = {
    "gpt2": ("shared/assets/tokenizers/gpt2_tokenizer.json", SHARED / "tokenizers" / "gpt2_tokenizer.json"),
    "llama": ("shared/assets/tokenizers/llama_tokenizer.json", SHARED / "tokenizers" / "llama_tokenizer.json"),
    "tiny-llama": ("fixtures/models/tiny-llama/tokenizer.json", None),  # path filled in at run time
    "llama-metaspace": ("shared/assets/tokenizers/llama_tokenizer.json + METASPACE_PATCH",
                        SHARED / "tokenizers" / "llama_tokenizer.json"),
}
# The layout transformers 5 (LlamaTokenizer, legacy=False: tokenization_llama.py) and current
# Llama-2 / TinyLlama / Mistral tokenizer.json files use instead of the Prepend + Replace
# normalizers: no normalizer, a Metaspace pre-tokenizer. It does not give the same ids (Metaspace
# prepends only when the text does not already start with "▁", and added tokens are then matched
# in the raw text); the "llama-metaspace" goldens are llama_tokenizer.json with these top-level
# keys replaced (the Swift tests can apply the same patch to the shared file).
METASPACE_PATCH = {
    "normalizer": None,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
}
CORPORA = {
    "wikitext-2-raw_wiki.test.raw": SHARED / "corpora" / "wikitext-2-raw_wiki.test.raw",
    "tinyshakespeare_input.txt": SHARED / "corpora" / "tinyshakespeare_input.txt",
}
HEAD_TAIL = 200

# llama.cpp source this script reproduces (read at this commit).
LLAMA_CPP = "ggml-org/llama.cpp@050fc7f32de16858ac667d775b43a51ed8976e6f tools/perplexity/perplexity.cpp"

# Strings for the tokenizer goldens: each exercises one rule of a pipeline.
TRICKY = [
    ("empty", ""),
    ("space", " "),
    ("two_spaces", "  "),
    ("three_spaces", "   "),
    ("tab", "\t"),
    ("newline", "\n"),
    ("three_newlines", "\n\n\n"),
    ("tab_newline", "\t\n"),
    ("crlf_lines", "line one\r\nline two\r\n"),
    ("lone_cr", "ab\rcd\r\nef"),
    ("hello_world", "Hello world"),
    ("leading_space", " Hello world"),
    ("leading_spaces", "   leading spaces"),
    ("inner_double_space", "Hello  world"),
    ("trailing_spaces", "Hello   world   "),
    ("trailing_blank_lines", "end   \n\n"),
    ("space_newline_space", " \n leading newline"),
    ("digits", "1234567"),
    ("numbers_mixed", "3.14159 and 1,000,000 and 2024-01-01, x=-42"),
    ("contractions", "I'm you're he's don't we'll they've I'd it's"),
    ("contractions_upper", "IT'S DON'T YOU'RE WE'LL"),
    ("apostrophe_alone", "the dogs' bones ' 's"),
    ("accents", "café naïve résumé Ångström Führer"),
    ("combining_accent", "e\u0301 vs \u00e9"),
    ("cjk", "日本語のテキストと中文字符。"),
    ("korean", "한국어 텍스트"),
    ("mixed_scripts", "Ελληνικά кириллица العربية עברית"),
    ("emoji", "🙂 emoji 👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷"),
    ("astral_math", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛"),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u200be"),
    ("control_chars", "nul\u0000 bell\u0007 esc\u001b del\u007f"),
    ("latin1_symbols", "ÿþ ¼ ½ © ® ° ± µ"),
    ("metaspace_char_in_text", "\u2581already \u2581 a metaspace"),
    ("bytelevel_char_in_text", "\u0120G \u010aC"),
    ("punctuation", "$%^&*()_+-=[]{}|;:',.<>/?`~\"!@#"),
    ("code", "def f(x):\n    return x**2  # comment\n\tpass\n"),
    ("url", "https://example.com/path?q=1&r=2#frag"),
    ("special_bos", "<s>"),
    ("special_eos", "</s>"),
    ("special_unk", "<unk>"),
    ("special_endoftext", "<|endoftext|>"),
    ("special_in_text", "Hello<|endoftext|>world <s> x</s>y"),
    ("special_repeated", "<|endoftext|><|endoftext|> <s><s>"),
    ("special_spaced", " <s> Hello </s> "),
    ("special_partial", "<|endoftext| <s </ s>"),
    ("special_then_word", "<s>Hello world"),
    ("word_special_word", "a</s>b <unk>c"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("long_repeat", "supercalifragilisticexpialidocious" * 4),
    ("long_run_a", "a" * 300),
    ("long_run_space", " " * 64 + "x"),
    ("long_digits", "31415926535897932384626433832795028841971693993751"),
    ("shakespeare", "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."),
]


def sha256_u32le(ids) -> str:
    return hashlib.sha256(np.asarray(ids, dtype="<u4").tobytes()).hexdigest()


def rel(p: Path, out: Path) -> str:
    return "fixtures/" + p.resolve().relative_to(out).as_posix()


def compact_json(obj, indent: int = 0) -> str:
    """json with 2-space indentation, but lists of numbers or short strings kept on one line
    (id lists would otherwise take one line per id). Deterministic; ensure_ascii=False."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {compact_json(v, indent + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj) or \
                all(isinstance(v, str) for v in obj):
            return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        if not obj:
            return "[]"
        return "[\n" + ",\n".join(inner + compact_json(v, indent + 1) for v in obj) + "\n" + pad + "]"
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError("non-finite float in a golden")
    return json.dumps(obj, ensure_ascii=False)


def write_compact(path: Path, obj):
    fc.write_text(path, compact_json(obj) + "\n")


# ---------------------------------------------------------------------------
# new fixture models


def qwen2_config() -> Qwen2Config:
    return Qwen2Config(
        vocab_size=mf.VOCAB,
        hidden_size=64,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=0,
        eos_token_id=0,
    )


def mistral_config() -> MistralConfig:
    # hidden 32 with 4 heads of head_dim 16: q_proj is [64, 32], o_proj [32, 64]. The explicit
    # head_dim (!= hidden/heads, as in Mistral-Nemo) keeps the untied model under 300 KB and
    # tests that config.json's head_dim wins over hidden_size / num_attention_heads.
    return MistralConfig(
        vocab_size=mf.VOCAB,
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        hidden_act="silu",
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        sliding_window=None,
        bos_token_id=0,
        eos_token_id=0,
    )


# Scales of the random weights. transformers' own init (std 0.02, biases 0, norms 1) gives
# near-uniform logits (|logit| ~ 0.1), which would make a 1e-4 logit tolerance meaningless; these
# give logits of a few units, non-trivial biases and norm weights.
INIT = {"embedding_std": 0.5, "linear_std": "1/sqrt(in_features)", "bias_std": 0.3,
        "norm_weight": "1 + 0.25 * N(0, 1)"}


def init_random(model, seed: int) -> list:
    """Overwrites every parameter from numpy PCG64(seed) (portable: no torch RNG), in sorted name
    order. Returns the names in that order."""
    r = np.random.Generator(np.random.PCG64(seed))
    names = []
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            z = r.standard_normal(tuple(p.shape))
            if name.endswith("norm.weight"):
                v = 1.0 + 0.25 * z
            elif name.endswith(".bias"):
                v = INIT["bias_std"] * z
            elif "embed_tokens" in name:
                v = INIT["embedding_std"] * z
            elif p.dim() == 2:
                v = z / math.sqrt(p.shape[1])
            else:
                raise AssertionError(f"unexpected parameter {name} {tuple(p.shape)}")
            p.copy_(torch.from_numpy(v.astype(np.float32)))
            names.append(name)
    return names


def make_random_model(out: Path, name: str, cls, config, seed: int) -> dict:
    d = fc.fresh_dir(out / "models" / name)
    with mqg.quiet():
        model = cls(config).eval()
    names = init_random(model, seed)
    model.save_pretrained(d)
    mqg.copy_tokenizer(out / "models" / "tiny-llama", d)
    # The saved file must reload to exactly these weights (and the tied lm_head must be absent).
    saved = safetensors.torch.load_file(str(d / "model.safetensors"))
    sd = model.state_dict()
    for k, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(v, sd[k]), k
    tied = bool(config.tie_word_embeddings)
    assert ("lm_head.weight" in saved) == (not tied)
    size = (d / "model.safetensors").stat().st_size
    log(f"  {name}: {sum(p.numel() for p in model.parameters())} parameters, model.safetensors {size} bytes")
    return {"folder": f"fixtures/models/{name}", "architecture": cls.__name__, "seed": seed,
            "parameters": sum(p.numel() for p in model.parameters()), "tensors": sorted(saved),
            "tied_embeddings": tied, "model_safetensors_bytes": size}


def make_models(out: Path) -> dict:
    return {
        "tiny-qwen2": make_random_model(out, "tiny-qwen2", Qwen2ForCausalLM, qwen2_config(), SEED),
        "tiny-mistral": make_random_model(out, "tiny-mistral", MistralForCausalLM, mistral_config(), SEED + 1),
    }


# ---------------------------------------------------------------------------
# forward passes


def load_model(folder: Path, dtype=torch.float32):
    with mqg.quiet():
        m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager")
    assert m.config._attn_implementation == "eager"
    return m.eval()


def int8_dequantized_f32_model(folder: Path):
    """A plain float32 LlamaForCausalLM whose linear weights are the folder's compressed-tensors
    int8 weights times their group scales (q * scale in float32, groups of group_size along the
    input dimension) and whose other tensors are widened to float32."""
    sd = safetensors.torch.load_file(str(folder / "model.safetensors"))
    cfg_dict = json.loads((folder / "config.json").read_text())
    qc = cfg_dict.pop("quantization_config")
    g = qc["config_groups"]["group_0"]["weights"]["group_size"]
    cfg = transformers.AutoConfig.for_model(**cfg_dict)
    out, quantized = {}, []
    for k, v in sd.items():
        if k.endswith(".weight_scale"):
            continue
        scale_key = k[: -len("weight")] + "weight_scale"
        if scale_key in sd:
            assert v.dtype == torch.int8
            s = sd[scale_key].float().repeat_interleave(g, dim=1)[:, : v.shape[1]]
            out[k] = v.float() * s
            quantized.append(k)
        else:
            out[k] = v.float()
    with mqg.quiet():
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32,
                                                              attn_implementation="eager")
    missing, unexpected = model.load_state_dict(out, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model.eval(), sorted(quantized)


@torch.no_grad()
def forward(model, ids) -> torch.Tensor:
    return model(input_ids=torch.tensor([list(ids)], dtype=torch.long)).logits[0]


def make_logits(out: Path, ids: list) -> dict:
    tensors = {"token_ids": torch.tensor(ids, dtype=torch.int32)}
    info = {}
    for name in LOGIT_MODELS:
        folder = out / "models" / name
        m = load_model(folder)
        cfg = json.loads((folder / "config.json").read_text())
        logits = forward(m, ids).float().contiguous()
        assert logits.shape == (len(ids), mf.VOCAB)
        logits64 = forward(m.double(), ids)
        tensors[name] = logits
        info[name] = {
            "tensor": name,
            "folder": f"fixtures/models/{name}",
            "architecture": cfg["architectures"][0],
            "weights_dtype": cfg.get("dtype") or cfg.get("torch_dtype"),
            "compute": "float32 (weights widened exactly), eager attention, no KV cache, one sequence",
            "shape": list(logits.shape),
            "logit_abs_max": float(logits.abs().max()),
            "logit_std": float(logits.double().std()),
            "argmax_first_8": logits.argmax(-1)[:8].tolist(),
            "max_abs_diff_vs_float64_forward": float((logits.double() - logits64).abs().max()),
        }
        log(f"  {name}: |logit| max {info[name]['logit_abs_max']:.3f}, f32 vs f64 "
            f"{info[name]['max_abs_diff_vs_float64_forward']:.2e}")
    safetensors.torch.save_file(tensors, str(out / "eval" / "logits.safetensors"), metadata={"format": "pt"})
    return {
        "file": "logits.safetensors",
        "text": "fixtures/text/eval.txt: the first 48 ids of tokenizers.Tokenizer.from_file("
                "fixtures/models/tiny-llama/tokenizer.json).encode(text).ids (all four models share "
                "this tokenizer; it adds no BOS)",
        "n_tokens": len(ids),
        "token_ids": ids,
        "tensors": "token_ids I32 [48]; one F32 [48, 512] tensor per model, named as the model; row i = "
                   "logits after reading ids[0..i] (positions 0..i)",
        "models": info,
    }


# ---------------------------------------------------------------------------
# llama.cpp-style perplexity


@torch.no_grad()
def chunk_logits(model, stream: list, ctx: int, bos_id=None):
    """Yields (chunk index, the chunk's original tokens, its f32 logits [ctx, vocab]): chunks are
    stream[i*ctx:(i+1)*ctx] for i < len(stream)//ctx; with bos_id, position 0 of the forward's
    input is replaced by it (the targets are the original tokens)."""
    n_chunks = len(stream) // ctx
    for i in range(n_chunks):
        toks = stream[i * ctx:(i + 1) * ctx]
        inp = list(toks)
        if bos_id is not None:
            inp[0] = bos_id
        yield i, toks, forward(model, inp).float()


def scored(logits: torch.Tensor, toks: list, ctx: int):
    """llama.cpp: first = n_ctx/2; logits at positions first..n_ctx-2 score tokens first+1..n_ctx-1.
    Returns (f64 log-probs [n, vocab], targets [n])."""
    first = ctx // 2
    logp = torch.log_softmax(logits[first:ctx - 1].double(), dim=-1)
    targets = torch.tensor(toks[first + 1:ctx], dtype=torch.long)
    return logp, targets


def ppl_stats(nll: np.ndarray) -> dict:
    """llama.cpp perplexity(): nll /= count; ppl = exp(nll); nll2 /= count; nll2 -= nll*nll;
    stderr(ppl) = ppl * sqrt(nll2 / (count - 1))."""
    n = len(nll)
    mean = math.fsum(nll) / n
    mean2 = math.fsum(nll * nll) / n
    var = mean2 - mean * mean
    ppl = math.exp(mean)
    se_log = math.sqrt(var / (n - 1))
    return {"count": n, "sum_nll": math.fsum(nll), "mean_nll": mean, "mean_nll_squared": mean2,
            "ppl": ppl, "ppl_stderr": ppl * se_log, "log_ppl_stderr": se_log}


def perplexity_run(model, stream: list, ctx: int, bos_id=None) -> dict:
    first = ctx // 2
    per_chunk, all_nll, running = [], [], []
    for i, toks, logits in chunk_logits(model, stream, ctx, bos_id):
        logp, targets = scored(logits, toks, ctx)
        nll = (-logp.gather(1, targets[:, None])[:, 0]).numpy()
        assert len(nll) == ctx - 1 - first
        per_chunk.append(math.fsum(nll) / len(nll))
        all_nll.append(nll)
        cat = np.concatenate(all_nll)
        running.append(math.exp(math.fsum(cat) / len(cat)))
    nll = np.concatenate(all_nll)
    return {"ctx": ctx, "first": first, "n_chunks": len(per_chunk), "scored_per_chunk": ctx - 1 - first,
            "bos_replaced_with": bos_id, **ppl_stats(nll), "chunk_mean_nll": per_chunk,
            "running_ppl": running}


def make_perplexity(out: Path, stream: list) -> dict:
    runs = {}
    for name in PPL_MODELS:
        m = load_model(out / "models" / name)
        runs[name] = {}
        for ctx in PPL_CTXS:
            r = perplexity_run(m, stream, ctx)
            runs[name][str(ctx)] = r
            log(f"  {name} ctx {ctx}: {r['n_chunks']} chunks, PPL {r['ppl']:.4f} +/- {r['ppl_stderr']:.4f}")
    # What llama.cpp would do if the vocab added BOS (id 0 = <|endoftext|>, the config's
    # bos_token_id): the first token of every chunk is replaced by BOS in the forward.
    m = load_model(out / "models" / "tiny-llama")
    bos = perplexity_run(m, stream, 128, bos_id=0)
    log(f"  tiny-llama ctx 128, BOS replaced: PPL {bos['ppl']:.4f}")
    return {
        "text": "fixtures/text/eval.txt (whole file)",
        "tokenizer": "fixtures/models/tiny-llama/tokenizer.json via tokenizers.Tokenizer.encode(text).ids "
                     "(tiny-gpt2 has the identical tokenizer.json); it adds no BOS, so no chunk is modified",
        "n_tokens": len(stream),
        "ids_sha256_u32le": sha256_u32le(stream),
        "ids_file": "eval_tokens_u32le.bin",
        "add_bos": False,
        "method": f"{LLAMA_CPP}, function perplexity()",
        "runs": runs,
        "extra_bos_replaced": {
            "note": "NOT the tokenizer's behaviour (it adds no BOS): what llama.cpp does when add_bos is true, "
                    "for testing that code path: tiny-llama, ctx 128, input position 0 of every chunk "
                    "replaced by id 0 (<|endoftext|>, config bos_token_id); targets unchanged",
            "tiny-llama": {"128": bos},
        },
    }


# ---------------------------------------------------------------------------
# KL divergence


def mean_and_uncertainty(s: float, s2: float, count: int):
    """llama.cpp kl_divergence(): f = sum/count; df = sum2/count - f*f;
    df = df > 0 && count > 10 ? sqrt(df/(count-1)) : 0."""
    f = s / count
    df = s2 / count - f * f
    df = math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0
    return f, df


def covariance(sa: float, sb: float, sab: float, count: int) -> float:
    if count < 10:
        return 0.0
    return (sab / count - (sa / count) * (sb / count)) / (count - 1)


def pct(v: np.ndarray, q: float) -> float:
    return float(np.percentile(v, q, method="linear"))


@torch.no_grad()
def kld_run(base, cand, stream: list, ctx: int):
    kl, nll_b, nll_c, same = [], [], [], []
    cand_chunks = chunk_logits(cand, stream, ctx)
    for (i, toks, lb), (j, _, lc) in zip(chunk_logits(base, stream, ctx), cand_chunks):
        assert i == j
        lpb, targets = scored(lb, toks, ctx)
        lpc, _ = scored(lc, toks, ctx)
        first = ctx // 2
        kl.append((lpb.exp() * (lpb - lpc)).sum(-1).numpy())
        nll_b.append((-lpb.gather(1, targets[:, None])[:, 0]).numpy())
        nll_c.append((-lpc.gather(1, targets[:, None])[:, 0]).numpy())
        same.append((lb[first:ctx - 1].argmax(-1) == lc[first:ctx - 1].argmax(-1)).numpy())
    kl, nll_b, nll_c, same = (np.concatenate(x) for x in (kl, nll_b, nll_c, same))
    dp = np.exp(-nll_c) - np.exp(-nll_b)
    n = len(kl)
    fs = math.fsum
    log_ppl = mean_and_uncertainty(fs(nll_c), fs(nll_c * nll_c), n)
    log_ppl_b = mean_and_uncertainty(fs(nll_b), fs(nll_b * nll_b), n)
    cov = covariance(fs(nll_c), fs(nll_b), fs(nll_c * nll_b), n)
    ratio_unc = math.sqrt(log_ppl[1] ** 2 + log_ppl_b[1] ** 2 - 2 * cov)
    kld_mu = mean_and_uncertainty(fs(kl), fs(kl * kl), n)
    mse = mean_and_uncertainty(fs(dp * dp), fs(dp ** 4), n)
    same_top = float(same.sum()) / n
    stats = {
        "count": n,
        "n_chunks": len(stream) // ctx,
        "kld": {
            "mean": kld_mu[0], "mean_uncertainty": kld_mu[1],
            "median": float(np.median(kl)),
            "p90": pct(kl, 90), "p95": pct(kl, 95), "p99": pct(kl, 99), "p99_9": pct(kl, 99.9),
            "max": float(kl.max()), "min": float(kl.min()),
        },
        "same_top_rate": same_top,
        "same_top_uncertainty": math.sqrt(same_top * (1 - same_top) / (n - 1)),
        "delta_p": {
            "mean": mean_and_uncertainty(fs(dp), fs(dp * dp), n)[0],
            "mean_uncertainty": mean_and_uncertainty(fs(dp), fs(dp * dp), n)[1],
            "rms": math.sqrt(mse[0]), "rms_uncertainty": 0.5 / math.sqrt(mse[0]) * mse[1],
            "median": float(np.median(dp)),
            "p1": pct(dp, 1), "p99": pct(dp, 99), "min": float(dp.min()), "max": float(dp.max()),
            "max_abs": float(np.abs(dp).max()),
        },
        "ppl_base": math.exp(log_ppl_b[0]), "ppl_base_uncertainty": math.exp(log_ppl_b[0]) * log_ppl_b[1],
        "ppl_candidate": math.exp(log_ppl[0]), "ppl_candidate_uncertainty": math.exp(log_ppl[0]) * log_ppl[1],
        "ppl_ratio": math.exp(log_ppl[0] - log_ppl_b[0]),
        "ppl_ratio_uncertainty": math.exp(log_ppl[0] - log_ppl_b[0]) * ratio_unc,
        "mean_ln_ppl_ratio": log_ppl[0] - log_ppl_b[0], "mean_ln_ppl_ratio_uncertainty": ratio_unc,
        "ln_ppl_correlation": cov / (log_ppl[1] * log_ppl_b[1]),
        "ppl_difference": math.exp(log_ppl[0]) - math.exp(log_ppl_b[0]),
    }
    return stats, kl


def make_kld(out: Path, stream: list) -> dict:
    base = load_model(out / "models" / "tiny-llama")
    nf4, nf4_q = mqg.dequantized_f32_model(out / "models" / "tiny-llama-bnb-nf4")
    nf4.config._attn_implementation = "eager"
    nf4.set_attn_implementation("eager")
    int8, int8_q = int8_dequantized_f32_model(out / "models" / "tiny-llama-ct-int8")
    results, tensors = {}, {}
    for name, model, q, how in [
        ("tiny-llama-bnb-nf4", nf4, nf4_q,
         "bitsandbytes dequantize_4bit of each NF4 weight into float32 (code[q] * absmax, absmax "
         "decoded from the nested 8-bit codes + offset), other tensors widened; plain f32 LlamaForCausalLM"),
        ("tiny-llama-ct-int8", int8, int8_q,
         "each int8 weight times its float32 group scale (q * scale, groups of 64 along the input "
         "dimension), other tensors widened; plain f32 LlamaForCausalLM"),
    ]:
        assert model.config._attn_implementation == "eager"
        stats, kl = kld_run(base, model, stream, KLD_CTX)
        tensors[name] = torch.from_numpy(kl.astype(np.float32))
        results[name] = {"folder": f"fixtures/models/{name}", "dequantization": how,
                         "quantized_weights": len(q), **stats}
        log(f"  {name}: KLD mean {stats['kld']['mean']:.6f} median {stats['kld']['median']:.6f} "
            f"p99 {stats['kld']['p99']:.6f} max {stats['kld']['max']:.6f}, same top "
            f"{100 * stats['same_top_rate']:.2f}%, PPL {stats['ppl_base']:.4f} -> {stats['ppl_candidate']:.4f}")
    safetensors.torch.save_file(tensors, str(out / "eval" / "kld_values.safetensors"), metadata={"format": "pt"})
    return {
        "base": "fixtures/models/tiny-llama (bf16 weights widened, float32 compute, eager attention)",
        "text": "fixtures/text/eval.txt, the same token stream as 'perplexity'",
        "ctx": KLD_CTX, "first": KLD_CTX // 2, "scored_per_chunk": KLD_CTX - 1 - KLD_CTX // 2,
        "method": f"{LLAMA_CPP}, function kl_divergence(), with exact float64 log-probabilities "
                  "(see README: llama.cpp stores base log-probs as uint16 and skips p_base < e^-16)",
        "per_token_values_file": "kld_values.safetensors (F32 [count] per candidate, in scoring order: "
                                 "chunk-major, then position first..ctx-2)",
        "candidates": results,
    }


# ---------------------------------------------------------------------------
# tokenizers


def model_facts(model: dict) -> dict:
    facts = {k: v for k, v in model.items() if k not in ("vocab", "merges")}
    facts["vocab_size"] = len(model.get("vocab", {}))
    if "merges" in model:
        merges = model["merges"]
        facts["merges_count"] = len(merges)
        facts["merges_format"] = ("strings 'left right' (one space)" if merges and isinstance(merges[0], str)
                                  else "pairs [left, right]")
        facts["first_merges"] = [m if isinstance(m, str) else " ".join(m) for m in merges[:5]]
    return facts


def load_tokenizer(out: Path, tname: str):
    """(Tokenizer, its JSON as a dict, the file it comes from)."""
    path = TOKENIZER_FILES[tname][1] or out / "models" / "tiny-llama" / "tokenizer.json"
    path = path.resolve()
    raw = json.loads(path.read_text(encoding="utf-8"))
    if tname == "llama-metaspace":
        raw.update(METASPACE_PATCH)
        return tokenizers.Tokenizer.from_str(json.dumps(raw)), raw, path
    return tokenizers.Tokenizer.from_file(str(path)), raw, path


def tokenizer_facts(path: Path, raw: dict, tok: tokenizers.Tokenizer) -> dict:
    with_special = tok.encode("a").ids
    without = tok.encode("a", add_special_tokens=False).ids
    facts = {
        "sha256_of_file": hashlib.sha256(path.read_bytes()).hexdigest(),
        "normalizer": raw.get("normalizer"),
        "pre_tokenizer": raw.get("pre_tokenizer"),
        "model": model_facts(raw["model"]),
        "post_processor": raw.get("post_processor"),
        "decoder": raw.get("decoder"),
        "added_tokens": raw.get("added_tokens"),
        "truncation": raw.get("truncation"),
        "padding": raw.get("padding"),
        "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True),
        "encode_a_with_special_tokens": with_special,
        "encode_a_without_special_tokens": without,
        "adds_bos": len(with_special) > len(without) and with_special[0] != without[0],
        "adds_eos": len(with_special) > len(without) and with_special[-1] != without[-1],
    }
    return facts


def make_tokenizers(out: Path) -> dict:
    result = {"strings": [{"name": n, "text": s} for n, s in TRICKY], "tokenizers": {}, "corpora": {}}
    corpora = {}
    for cname, cpath in CORPORA.items():
        data = cpath.resolve().read_bytes()
        corpora[cname] = data.decode("utf-8")
        result["corpora"][cname] = {"path": f"shared/assets/corpora/{cname}", "bytes": len(data),
                                    "chars": len(corpora[cname]), "crlf": data.count(b"\r\n"),
                                    "sha256": hashlib.sha256(data).hexdigest()}
    for tname, (label, path) in TOKENIZER_FILES.items():
        tok, raw, path = load_tokenizer(out, tname)
        entry = {"file": label, **({"patch": METASPACE_PATCH} if tname == "llama-metaspace" else {}),
                 "facts": tokenizer_facts(path, raw, tok), "strings": {}, "corpora": {}}
        for n, s in TRICKY:
            enc = tok.encode(s)
            entry["strings"][n] = {"ids": enc.ids, "tokens": enc.tokens}
        for cname, text in corpora.items():
            ids = tok.encode(text).ids
            entry["corpora"][cname] = {"n_tokens": len(ids), "ids_sha256_u32le": sha256_u32le(ids),
                                       "first_200": ids[:HEAD_TAIL], "last_200": ids[-HEAD_TAIL:]}
            log(f"  {tname} {cname}: {len(ids)} tokens")
        result["tokenizers"][tname] = entry
    write_compact(out / "eval" / "tokenizers.json", {
        "generator": "tools/make_eval_goldens.py",
        "versions": {"tokenizers": tokenizers.__version__},
        "encode": "tokenizers.Tokenizer.from_file(file).encode(text) with the default "
                  "add_special_tokens=True; 'ids' are Encoding.ids, 'tokens' Encoding.tokens",
        "ids_sha256_u32le": "sha256 of the ids written as consecutive little-endian uint32",
        **result,
    })
    return result


def time_tokenizers(out: Path) -> dict:
    """Single-thread encoding speed of the whole corpora (TOKENIZERS_PARALLELISM=false, one
    Tokenizer.encode call per corpus). 'cold' = the first encode with a fresh Tokenizer (empty BPE
    word cache); 'warm' = best of 3 further encodes of the same text on that Tokenizer."""
    res = {"tokenizers": tokenizers.__version__, "threads": 1, "results": {}}
    for tname in TOKENIZER_FILES:
        for cname, cpath in CORPORA.items():
            data = cpath.resolve().read_bytes()
            text = data.decode("utf-8")
            tok = load_tokenizer(out, tname)[0]
            t0 = time.perf_counter()
            n = len(tok.encode(text).ids)
            cold = time.perf_counter() - t0
            warm = []
            for _ in range(3):
                t0 = time.perf_counter()
                tok.encode(text)
                warm.append(time.perf_counter() - t0)
            res["results"][f"{tname} / {cname}"] = {
                "bytes": len(data), "tokens": n, "cold_s": round(cold, 4), "warm_best_s": round(min(warm), 4),
                "cold_MB_per_s": round(len(data) / cold / 1e6, 3),
                "warm_MB_per_s": round(len(data) / min(warm) / 1e6, 3)}
    return res


# ---------------------------------------------------------------------------
# README


def fmt(x: float, d: int = 6) -> str:
    return f"{x:.{d}f}"


def make_readme(out: Path, manifest: dict, tok: dict):
    lg = manifest["logits"]
    pp = manifest["perplexity"]
    kd = manifest["kl_divergence"]
    mdl = manifest["models"]
    logit_rows = "\n".join(
        f"| `{n}` | {i['architecture']} | {i['weights_dtype']} | {i['logit_abs_max']:.3f} | "
        f"{i['max_abs_diff_vs_float64_forward']:.1e} |" for n, i in lg["models"].items())
    ppl_rows = "\n".join(
        f"| `{n}` | {c} | {r['n_chunks']} | {r['count']} | {fmt(r['mean_nll'])} | {fmt(r['ppl'], 4)} | "
        f"{fmt(r['ppl_stderr'], 4)} |" for n, runs in pp["runs"].items() for c, r in runs.items())
    bos = pp["extra_bos_replaced"]["tiny-llama"]["128"]
    kld_rows = "\n".join(
        f"| `{n}` | {fmt(c['kld']['mean'])} | {fmt(c['kld']['median'])} | {fmt(c['kld']['p90'])} | "
        f"{fmt(c['kld']['p99'])} | {fmt(c['kld']['max'])} | {100 * c['same_top_rate']:.3f}% | "
        f"{fmt(c['delta_p']['mean'])} | {fmt(c['delta_p']['rms'])} | {fmt(c['ppl_base'], 4)} | "
        f"{fmt(c['ppl_candidate'], 4)} | {fmt(c['ppl_ratio'])} |" for n, c in kd["candidates"].items())
    tk = tok["tokenizers"]
    corpus_rows = "\n".join(
        f"| `{t}` | `{c}` | {v['n_tokens']:,} | `{v['ids_sha256_u32le'][:16]}…` |"
        for t, e in tk.items() for c, v in e["corpora"].items())
    q2, mi = mdl["tiny-qwen2"], mdl["tiny-mistral"]
    qc = json.loads((out / "models" / "tiny-qwen2" / "config.json").read_text())
    mc = json.loads((out / "models" / "tiny-mistral" / "config.json").read_text())
    sizes = {p.name: p.stat().st_size for p in sorted((out / "eval").iterdir()) if p.name != "README.md"}
    size_rows = "\n".join(f"| `{k}` | {v:,} |" for k, v in sizes.items())
    text = f"""\
# Evaluation goldens

Made by `tools/make_eval_goldens.py` (run by `tools/make_fixtures.sh` after
`tools/make_fixtures.py` and `tools/make_quant_goldens.py`) with torch {manifest['versions']['torch']},
transformers {manifest['versions']['transformers']}, tokenizers {manifest['versions']['tokenizers']},
numpy {manifest['versions']['numpy']}, on CPU, one thread, `ATEN_CPU_CAPABILITY=avx2`. A second run
rewrites every file byte for byte.

| file | bytes |
|---|---|
{size_rows}

- `logits.safetensors`: `token_ids` (I32 [48]) and one F32 [48, 512] tensor per fixture model
  (`tiny-llama`, `tiny-gpt2`, `tiny-qwen2`, `tiny-mistral`): transformers' logits, float32, eager
  attention, one sequence, no cache. Row i is the prediction after ids[0..i].
- `eval_tokens_u32le.bin`: the token stream of the whole `fixtures/text/eval.txt` (the tiny-llama
  tokenizer, which tiny-gpt2 shares), as consecutive little-endian uint32;
  {pp['n_tokens']:,} tokens, sha256 `{pp['ids_sha256_u32le']}` (= the file's sha256).
- `kld_values.safetensors`: per scored token, KL(base‖candidate) (F32, one [{kd['candidates']['tiny-llama-bnb-nf4']['count']}]
  tensor per candidate, chunk-major then position order).
- `manifest.json`: `models` (the two new fixture models), `logits`, `perplexity`, `kl_divergence`.
- `tokenizers.json`: tokenizer goldens and the pipeline of each tokenizer.json (`facts`).

## New fixture models

Random weights (no training), float32 `model.safetensors`, the tiny-llama tokenizer files copied
(vocab 512, no BOS added). Every parameter, in sorted name order, is drawn from numpy
`Generator(PCG64(seed))`: 2-D weights N(0, 1/in_features), embeddings N(0, {INIT['embedding_std']}²),
biases N(0, {INIT['bias_std']}²), norm weights 1 + 0.25·N(0, 1) (transformers' own init, std 0.02 with zero
biases and unit norms, gives near-uniform logits that would make a 1e-4 tolerance meaningless).

| folder | architecture | shape | notes | bytes |
|---|---|---|---|---|
| `models/tiny-qwen2/` | Qwen2ForCausalLM | hidden {qc['hidden_size']}, {qc['num_hidden_layers']} layers, {qc['num_attention_heads']} heads, {qc['num_key_value_heads']} kv heads (head_dim 16, not in config.json), intermediate {qc['intermediate_size']} | q/k/v biases, tied embeddings (no `lm_head.weight` in the file), rope_theta {qc['rope_parameters']['rope_theta']:.0f} (`rope_parameters`), rms_norm_eps {qc['rms_norm_eps']:g}, `use_sliding_window: false`, max_position_embeddings {qc['max_position_embeddings']} | {q2['model_safetensors_bytes']:,} |
| `models/tiny-mistral/` | MistralForCausalLM | hidden {mc['hidden_size']}, {mc['num_hidden_layers']} layers, {mc['num_attention_heads']} heads, {mc['num_key_value_heads']} kv heads, **head_dim {mc['head_dim']}** (≠ hidden/heads = {mc['hidden_size'] // mc['num_attention_heads']}: q_proj [64, 32], o_proj [32, 64]), intermediate {mc['intermediate_size']} | untied `lm_head.weight`, no biases, rope_theta {mc['rope_parameters']['rope_theta']:g}, rms_norm_eps {mc['rms_norm_eps']:g}, `sliding_window: null` | {mi['model_safetensors_bytes']:,} |

Note: the k_proj bias of Qwen2 has no effect on attention in exact arithmetic (it adds q·b_k to
every score of a row, and softmax is shift-invariant); q and v biases do.

## Logits

Token ids (48): the first 48 of `tokenizers.Tokenizer.from_file(tiny-llama/tokenizer.json).encode(eval.txt).ids`;
listed in `manifest.json` → `logits.token_ids`.

| tensor | architecture | weights on disk | max abs logit | max \\|f32 − f64 forward\\| |
|---|---|---|---|---|
{logit_rows}

The last column is transformers' own float32 rounding error (the same model run in float64);
transformers' sdpa attention differs from eager by about as much (≤ 1.4e-5 on these sequences), so a
correct float32 implementation has ample room within 1e-4. tiny-llama's bf16 weights
are widened to float32 exactly (`from_pretrained(dtype=torch.float32)`).

## Perplexity (llama.cpp's method)

Source: `{LLAMA_CPP}`, function `perplexity()` (the default path, `--ppl-stride 0`):

- `tokens = common_tokenize(ctx, text, true)`: the whole text tokenized once, special tokens
  (BOS) added as the vocab says. It needs `tokens.size() >= 2*n_ctx`.
- `n_chunk_max = tokens.size() / n_ctx` (integer division; the tail is dropped); chunk i is
  `tokens[i*n_ctx, (i+1)*n_ctx)`, evaluated from an empty KV cache, positions 0..n_ctx-1.
- With `add_bos`, `tokens[start]` is replaced by BOS for the forward ("add BOS token for the first
  batch of each chunk") and restored afterwards. The tiny tokenizer adds no BOS (its post-processor
  is `TemplateProcessing` with `single: [A]`), so nothing is replaced here.
- `const int first = n_ctx/2;` then `process_logits(n_vocab, logits + first*n_vocab, tokens +
  start + first, n_ctx - 1 - first, ...)`: the logits at chunk positions `first .. n_ctx-2` score
  the tokens at positions `first+1 .. n_ctx-1` (`tokens[i+1]` for logit row i). That is
  `n_ctx - 1 - first` tokens per chunk: 63 for ctx 128, 31 for ctx 64. `count += n_ctx - first - 1`.
- Per token `v = -(logits[tok] - max_logit - log(sum_exp))`; `nll += v; nll2 += v*v`.
- Final: `nll2 /= count; nll /= count; ppl = exp(nll); nll2 -= nll*nll; nll2 = sqrt(nll2/(count-1));`
  printed as `PPL = ppl +/- nll2*ppl`. So **stderr(PPL) = PPL · sqrt((mean(v²) − mean(v)²)/(count − 1))**.
- The running value llama.cpp prints after chunk i, `[i]%.4lf`, is `exp(nll_so_far/count_so_far)`
  (`running_ppl` in the manifest); `chunk_mean_nll` is each chunk's own mean NLL.

Here: float32 logits from transformers (one chunk per forward, batch 1, eager attention), then
`log_softmax` in float64, sums with `math.fsum`. Token stream: `eval_tokens_u32le.bin`
({pp['n_tokens']:,} tokens).

| model | ctx | chunks | scored tokens | mean NLL | PPL | ± stderr |
|---|---|---|---|---|---|---|
{ppl_rows}

`perplexity.extra_bos_replaced` is the same tiny-llama ctx-128 run with input position 0 of every
chunk replaced by id 0 (`<|endoftext|>`, the config's bos_token_id), i.e. what llama.cpp does when
the vocab adds BOS: PPL {fmt(bos['ppl'], 4)} ± {fmt(bos['ppl_stderr'], 4)}. It is only for testing that code path.

## KL divergence

Base: tiny-llama (f32 compute). Candidates, each dequantized into a plain f32 LlamaForCausalLM (no
bitsandbytes kernel in the forward):

- `tiny-llama-bnb-nf4`: `bitsandbytes.functional.dequantize_4bit` of every NF4 weight with the
  QuantState's dtype set to float32 (code[q] · absmax, absmax decoded from its nested 8-bit codes
  plus offset); embeddings, norms and lm_head widened from bf16.
- `tiny-llama-ct-int8`: `q.float() * scale` with the float32 scale of each group of 64 input columns.

Chunks exactly as for perplexity (ctx {kd['ctx']}, all {kd['candidates']['tiny-llama-ct-int8']['n_chunks']} chunks, positions
{kd['first']}..{kd['ctx'] - 2} scored, {kd['scored_per_chunk']} per chunk). For every scored position, with lp = float64
`log_softmax` of the float32 logits:

- KL(base‖cand) = Σ_v exp(lp_base[v]) · (lp_base[v] − lp_cand[v]) over all 512 entries.
- same top token: `argmax` of the base float32 logits == `argmax` of the candidate's (first index
  of the maximum in both).
- Δp = p_cand(true) − p_base(true), p = exp(lp[true token]). `delta_p.mean` = mean Δp;
  `delta_p.rms` = sqrt(mean(Δp²)).
- ppl_base / ppl_candidate = exp(mean NLL) over the same scored tokens; `ppl_ratio` =
  ppl_candidate/ppl_base; `mean_ln_ppl_ratio` = mean(NLL_cand) − mean(NLL_base) = ln(ppl_ratio).
- Median: `numpy.median` (the mean of the two middle values for an even count, as llama.cpp).
  Percentiles p90/p95/p99/p99.9: `numpy.percentile(values, q, method="linear")`: sort ascending,
  h = (n−1)·q/100, result = v[⌊h⌋] + (h − ⌊h⌋)·(v[⌊h⌋+1] − v[⌊h⌋]). llama.cpp's `percentile` lambda
  is the same interpolation (it computes `fraction*(n-1)` in float32 on float32 values).
- The `*_uncertainty` fields reproduce llama.cpp's `mean_and_uncertainty` (f = Σx/n; d = Σx²/n − f²;
  d = d > 0 && n > 10 ? sqrt(d/(n−1)) : 0), `covariance` ((Σab/n − Σa/n·Σb/n)/(n−1)), and
  ln-ratio uncertainty sqrt(u_q² + u_base² − 2·cov), PPL uncertainty PPL·u, RMS Δp uncertainty
  0.5/rms · u(Δp²), same-top uncertainty sqrt(p(1−p)/(n−1)).

Differences from `llama-perplexity --kl-divergence` (by design; they are far below the 1% tolerance
here but say what "the same computed in torch" means): llama.cpp stores the base log-probs as
uint16 codes over [max(min_logit, max_logit−16) − max_logit − log_sum_exp, 0], skips vocabulary
entries with base log-prob ≤ −16 in the KL sum, takes the base's top token from those codes, and
accumulates in float (`expf`, float32 per-token values). Here everything is exact float64 from the
float32 logits.

| candidate | mean KLD | median | p90 | p99 | max | same top | mean Δp | RMS Δp | PPL base | PPL cand | ratio |
|---|---|---|---|---|---|---|---|---|---|---|---|
{kld_rows}

## Tokenizers (`tokenizers.json`)

Four tokenizers: `gpt2` (`../shared/assets/tokenizers/gpt2_tokenizer.json`), `llama`
(`../shared/assets/tokenizers/llama_tokenizer.json`, Llama-2/TinyLlama, older converted layout),
`tiny-llama` (`fixtures/models/tiny-llama/tokenizer.json`) and `llama-metaspace`: the llama file
with its top-level `normalizer` set to `null` and `pre_tokenizer` set to
`{{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}}` (the layout
transformers 5 itself builds for Llama/Mistral, `LlamaTokenizer(legacy=False)`; not stored, apply
the same patch to the shared file; it is also in `tokenizers.llama-metaspace.patch`). For each:

- `strings.<name>`: `{{ids, tokens}}` of `Tokenizer.encode(text)` (default `add_special_tokens=True`)
  for the {len(TRICKY)} strings in the top-level `strings` list.
- `corpora.<name>`: `n_tokens`, `ids_sha256_u32le`, `first_200`, `last_200` for the whole
  `wikitext-2-raw_wiki.test.raw` and `tinyshakespeare_input.txt` (each file's bytes decoded as
  UTF-8, no newline translation, and encoded in one call). Note: this copy of wikitext-2 has CRLF
  line ends ({tok['corpora']['wikitext-2-raw_wiki.test.raw']['crlf']:,} `\\r\\n`); the `\\r` are kept (reading it in Python text
  mode would drop them and change the counts).
- `facts`: the normalizer, pre_tokenizer, post_processor, decoder and added_tokens exactly as in
  the file, the model's parameters (vocab and merges replaced by counts and the merges' format),
  and whether encoding adds BOS/EOS.

| tokenizer | corpus | tokens | ids sha256 |
|---|---|---|---|
{corpus_rows}

### Pipeline facts

**gpt2** (SmolLM2, Qwen2 and Llama-3 files are byte-level BPE too but use other pre-tokenizers, e.g.
Qwen2: `Split` with the regex
`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{{L}}\\p{{N}}]?\\p{{L}}+|\\p{{N}}| ?[^\\s\\p{{L}}\\p{{N}}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`
(behaviour Isolated) then `ByteLevel {{use_regex: false}}`; no such file is covered here):
- normalizer: none. pre_tokenizer: `ByteLevel {{add_prefix_space: false, trim_offsets: true,
  use_regex: true}}`: split with the GPT-2 regex
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{{L}}+| ?\\p{{N}}+| ?[^\\s\\p{{L}}\\p{{N}}]+|\\s+(?!\\S)|\\s+`
  (case-sensitive contractions; `\\s+(?!\\S)` leaves the last whitespace char of a run to the next
  word), then map every UTF-8 byte to its visible byte-level char (printable Latin-1 bytes
  `!`..`~`, `¡`..`¬`, `®`..`ÿ` map to themselves, the other 68 bytes to U+0100.. in order: space →
  `Ġ` U+0120, `\\n` → `Ċ` U+010A).
- model: `BPE`, vocab 50,257, 50,000 merges as "left right" strings, `continuing_subword_prefix: ""`,
  `end_of_word_suffix: ""`, no unk, no byte_fallback, `ignore_merges` absent (false). Merge rank =
  line order; repeatedly merge the adjacent pair of lowest rank.
- added tokens: `<|endoftext|>` (50256, special, normalized: false): split out of the raw text
  before pre-tokenization wherever it occurs.
- post_processor: `ByteLevel {{trim_offsets: false}}`: only adjusts offsets; **no BOS/EOS added**.
- decoder: `ByteLevel`.

**llama** (Llama-2 / TinyLlama, SentencePiece converted to BPE; the older layout without a
pre_tokenizer — newer files, e.g. Mistral's, use `pre_tokenizer: Metaspace {{replacement: "▁",
prepend_scheme: "first", split: false}}` and no normalizer, which does **not** give the same ids:
see llama-metaspace below):
- normalizer: `Sequence[Prepend("▁"), Replace(" " → "▁")]`: prepend one `▁` (U+2581) to the input
  (unconditionally, also before a leading space: `" "` → `▁▁`; nothing for empty input), then every
  space becomes `▁`. Nothing else (no NFKC; tabs, newlines, `\\r` stay). It runs on the whole input:
  the only added tokens are `normalized: true`, so nothing is split off before normalizing.
- pre_tokenizer: **none**: each piece of the normalized text between added tokens is one BPE "word".
- model: `BPE`, vocab 32,000, 61,249 merges as strings, `unk_token: "<unk>"`, `fuse_unk: true`,
  **`byte_fallback: true`**: a character with no vocab entry becomes its UTF-8 bytes as `<0xXX>`
  tokens (ids 3..258), never `<unk>`.
- added tokens: `<unk>` 0, `<s>` 1, `</s>` 2, all special with `normalized: true`: they are matched
  in the normalized text **by their normalized content**, and the normalizer prepends `▁` to the
  content too: `<s>` is searched as `▁<s>`. So `"<s>"` → `[1, 1]` (BOS, then `▁<s>` = 1),
  `" <s> Hello </s> "` → `[1, 29871, 1, 15043, 2, 29871]`, but `"x</s>y"` keeps `</s>` as text
  (`</`, `s`, `>`): no `▁` before it (strings `special_*`, `word_special_word`).
- post_processor: `TemplateProcessing single: ["<s>", A]`: **BOS id 1 is prepended** with
  add_special_tokens=True (also for the empty string: `[1]`).
- decoder: `Sequence[Replace("▁" → " "), ByteFallback, Fuse, Strip(" ", start 1)]`.

**llama-metaspace**: the same model, added tokens and post-processor, but no normalizer and
`pre_tokenizer: Metaspace(replacement "▁", prepend_scheme "first", split false)`: in each piece of
the raw text between added tokens, spaces become `▁`; then `▁` is prepended only if the piece starts
at offset 0 of the input ("first") and does not already start with `▁`; no split (`split: false`),
so each piece is one BPE word. Added tokens are matched in the raw text by their literal content.
Differences from `llama`: `" "` → `[1, 29871]` (not `[1, 259]`), `" Hello world"` → `[1, 15043, 3186]`
(no extra `▁`), `"a</s>b <unk>c"` → `[1, 263, 2, 29890, 29871, 0, 29883]` (`</s>` and `<unk>` matched
without a `▁` before them, the space before `<unk>` left as its own `▁`); the same in both:
`"<s>Hello world"` → `[1, 1, 10994, 3186]` (`Hello` without `▁`: it does not start the input). On the
corpora, wikitext differs by one token (it starts with a space), Tiny Shakespeare is identical.

**tiny-llama** (and tiny-gpt2, tiny-qwen2, tiny-mistral, which carry the same file): byte-level
BPE like gpt2: `ByteLevel {{add_prefix_space: false, use_regex: true}}` pre-tokenizer and decoder,
no normalizer, BPE vocab 512 (`<|endoftext|>` = 0, added, special, normalized: false; then the 256
byte symbols; 255 merges), no unk, no byte_fallback; post_processor `TemplateProcessing single:
[A]`: **no BOS added** (so llama.cpp-style perplexity replaces nothing).

The full JSON of each component is in `tokenizers.json` → `tokenizers.<name>.facts`.

Encoding speed of HF tokenizers (single thread, `TOKENIZERS_PARALLELISM=false`, one `encode` call
per corpus) is not a golden (timings are not reproducible); measure it with
`tools/make_eval_goldens.py --time-tokenizers` (prints JSON, writes nothing). Measured on the
2-core AVX2 dev machine when these goldens were made (cold = first encode with a fresh Tokenizer):

{TIMING_NOTE}
"""
    fc.write_text(out / "eval" / "README.md", text)


# Filled in from one `--time-tokenizers` run on the dev machine (2 cores, AVX2); static text so
# that the README stays reproducible.
TIMING_NOTE = """\
| tokenizer | wikitext-2 test (1,290,547 B) | Tiny Shakespeare (1,115,394 B) |
|---|---|---|
| gpt2 | 2.3 MB/s (286,178 tokens) | 2.0 MB/s (338,025 tokens) |
| llama | 1.45 MB/s (332,755 tokens) | 1.43 MB/s (368,634 tokens) |
| tiny-llama | 1.54 MB/s (737,699 tokens) | 1.32 MB/s (575,977 tokens) |
| llama-metaspace | 1.49 MB/s (332,754 tokens) | 1.42 MB/s (368,634 tokens) |

(warm: best of 3 encodes after a first one, best of two runs; the machine had a load average of
~1.6 from other work, so these are approximate; a cold first encode was 0.8–1.0× these.)"""


# ---------------------------------------------------------------------------
# top level


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=None, help="make_fixtures.py's sections; runs only if 'models' is among them")
    ap.add_argument("--time-tokenizers", action="store_true",
                    help="only measure HF tokenizers' encoding speed and print it as JSON")
    args = ap.parse_args()
    out = args.out.resolve()
    if args.time_tokenizers:
        print(json.dumps(time_tokenizers(out), indent=2))
        return
    if not fc.models_section_requested(args.only, "make_eval_goldens"):
        return
    fc.setup_libraries()
    for need in ["models/tiny-llama/model.safetensors", "models/tiny-gpt2/model.safetensors",
                 "models/tiny-llama-bnb-nf4/model.safetensors", "models/tiny-llama-ct-int8/model.safetensors",
                 "text/eval.txt"]:
        if not (out / need).is_file():
            sys.exit(f"error: {out / need} missing: run tools/make_fixtures.py and tools/make_quant_goldens.py first")
    start = time.monotonic()
    ev = fc.fresh_dir(out / "eval")

    log("eval: models tiny-qwen2, tiny-mistral")
    models = make_models(out)

    tok = tokenizers.Tokenizer.from_file(str(out / "models" / "tiny-llama" / "tokenizer.json"))
    stream = tok.encode((out / "text" / "eval.txt").read_text(encoding="utf-8")).ids
    assert tok.encode("a").ids == tok.encode("a", add_special_tokens=False).ids  # no BOS added
    (ev / "eval_tokens_u32le.bin").write_bytes(np.asarray(stream, dtype="<u4").tobytes())

    log("eval: logits")
    logits = make_logits(out, stream[:N_LOGIT_TOKENS])
    log("eval: perplexity")
    ppl = make_perplexity(out, stream)
    log("eval: KL divergence")
    kld = make_kld(out, stream)
    manifest = {
        "generator": "tools/make_eval_goldens.py",
        "versions": {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__},
        "models": models,
        "logits": logits,
        "perplexity": ppl,
        "kl_divergence": kld,
    }
    write_compact(ev / "manifest.json", manifest)
    log("eval: tokenizers")
    toks = make_tokenizers(out)
    make_readme(out, manifest, toks)
    fc.write_sums(out)
    log(f"make_eval_goldens: done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
