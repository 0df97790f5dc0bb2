#!/usr/bin/env python3
"""Regenerates everything under fixtures/ from the pinned reference Python stack.

Run it through tools/make_fixtures.sh (sets up .venv first). The output is a pure
function of this script, tools/requirements.txt and the Tiny Shakespeare corpus:
a second run rewrites every file byte for byte (fixtures/SHA256SUMS lists them).

Sections (all by default; --only picks some):
  text        fixtures/text/          held-out evaluation text
  models      fixtures/models/        tiny trained Llama (single file and sharded) and GPT-2
  dtypes      fixtures/safetensors/dtypes/      library-written files of every dtype + manifest
  conversion  fixtures/safetensors/conversion/  torch's f32/f16/bf16 conversion results
  bad         fixtures/safetensors/bad/         one hand-built bad file per reader error
  badmodels   fixtures/models/bad/              broken model folders (needs models)
"""

# Determinism pins (AVX2 kernels, one thread, no hub), set before torch is imported: see
# tools/fixture_common.py, which also holds the helpers shared with the make_*_goldens.py scripts.
from fixture_common import (  # noqa: F401  (first: pins the environment; re-exported as mf.*)
    fresh_dir,
    log,
    setup_libraries,
    sha256_file,
    write_json,
    write_sums,
    write_text,
)

import argparse
import hashlib
import json
import math
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / ".." / "shared" / "assets" / "corpora" / "tinyshakespeare_input.txt"
CORPUS_SIZE = 1_115_394
CORPUS_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

EVAL_BYTES = 40_000  # size of the held-out tail, before snapping to a line boundary
SPECIAL = "<|endoftext|>"
VOCAB = 512
CTX = 128  # training and evaluation context
BATCH = 16
LLAMA_STEPS = 2000  # ~2.5 min on one core
GPT2_STEPS = 1500  # ~1 min on one core
SEED = 1234

SECTIONS = ["text", "models", "dtypes", "conversion", "bad", "badmodels"]


# ---------------------------------------------------------------------------
# corpus and tokenizer


def load_corpus() -> tuple[str, str]:
    """Returns (training text, held-out eval text)."""
    path = CORPUS.resolve()
    if not path.is_file():
        sys.exit(f"error: training corpus not found: {CORPUS}\n"
                 "  expected Tiny Shakespeare at ../shared/assets/corpora/tinyshakespeare_input.txt "
                 "relative to the repository")
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != CORPUS_SHA256:
        sys.exit(f"error: {path}: unexpected sha256 (expected {CORPUS_SHA256}, got {got})")
    text = data.decode("utf-8")
    # Start the held-out slice at a speaker boundary (a blank line), which is also a
    # line boundary; the blank line itself belongs to neither part.
    cut = text.index("\n\n", len(text) - EVAL_BYTES)
    train, held_out = text[: cut + 1], text[cut + 2 :]
    assert train.endswith("\n") and held_out.endswith("\n") and not held_out.startswith("\n")
    return train, held_out


def train_tokenizer(train_text: str) -> Tokenizer:
    """Byte-level BPE, vocab 512: the 256 byte symbols, one special token, 255 merges."""
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([train_text], trainer)
    assert tok.get_vocab_size() == VOCAB and tok.token_to_id(SPECIAL) == 0
    return tok


def hf_tokenizer(tok: Tokenizer, max_len: int) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL,
        eos_token=SPECIAL,
        model_max_length=max_len,
    )


# ---------------------------------------------------------------------------
# training


def lr_at(step: int, steps: int, peak: float) -> float:
    warmup = 100
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, ids: torch.Tensor, steps: int, peak_lr: float, seed: int, name: str):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.01)
    offsets = torch.arange(CTX + 1)
    model.train()
    start = time.monotonic()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, peak_lr)
        starts = torch.randint(0, len(ids) - CTX - 1, (BATCH, 1), generator=gen)
        batch = ids[starts + offsets]
        loss = causal_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            log(f"  {name} step {step:5d}/{steps}  loss {loss.item():.4f}  "
                f"{time.monotonic() - start:6.1f}s")
    model.eval()


def causal_loss(model, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over a [B, T+1] batch (inputs [:, :-1], targets [:, 1:])."""
    logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             batch[:, 1:].reshape(-1))


@torch.no_grad()
def perplexity(model, ids: torch.Tensor) -> dict:
    """Perplexity of ids in non-overlapping windows of CTX tokens, two ways:
    'all' scores every predicted token of each window (CTX-1 per window);
    'second_half' scores only the last CTX/2 (llama.cpp's method, no BOS added)."""
    model.eval()
    n = len(ids) // CTX
    windows = ids[: n * CTX].view(n, CTX)
    nll_all, nll_half = [], []
    for chunk in windows.split(16):
        logits = model(input_ids=chunk).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        nll = -logp.gather(-1, chunk[:, 1:, None]).squeeze(-1)  # [b, CTX-1]
        nll_all.append(nll)
        nll_half.append(nll[:, CTX // 2 - 1 :])
    all_ = torch.cat(nll_all).double()
    half = torch.cat(nll_half).double()
    return {
        "windows": n,
        "all": math.exp(all_.mean().item()),
        "all_tokens": all_.numel(),
        "second_half": math.exp(half.mean().item()),
        "second_half_tokens": half.numel(),
    }


def bf16_rounded_copy(model):
    """The model with weights rounded to bf16 but computing in f32, as ckpt does on load."""
    clone = type(model)(model.config)
    clone.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    clone.eval()
    return clone


# ---------------------------------------------------------------------------
# text


def make_text(out: Path, held_out: str):
    d = fresh_dir(out / "text")
    write_text(d / "eval.txt", held_out)
    write_text(d / "README.md", f"""\
# Evaluation text

`eval.txt` is the last {len(held_out.encode()):,} bytes of Tiny Shakespeare
(`tinyshakespeare_input.txt`, sha256 {CORPUS_SHA256[:16]}…, public domain; the corpus
of Karpathy's char-rnn), from byte offset {CORPUS_SIZE - len(held_out.encode()):,} of
{CORPUS_SIZE:,} to the end: the first speaker that starts in the last {EVAL_BYTES:,} bytes
(cut at a blank line, so it begins with a speaker name and ends with the corpus' final
newline).

It was never seen in training: the tokenizer and the tiny models in `fixtures/models/`
were trained on everything before it (the blank line between the two parts belongs to
neither). Regenerated by `tools/make_fixtures.sh`.
""")


# ---------------------------------------------------------------------------
# models


def llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
    )


def gpt2_config() -> GPT2Config:
    return GPT2Config(
        vocab_size=VOCAB,
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=4,
        # No dropout: it only slows down a 1-minute training run.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=True,
    )


def save_model(model, tok: Tokenizer, max_len: int, d: Path, **kwargs):
    # transformers 5 always writes safetensors (save_pretrained lost safe_serialization).
    model.save_pretrained(d, **kwargs)
    hf_tokenizer(tok, max_len).save_pretrained(d)
    # transformers 5 no longer writes special_tokens_map.json; older readers
    # (transformers 4.x, some converters) still look for it.
    write_json(d / "special_tokens_map.json", {"bos_token": SPECIAL, "eos_token": SPECIAL})


def save_sharded_in_three(model, tok: Tokenizer, max_len: int, d: Path):
    """Finds a max_shard_size for which transformers writes exactly three shards."""
    total = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with tempfile.TemporaryDirectory() as tmp:
        for percent in range(34, 60):
            size = total * percent // 100
            probe = Path(tmp) / str(percent)
            model.save_pretrained(probe, max_shard_size=size)
            if len(list(probe.glob("model-*-of-00003.safetensors"))) == 3:
                break
        else:
            sys.exit("error: found no max_shard_size that gives exactly 3 shards")
    log(f"  sharded: max_shard_size={size} bytes of {total}")
    save_model(model, tok, max_len, d, max_shard_size=size)
    return size


def make_models(out: Path, train_text: str, held_out: str):
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for name in ["tiny-llama", "tiny-llama-sharded", "tiny-gpt2"]:
        fresh_dir(models_dir / name)

    log("tokenizer: training byte-level BPE")
    tok = train_tokenizer(train_text)
    train_ids = torch.tensor(tok.encode(train_text).ids, dtype=torch.long)
    eval_ids = torch.tensor(tok.encode(held_out).ids, dtype=torch.long)
    log(f"  {len(train_ids)} training tokens, {len(eval_ids)} eval tokens")

    # Llama: train in f32, store bf16.
    torch.manual_seed(SEED)
    llama = LlamaForCausalLM(llama_config())
    llama_params = sum(p.numel() for p in llama.parameters())
    ppl_llama_init = perplexity(llama, eval_ids)
    log(f"llama: {llama_params} parameters, eval ppl before {ppl_llama_init['all']:.3f}")
    train(llama, train_ids, LLAMA_STEPS, 3e-3, SEED + 1, "llama")
    ppl_llama_f32 = perplexity(llama, eval_ids)
    ppl_llama_bf16 = perplexity(bf16_rounded_copy(llama), eval_ids)
    log(f"  eval ppl after: f32 {ppl_llama_f32['all']:.3f}, bf16 weights {ppl_llama_bf16['all']:.3f}")
    llama = llama.to(torch.bfloat16)
    save_model(llama, tok, 512, models_dir / "tiny-llama")
    shard_size = save_sharded_in_three(llama, tok, 512, models_dir / "tiny-llama-sharded")
    ppl_llama_reload = perplexity(
        LlamaForCausalLM.from_pretrained(models_dir / "tiny-llama", dtype=torch.float32), eval_ids)
    assert ppl_llama_reload == ppl_llama_bf16, "reloaded bf16 model scores differently"

    # GPT-2: train and store f32, tied embeddings.
    torch.manual_seed(SEED + 2)
    gpt2 = GPT2LMHeadModel(gpt2_config())
    gpt2_params = sum(p.numel() for p in gpt2.parameters())
    ppl_gpt2_init = perplexity(gpt2, eval_ids)
    log(f"gpt2: {gpt2_params} parameters, eval ppl before {ppl_gpt2_init['all']:.3f}")
    train(gpt2, train_ids, GPT2_STEPS, 3e-3, SEED + 3, "gpt2")
    ppl_gpt2 = perplexity(gpt2, eval_ids)
    log(f"  eval ppl after: {ppl_gpt2['all']:.3f}")
    save_model(gpt2, tok, 256, models_dir / "tiny-gpt2")
    ppl_gpt2_reload = perplexity(GPT2LMHeadModel.from_pretrained(models_dir / "tiny-gpt2"), eval_ids)
    assert ppl_gpt2_reload == ppl_gpt2, "reloaded gpt2 model scores differently"

    def row(label, p):
        return f"| {label} | {p['all']:.4f} | {p['second_half']:.4f} |"

    write_text(models_dir / "README.md", f"""\
# Tiny trained models

Made by `tools/make_fixtures.sh` with torch {torch.__version__.split('+')[0]},
transformers {transformers.__version__}, tokenizers {tokenizers.__version__},
safetensors {safetensors.__version__}: seeded, one CPU thread, byte-identical on rerun.

All three share one tokenizer: byte-level BPE (HF `tokenizers`, ByteLevel pre-tokenizer
without prefix space, ByteLevel decoder), vocab {VOCAB} = 256 byte symbols + `{SPECIAL}`
(id 0; bos, eos) + 255 merges, trained on the training part of Tiny Shakespeare
({len(train_ids):,} tokens). No BOS is inserted by the tokenizer; the models were
trained on plain {CTX}-token windows of the token stream. Saved as a transformers
`PreTrainedTokenizerFast` (`tokenizer.json`, `tokenizer_config.json`, whose class transformers 5
names `TokenizersBackend`); `special_tokens_map.json` is written by the generator, since
transformers 5 no longer does.

| folder | model | weights | parameters |
|---|---|---|---|
| `tiny-llama/` | LlamaForCausalLM: hidden 64, intermediate 192, 4 layers, 4 heads, 2 KV heads (GQA), head_dim 16, rope_theta 10000, rms_norm_eps 1e-5, untied lm_head, max positions 512 | BF16, `model.safetensors` | {llama_params:,} |
| `tiny-llama-sharded/` | the same model, `save_pretrained(max_shard_size={shard_size})` | BF16, 3 shards + `model.safetensors.index.json` | {llama_params:,} |
| `tiny-gpt2/` | GPT2LMHeadModel: n_embd 64, 2 layers, 4 heads, n_positions 256, tied embeddings (only `transformer.wte.weight` stored) | F32, `model.safetensors` | {gpt2_params:,} |
| `bad/` | broken model folders for error tests, see `bad/manifest.json` | | |

Training: f32 on CPU, AdamW (betas 0.9/0.95, weight decay 0.01), peak lr 3e-3 with
100 warmup steps and cosine decay to 10%, gradient clipping 1.0, batch {BATCH} × {CTX}
tokens; Llama {LLAMA_STEPS} steps, GPT-2 {GPT2_STEPS} steps. The Llama model was then cast
to bfloat16 and saved.

## Perplexity on `fixtures/text/eval.txt` (held out)

{len(eval_ids):,} tokens, {ppl_llama_f32['windows']} non-overlapping windows of {CTX} tokens
(the tail shorter than a window is dropped). "all": every predicted token of each window
({ppl_llama_f32['all_tokens']:,} tokens). "second half": only the last {CTX // 2} tokens of
each window, as llama.cpp's `llama-perplexity` scores ({ppl_llama_f32['second_half_tokens']:,}
tokens; no BOS token inserted). Computed in float32.

| model | all | second half |
|---|---|---|
{row("tiny-llama, random init (f32)", ppl_llama_init)}
{row("tiny-llama, trained (f32, before the bf16 cast)", ppl_llama_f32)}
{row("tiny-llama, as stored (bf16 weights, f32 compute)", ppl_llama_bf16)}
{row("tiny-gpt2, random init", ppl_gpt2_init)}
{row("tiny-gpt2, trained, as stored (f32)", ppl_gpt2)}

The "as stored" rows are what transformers computes after `from_pretrained(folder,
dtype=torch.float32)`; they are the reference for `ckpt-perplexity`.
""")


# ---------------------------------------------------------------------------
# safetensors written by the reference library


def library_bytes(tensors: dict, metadata: dict) -> bytes:
    """safetensors.torch.save, with the metadata keys in sorted order.

    The library keeps __metadata__ in a Rust HashMap, so with more than one key
    their order changes from process to process. Re-serialising (new HashMap, new
    hash seed) until the order comes out sorted keeps the file written by the
    library itself yet reproducible; sorted is also the order ckpt writes."""
    want = sorted(metadata)
    for _ in range(100_000):
        data = safetensors.torch.save(tensors, metadata=metadata)
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + n])
        if list(header.get("__metadata__", {})) == want:
            return data
    sys.exit("error: safetensors never wrote the metadata keys in sorted order")


def from_bits(bits, np_dtype, torch_dtype) -> torch.Tensor:
    """A float tensor holding exactly these bit patterns (NaN payloads included)."""
    return torch.from_numpy(np.array(bits, dtype=np_dtype)).view(torch_dtype)


def dtype_samples() -> dict[str, tuple[str, torch.Tensor]]:
    """One small tensor per safetensors dtype: dtype -> (tensor name, tensor)."""
    u16, u32, u64 = np.uint16, np.uint32, np.uint64
    return {
        "BOOL": ("bool", torch.tensor([True, False, False, True, True])),
        "U8": ("u8", torch.tensor([0, 1, 2, 127, 128, 254, 255], dtype=torch.uint8)),
        "I8": ("i8", torch.tensor([-128, -127, -1, 0, 1, 126, 127], dtype=torch.int8)),
        "U16": ("u16", torch.from_numpy(np.array(
            [0, 1, 255, 256, 32767, 32768, 65534, 65535], dtype=u16)).view(torch.uint16).reshape(2, 4)),
        "I16": ("i16", torch.tensor(
            [-32768, -32767, -256, -1, 0, 1, 255, 32767], dtype=torch.int16).reshape(2, 4)),
        "F16": ("f16", from_bits([
            0x0000, 0x8000, 0x3C00, 0xC100,  # +0, -0, 1, -2.5
            0x7BFF, 0xFBFF, 0x0400, 0x0001,  # ±max 65504, min normal, min subnormal
            0x03FF, 0x8001, 0x7C00, 0xFC00,  # max subnormal, -min subnormal, ±inf
            0x7E00, 0xFE00, 0x7C01, 0x3555,  # qNaN, negative NaN, signalling NaN, ~1/3
        ], u16, torch.float16).reshape(4, 4)),
        "BF16": ("bf16", from_bits([
            0x0000, 0x8000, 0x3F80, 0xC020,  # +0, -0, 1, -2.5
            0x7F7F, 0xFF7F, 0x0080, 0x0001,  # ±max, min normal, min subnormal
            0x007F, 0x8001, 0x7F80, 0xFF80,  # max subnormal, -min subnormal, ±inf
            0x7FC0, 0xFFC0, 0x7F81, 0x3EAB,  # qNaN, negative NaN, signalling NaN, ~1/3
        ], u16, torch.bfloat16).reshape(2, 8)),
        "U32": ("u32", torch.from_numpy(np.array(
            [0, 1, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1], dtype=u32)).view(torch.uint32)),
        "I32": ("i32", torch.tensor(
            [-(2**31), -(2**31) + 1, -65536, -1, 0, 1, 65536, 2**31 - 1], dtype=torch.int32).reshape(4, 2)),
        "F32": ("f32", from_bits([
            0x00000000, 0x80000000, 0x3F800000, 0xC0200000,  # +0, -0, 1, -2.5
            0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x00000001,  # ±max, min normal, min subnormal
            0x007FFFFF, 0x80000001, 0x7F800000, 0xFF800000,  # max subnormal, -min sub, ±inf
            0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FC12345,  # qNaN, -NaN, sNaN, NaN payload
            0x3EAAAAAB, 0x40490FDB,                          # ~1/3, pi
        ], u32, torch.float32).reshape(3, 6)),
        "U64": ("u64", torch.from_numpy(np.array(
            [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1], dtype=u64)).view(torch.uint64)),
        "I64": ("i64", torch.tensor(
            [-(2**63), -(2**63) + 1, -(2**32), -1, 0, 1, 2**32, 2**63 - 1], dtype=torch.int64).reshape(2, 2, 2)),
        "F64": ("f64", from_bits([
            0x0000000000000000, 0x8000000000000000, 0x3FF0000000000000, 0xC004000000000000,
            0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF, 0x0010000000000000, 0x0000000000000001,
            0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, 0xFFF8000000000000,
            0x7FF0000000000001, 0x3FD5555555555555,
        ], u64, torch.float64).reshape(2, 7)),
        "F8_E4M3": ("f8_e4m3", from_bits([
            0x00, 0x80, 0x38, 0xC2,  # +0, -0, 1, -2.5
            0x7E, 0xFE, 0x08, 0x01,  # ±448 (max), min normal 2^-6, min subnormal 2^-9
            0x07, 0x81, 0x7F, 0xFF,  # max subnormal, -min subnormal, NaN, -NaN (E4M3FN: no inf)
        ], np.uint8, torch.float8_e4m3fn)),
        "F8_E5M2": ("f8_e5m2", from_bits([
            0x00, 0x80, 0x3C, 0xC1,  # +0, -0, 1, -2.5
            0x7B, 0xFB, 0x04, 0x01,  # ±57344 (max), min normal 2^-14, min subnormal 2^-16
            0x03, 0x7C, 0xFC, 0x7E,  # max subnormal, ±inf, qNaN
            0xFE, 0x7D,              # -NaN, sNaN
        ], np.uint8, torch.float8_e5m2)),
    }


# Exercises JSON escaping (quote, backslash; '/' which serde_json does not escape),
# raw multi-byte UTF-8 (2-, 3- and 4-byte sequences) and a long key.
ODD_NAME = ('model.layers.0.self_attn.q_proj.a_deliberately_long_tensor_name_to_exercise_'
            'header_parsing_and_writing/with "quotes" and \\backslash\\ and ünïcødé ✓ 🦙.weight')


def parse_file(data: bytes) -> tuple[int, dict]:
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8 : 8 + n].decode("utf-8"))


def manifest_entry(fname: str, data: bytes) -> dict:
    """Describes a library-written file: tensors in file (offset) order with raw bytes."""
    n, header = parse_file(data)
    metadata = header.pop("__metadata__", None)
    buf = data[8 + n :]
    tensors = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, e = info["data_offsets"]
        tensors.append({
            "name": name,
            "dtype": info["dtype"],
            "shape": info["shape"],
            "data_offsets": [b, e],
            "hex": buf[b:e].hex(),
        })
    return {
        "file": fname,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "header_length": n,
        "metadata": metadata,
        "tensors": tensors,
    }


def make_dtypes(out: Path):
    d = fresh_dir(out / "safetensors" / "dtypes")
    samples = dtype_samples()
    pt = {"format": "pt"}
    files: list[tuple[str, bytes]] = []

    everything = {name: t for name, t in samples.values()}
    everything["scalar_f32"] = torch.tensor(-3.5, dtype=torch.float32)  # 0-d: shape []
    everything["empty_f32"] = torch.zeros((0, 3), dtype=torch.float32)  # no bytes at all
    everything[ODD_NAME] = torch.tensor([7, -7, 123456789], dtype=torch.int32)
    files.append(("all_dtypes.safetensors", library_bytes(everything, pt)))

    for dtype, (name, t) in samples.items():
        files.append((f"{dtype}.safetensors", library_bytes({name: t}, pt)))

    files.append(("multi_metadata.safetensors", library_bytes(
        {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)},
        {
            "format": "pt",
            "author": "ckpt fixtures",
            "description": 'several keys; this one has "quotes", a \\ backslash, ünïcødé ✓ and a / slash',
            "empty": "",
            "version": "1",
        },
    )))
    files.append(("empty_file.safetensors", library_bytes({}, pt)))

    entries = []
    for fname, data in files:
        (d / fname).write_bytes(data)
        # The library must read back what it wrote, bit for bit.
        loaded = safetensors.torch.load(data)
        entry = manifest_entry(fname, data)
        for t in entry["tensors"]:
            assert loaded[t["name"]].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex() == t["hex"]
        entries.append(entry)
    write_json(d / "manifest.json", {
        "generator": "tools/make_fixtures.py",
        "writer": f"safetensors {safetensors.__version__} (safetensors.torch.save), torch {torch.__version__.split('+')[0]}",
        "note": "tensors are listed in file order (by data_offsets); hex is the raw little-endian "
                "data; metadata keys were written in sorted order (the library's own order is "
                "random per process, see tools/make_fixtures.py)",
        "files": entries,
    })


# ---------------------------------------------------------------------------
# conversion golden data


def f32_edge_bits() -> np.ndarray:
    """Float32 bit patterns that stress f32 -> bf16 / f16 rounding, then random ones."""
    edges: list[int] = [
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000,               # ±0, ±inf
        0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7FFFFFFF, 0xFFFFFFFF,   # quiet NaNs, payloads
        0x7FC02000, 0x7FE00000, 0xFFC12345,
        0x7F800001, 0x7FBFFFFF, 0xFF800001, 0x7FA00000,               # signalling NaNs
        0x7F808000, 0x7F80FFFF, 0x7F810000,                           # sNaNs that truncate to inf
        0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF,               # smallest/largest subnormal
        0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,               # min normal, max finite
    ]

    def around(bits: int):
        return [bits - 1, bits, bits + 1]

    # bf16: the midpoint between adjacent bf16 values h and h+1 is (h << 16) | 0x8000.
    for h in [0x0000, 0x0001, 0x0002, 0x007E, 0x007F, 0x0080, 0x0081,
              0x3F7F, 0x3F80, 0x3F81, 0x3F82, 0x4049, 0x7F7E, 0x7F7F]:
        for sign in (0, 0x80000000):
            edges += [sign | b for b in around((h << 16) | 0x8000)]

    # f16: midpoints between adjacent f16 values are exact in f32.
    f16_anchor = [0x0000, 0x0001, 0x0002, 0x0003, 0x01FF, 0x03FE, 0x03FF, 0x0400, 0x0401,
                  0x1000, 0x3BFF, 0x3C00, 0x3C01, 0x3C02, 0x5640, 0x7BFE, 0x7BFF]
    for h in f16_anchor:
        lo = float(np.array(h, np.uint16).view(np.float16))
        hi = 65520.0 if h == 0x7BFF else float(np.array(h + 1, np.uint16).view(np.float16))
        mid = int(np.array((lo + hi) / 2, np.float32).view(np.uint32))
        for sign in (0, 0x80000000):
            edges += [sign | b for b in around(mid)]
            exact = int(np.array(lo, np.float32).view(np.uint32))
            edges += [sign | b for b in around(exact) if b >= 0]

    # f16 overflow boundary and the far ends of its subnormal range.
    for v in [65504.0, 65519.0, 65520.0, 65536.0, 1e5, 3e38,
              2.0**-24, 2.0**-25, 2.0**-26, 3 * 2.0**-25, 2.0**-14, 1e-8, 1e-10]:
        b = int(np.array(v, np.float32).view(np.uint32))
        for sign in (0, 0x80000000):
            edges += [sign | x for x in around(b)]

    edges = [e & 0xFFFFFFFF for e in edges]
    rng = np.random.default_rng(SEED)
    uniform_bits = rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32)

    def log_uniform(lo_exp, hi_exp, n):
        mags = np.exp2(rng.uniform(lo_exp, hi_exp, size=n))
        signs = np.where(rng.integers(0, 2, size=n) == 1, -1.0, 1.0)
        return (signs * mags).astype(np.float32).view(np.uint32)

    return np.concatenate([
        np.array(edges, dtype=np.uint32),
        uniform_bits,                   # every exponent, NaNs and infs included
        log_uniform(-149, 128, 3000),   # every f32 magnitude
        log_uniform(-26, 17, 3000),     # the f16 range, subnormals to overflow
    ])


def make_conversion(out: Path):
    d = fresh_dir(out / "safetensors" / "conversion")
    all16 = torch.arange(65536, dtype=torch.int32).to(torch.uint16)
    edge_bits = torch.from_numpy(f32_edge_bits())
    edge = edge_bits.view(torch.float32)
    as_f16 = all16.view(torch.float16)
    as_bf16 = all16.view(torch.bfloat16)
    tensors = {
        "f16_all_bits": all16,
        "f16_all_as_f32": as_f16.float(),
        "f16_all_to_bf16": as_f16.to(torch.bfloat16).view(torch.uint16),
        "bf16_all_bits": all16.clone(),
        "bf16_all_as_f32": as_bf16.float(),
        "bf16_all_to_f16": as_bf16.to(torch.float16).view(torch.uint16),
        "f32_edge": edge.clone(),
        "f32_edge_bits": edge_bits.clone(),
        "f32_edge_to_bf16": edge.to(torch.bfloat16).view(torch.uint16),
        "f32_edge_to_f16": edge.to(torch.float16).view(torch.uint16),
    }
    data = library_bytes(tensors, {"format": "pt"})
    # Nothing may have been canonicalised on the way into the file.
    back = safetensors.torch.load(data)
    assert torch.equal(back["f32_edge"].view(torch.uint32), edge_bits)
    (d / "golden.safetensors").write_bytes(data)

    def nan_outputs(src: torch.Tensor, dst_bits: torch.Tensor) -> str:
        """Summarises what NaN inputs became, for the README."""
        nan_in = torch.isnan(src.float())
        outs = sorted(set(dst_bits[nan_in].tolist()))
        if len(outs) <= 3:
            return " / ".join(f"0x{v:04X}" for v in outs) + " only"
        return f"{len(outs)} distinct patterns (sign and payload kept where they fit)"

    nan_notes = "\n".join([
        f"| f32 → bf16 | {nan_outputs(edge, tensors['f32_edge_to_bf16'])} |",
        f"| f32 → f16 | {nan_outputs(edge, tensors['f32_edge_to_f16'])} |",
        f"| f16 → bf16 | {nan_outputs(as_f16, tensors['f16_all_to_bf16'])} |",
        f"| bf16 → f16 | {nan_outputs(as_bf16, tensors['bf16_all_to_f16'])} |",
    ])
    write_text(d / "README.md", f"""\
# Conversion golden data

`golden.safetensors`: what torch {torch.__version__.split('+')[0]} computes on CPU for float
conversions, for `Tests/` to compare ckpt's conversion kernels against, bit for bit.
Everything NaN-carrying is compared as raw bits (U16/U32 tensors, or the F32 tensors' raw bytes).

| tensor | dtype | shape | content |
|---|---|---|---|
| `f16_all_bits` | U16 | [65536] | every f16 bit pattern, 0…65535 |
| `f16_all_as_f32` | F32 | [65536] | `bits.view(float16).float()` (exact; NaN payloads kept, quieted) |
| `f16_all_to_bf16` | U16 | [65536] | bits of `.to(bfloat16)` |
| `bf16_all_bits` | U16 | [65536] | every bf16 bit pattern |
| `bf16_all_as_f32` | F32 | [65536] | `bits.view(bfloat16).float()` (exact) |
| `bf16_all_to_f16` | U16 | [65536] | bits of `.to(float16)` |
| `f32_edge` | F32 | [{len(edge)}] | edge cases, then 10,000 seeded random values (see `f32_edge_bits()` in tools/make_fixtures.py) |
| `f32_edge_bits` | U32 | [{len(edge)}] | the same values as bit patterns |
| `f32_edge_to_bf16` | U16 | [{len(edge)}] | bits of `f32_edge.to(bfloat16)` |
| `f32_edge_to_f16` | U16 | [{len(edge)}] | bits of `f32_edge.to(float16)` |

The edge cases: ±0, ±inf, quiet, signalling and negative NaNs with various payloads (some
that a naive bf16 truncation would turn into inf), the smallest and largest subnormals, max
finite; for bf16 and for f16, values exactly halfway between two neighbours (ties to even,
both directions) and one f32 ulp below and above each tie, around 1.0, the subnormal range,
the normal/subnormal boundary and overflow (65504, 65519, 65520, …).

Random part: 4,000 uniformly random bit patterns (all exponents, some NaN/inf), 3,000
log-uniform magnitudes over the whole f32 range, 3,000 over 2^-26…2^17 (the f16 range),
random signs, numpy `default_rng({SEED})`.

**NaN results depend on torch's CPU kernel.** The generator pins
`ATEN_CPU_CAPABILITY=avx2` (the AVX512 kernels agree with it). What NaN inputs became:

| conversion | NaN outputs (AVX2 kernels, as stored) |
|---|---|
{nan_notes}

torch's scalar kernels (`ATEN_CPU_CAPABILITY=default`) give 0x7FC0 for every f32 NaN → bf16
and drop payloads in bf16 → f16 (0x7E00 / 0xFE00). f32 → f16 and the widening
conversions to f32 are the same in every kernel. Non-NaN results are the same everywhere:
round to nearest, ties to even, overflow to inf.
""")


# ---------------------------------------------------------------------------
# hand-built bad safetensors files


def raw_file(header: bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    """8-byte little-endian header length, header bytes, data; built without the library."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def padded(header_json: str) -> str:
    """Pads a header with spaces to a multiple of 8, as the reference writer does."""
    return header_json + " " * (-len(header_json.encode()) % 8)


def header(entries: dict) -> str:
    return padded(json.dumps(entries, separators=(",", ":"), ensure_ascii=False))


def f32_bytes(values) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


def make_bad(out: Path):
    d = fresh_dir(out / "safetensors" / "bad")
    cases = []

    def add(fname, case, note, data, **extra):
        (d / fname).write_bytes(data)
        cases.append({"file": fname, "case": case, "note": note, **extra})

    pt = {"format": "pt"}
    two = f32_bytes([1.0, 2.0, 3.0, 4.0]) + f32_bytes([5.0, 6.0])  # a: [4] F32, b: [2] F32
    good = {"__metadata__": pt,
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}

    add("file_too_small.safetensors", "fileTooSmall",
        "5 bytes: not even the 8-byte header length", b"\x10\x00\x00\x00\x00")
    add("header_too_large.safetensors", "headerTooLarge",
        "header length field 100,000,001 (> 100,000,000), file is tiny",
        raw_file(header(good), two, length=100_000_001))
    add("header_exceeds_file.safetensors", "headerExceedsFile",
        "header length field 4096 but the file has far fewer bytes after it",
        raw_file(header(good), two, length=4096))
    bad_utf8 = header(good).encode().replace(b'"a"', b'"a\xff\xfe"')
    add("header_not_utf8.safetensors", "headerNotUTF8",
        "bytes FF FE inside a tensor name", raw_file(bad_utf8, two))
    truncated = json.dumps(good, separators=(",", ":"))[:40]
    add("header_not_json.safetensors", "headerNotJSON",
        "header is JSON cut off mid-object", raw_file(truncated, two))
    add("header_not_object.safetensors", "headerNotObject",
        "header is a JSON array", raw_file(padded("[1,2,3]")))
    add("invalid_metadata.safetensors", "invalidMetadata",
        "__metadata__ maps a key to a number",
        raw_file(header({**good, "__metadata__": {"format": "pt", "step": 1}}), two))
    add("tensor_missing_offsets.safetensors", "invalidTensorEntry",
        'tensor "b" has no data_offsets',
        raw_file(header({**good, "b": {"dtype": "F32", "shape": [2]}}), two), tensor="b")
    add("tensor_negative_shape.safetensors", "invalidTensorEntry",
        'tensor "b" has shape [-2]',
        raw_file(header({**good, "b": {"dtype": "F32", "shape": [-2], "data_offsets": [16, 24]}}), two),
        tensor="b")
    add("unknown_dtype.safetensors", "unknownDType",
        '"dtype":"F17" is no safetensors dtype',
        raw_file(header({**good, "b": {"dtype": "F17", "shape": [2], "data_offsets": [16, 24]}}), two),
        tensor="b")
    add("unsupported_dtype_c64.safetensors", "unsupportedDType",
        "C64 (complex64) is listed by the reference library but ckpt does not support it",
        raw_file(header({**good, "b": {"dtype": "C64", "shape": [1], "data_offsets": [16, 24]}}), two),
        tensor="b")
    add("unsupported_dtype_f8_e8m0.safetensors", "unsupportedDType",
        "F8_E8M0 is listed by the reference library but ckpt does not support it",
        raw_file(header({**good, "b": {"dtype": "F8_E8M0", "shape": [8], "data_offsets": [16, 24]}}), two),
        tensor="b")
    # json.dumps cannot produce a duplicate key, so this header is spelled out.
    dup = padded('{"__metadata__":{"format":"pt"},'
                 '"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
                 '"a":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}')
    add("duplicate_tensor.safetensors", "duplicateTensor",
        'the name "a" appears twice in the header object', raw_file(dup, two), tensor="a")
    add("offsets_reversed.safetensors", "offsetsReversed",
        'tensor "b" has data_offsets [16, 8] (end before begin)',
        raw_file(header({**good, "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 8]}}), two),
        tensor="b")
    add("offsets_gap.safetensors", "offsetsNotContiguous",
        'a 8-byte gap between "a" [0,16] and "b" [24,32]',
        raw_file(header({**good, "b": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}),
                 two + bytes(8)), tensor="b")
    add("offsets_overlap.safetensors", "offsetsNotContiguous",
        '"b" [8,16] overlaps "a" [0,16]',
        raw_file(header({**good, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}),
                 two[:16]), tensor="b")
    add("size_overflow.safetensors", "sizeOverflow",
        "shape [4294967296, 4294967296, 16]: the element count overflows 64 bits",
        raw_file(header({**good, "b": {"dtype": "F32", "shape": [4294967296, 4294967296, 16],
                                       "data_offsets": [16, 24]}}), two), tensor="b")
    add("tensor_size_mismatch.safetensors", "tensorSizeMismatch",
        "shape [2,2] F32 needs 16 bytes but data_offsets [0,12] give 12",
        raw_file(header({"__metadata__": pt,
                         "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}),
                 f32_bytes([1.0, 2.0, 3.0])), tensor="w")
    add("data_truncated.safetensors", "dataTruncated",
        'valid header, but the file ends 4 bytes into tensor "b" (needs 8)',
        raw_file(header(good), two[:20]), tensor="b")
    add("trailing_bytes.safetensors", "trailingBytes",
        "a valid file followed by 5 extra bytes", raw_file(header(good), two) + b"extra")

    oid = hashlib.sha256(b"ckpt fixture: the weights this pointer names do not exist").hexdigest()
    claimed = 12345678
    add("git_lfs_pointer.safetensors", "gitLFSPointer",
        "a Git LFS pointer file in place of the weights (git lfs pull was not run)",
        lfs_pointer(oid, claimed), claimed_size=claimed)

    # Control: the base every variant above was derived from, loadable by the library.
    (d / "good.safetensors").write_bytes(raw_file(header(good), two))
    assert safetensors.torch.load((d / "good.safetensors").read_bytes())["b"].tolist() == [5.0, 6.0]
    write_json(d / "manifest.json", {
        "generator": "tools/make_fixtures.py",
        "note": "each file is hand-built, byte by byte; 'case' is the reader error it must "
                "raise, 'tensor' the tensor the error should name; good.safetensors is the "
                "valid file most cases were derived from and must load",
        "cases": cases,
    })


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


# ---------------------------------------------------------------------------
# broken model folders


def make_bad_models(out: Path):
    src = out / "models" / "tiny-llama"
    if not (src / "model.safetensors").is_file():
        sys.exit(f"error: {src}/model.safetensors missing: run the 'models' section first")
    d = fresh_dir(out / "models" / "bad")
    config = (src / "config.json").read_bytes()
    weights = safetensors.torch.load((src / "model.safetensors").read_bytes())
    pt = {"format": "pt"}
    cases = []

    # A realistic pointer: the real file's hash and size.
    lfs = d / "lfs-pointer-model"
    lfs.mkdir()
    (lfs / "config.json").write_bytes(config)
    real = (src / "model.safetensors").read_bytes()
    (lfs / "model.safetensors").write_bytes(lfs_pointer(hashlib.sha256(real).hexdigest(), len(real)))
    cases.append({"file": "lfs-pointer-model", "case": "gitLFSPointer",
                  "note": "model.safetensors is a Git LFS pointer to tiny-llama's weights",
                  "claimed_size": len(real)})

    # Small shards from four norm tensors of tiny-llama (bf16 [64] each).
    names = ["model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
             "model.layers.1.input_layernorm.weight", "model.norm.weight"]
    shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    placement = {names[0]: shard1, names[1]: shard1, names[2]: shard2, names[3]: shard2}
    total = sum(weights[n].numel() * weights[n].element_size() for n in names)

    def write_sharded(folder: Path, weight_map: dict, shards: list[str]):
        folder.mkdir()
        (folder / "config.json").write_bytes(config)
        for shard in shards:
            part = {n: weights[n] for n in names if placement[n] == shard}
            (folder / shard).write_bytes(library_bytes(part, pt))
        # Same layout and spacing as transformers' index files.
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        write_text(folder / "model.safetensors.index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")

    write_sharded(d / "index-missing-shard", placement, [shard1])
    cases.append({"file": "index-missing-shard", "case": "missingShard",
                  "note": f"the index names {shard2}, which is absent", "shard": shard2})

    lying = {**placement, names[2]: shard1}
    write_sharded(d / "index-tensor-mismatch", lying, [shard1, shard2])
    cases.append({"file": "index-tensor-mismatch", "case": "tensorNotInShard",
                  "note": f"the index puts {names[2]} in {shard1}, but it is in {shard2}",
                  "tensor": names[2], "shard": shard1})

    none = d / "not-a-checkpoint"
    none.mkdir()
    write_text(none / "README.md", "# Not a checkpoint\n\nThis folder has no weights: no "
               "*.safetensors, no model.safetensors.index.json, no *.gguf, no *.bin.\n")
    cases.append({"file": "not-a-checkpoint", "case": "noWeights",
                  "note": "a folder with only a README"})

    write_json(d / "manifest.json", {
        "generator": "tools/make_fixtures.py",
        "note": "each entry is a folder; 'case' is the error loading it must raise",
        "cases": cases,
    })


# ---------------------------------------------------------------------------
# top level


def write_readme(out: Path):
    write_text(out / "README.md", """\
# Fixtures

Small committed test data, all generated by the pinned reference Python stack
(`tools/requirements.txt`). Regenerate everything, byte for byte, with

    tools/make_fixtures.sh

(creates `.venv` on first use, then runs `tools/make_fixtures.py`; ~5 minutes on 2 cores,
most of it training two tiny models). `SHA256SUMS` lists every generated file: after
regenerating, `cd fixtures && sha256sum -c SHA256SUMS` and `git status` show any change.
The training corpus is `../shared/assets/corpora/tinyshakespeare_input.txt` (checked by hash).

| path | what |
|---|---|
| `text/eval.txt` | held-out tail of Tiny Shakespeare (~40 KB), never trained on; `text/README.md` |
| `models/tiny-llama/` | tiny trained LlamaForCausalLM (GQA, untied), BF16 `model.safetensors`, config, generation config, byte-level BPE tokenizer |
| `models/tiny-llama-sharded/` | the same model in 3 shards + `model.safetensors.index.json` |
| `models/tiny-gpt2/` | tiny trained GPT2LMHeadModel, F32, tied embeddings |
| `models/README.md` | architectures, training recipe, eval perplexities before/after training |
| `models/bad/` | broken model folders (LFS pointer, missing shard, index that lies, no weights) + `manifest.json` |
| `safetensors/dtypes/` | files written by the `safetensors` library: every dtype in one file and one file per dtype, 0-d and empty tensors, an odd unicode name, several metadata keys, no tensors; `manifest.json` has every tensor's raw bytes in hex |
| `safetensors/conversion/golden.safetensors` | torch's f16/bf16/f32 conversion results (all 65536 patterns, f32 edge cases); see its README |
| `safetensors/bad/` | one hand-built bad file per reader error + `manifest.json` (file, error case, tensor named) |
""")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "fixtures", help="default: <repo>/fixtures")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections (default: all): {', '.join(SECTIONS)}")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    setup_libraries()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    train_text, held_out = load_corpus()

    if "text" in only:
        make_text(out, held_out)
    if "models" in only:
        make_models(out, train_text, held_out)
    if "dtypes" in only:
        make_dtypes(out)
    if "conversion" in only:
        make_conversion(out)
    if "bad" in only:
        make_bad(out)
    if "badmodels" in only:
        make_bad_models(out)
    write_readme(out)
    write_sums(out)
    log(f"done in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
