#!/usr/bin/env python3
"""Holds the tokenizer.json files ckpt rebuilds from GGUF vocabularies (CheckpointKit's
GGUFVocabulary) against the ones transformers builds from the same GGUFs.

1. Run the Swift tests with CKPT_GGUF_VOCAB_OUT set: each GGUFVocabulary test leaves
   <folder>/<case>/vocab.gguf and <folder>/<case>/ours/{tokenizer.json,tokenizer_config.json}
   (llama.cpp's ggml-vocab-llama-spm and ggml-vocab-gpt-2, the made-up vocabularies of the
   tests, a 256k-token one):
       CKPT_GGUF_VOCAB_OUT=/tmp/gguf-vocab swift test --filter GGUFVocabulary
2. .venv/bin/python tools/check_gguf_vocab.py /tmp/gguf-vocab

For each case, transformers builds its own files (AutoTokenizer.from_pretrained(<case>,
gguf_file="vocab.gguf"), then save_pretrained(<case>/transformers)) and the two are compared
component by component: normalizer, pre_tokenizer, decoder, post_processor, the model's type and
flags, every vocabulary entry, the merges (count, first and last five, then all in order),
added_tokens, and the special tokens tokenizer_config.json names. Both files are then loaded in
`tokenizers` and encode the same texts (llama.cpp's .inp cases for the two shared vocabularies,
and a few awkward strings), with and without special tokens; how many .inp cases give llama.cpp's
.out ids is printed too. Exits 1 on any difference.

Needs the pinned reference stack (tools/requirements.txt: transformers, tokenizers, gguf, and
torch, which transformers' GGUF reader imports). Dev-time only: `make test` never runs it.
"""

import json
import os
import sys
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "assets" / "tokenizers"

TEXTS = [
    "", " ", "Hello world", " Hello world", "  two  spaces ", "\n\tx\n", "ab ba aab é ▁é", "abc cab bca",
    "<s>a</s>", "a<think>b<ctl>", "<bos>x<eos>", "🦙 llama.cpp", "Grüße, 世界!", "x" * 300,
]


def load(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def llama_cpp_cases(name: str):
    """(text, ids) of ../shared/assets/tokenizers/ggml-vocab-<name>.gguf.inp/.out, or []."""
    inp = SHARED / f"ggml-vocab-{name}.gguf.inp"
    if not inp.exists():
        return []
    texts = inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    if texts and texts[-1] == "":
        texts.pop()
    lines = (SHARED / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(x) for x in lines[k].split()]) for k, t in enumerate(texts)]


def check_case(folder: Path) -> list[str]:
    """The differences between ckpt's and transformers' files for one case (empty: none)."""
    out = folder / "transformers"
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file="vocab.gguf")
    tok.save_pretrained(str(out))
    ours, theirs = load(folder / "ours" / "tokenizer.json"), load(out / "tokenizer.json")
    our_config, their_config = load(folder / "ours" / "tokenizer_config.json"), load(out / "tokenizer_config.json")
    problems = []

    def same(label, a, b):
        if a != b:
            problems.append(f"{label}: ckpt {json.dumps(a, ensure_ascii=False)[:300]} != transformers "
                            f"{json.dumps(b, ensure_ascii=False)[:300]}")

    # Deliberate: for SentencePiece (`llama`) vocabularies ckpt puts the prefix space in a Prepend/Replace
    # normalizer, as the original Llama-2 tokenizer.json and llama.cpp do; transformers 5.24 uses Metaspace
    # (prepend_scheme "first"), which drops it before text that starts with a space. Those two components
    # and the encodings of such text are compared against llama.cpp's .out ids instead.
    spm = ours["model"].get("byte_fallback") is True
    for key in ["decoder", "post_processor", "added_tokens", "truncation", "padding"] + ([] if spm else ["normalizer", "pre_tokenizer"]):
        same(key, ours.get(key), theirs.get(key))
    om, tm = ours["model"], theirs["model"]
    for key in sorted((set(om) | set(tm)) - {"vocab", "merges"}):
        same(f"model.{key}", om.get(key), tm.get(key))
    same("model.vocab size", len(om["vocab"]), len(tm["vocab"]))
    if om["vocab"] != tm["vocab"]:
        wrong = [k for k in tm["vocab"] if om["vocab"].get(k) != tm["vocab"][k]][:5]
        problems.append(f"model.vocab: {len(wrong)}+ entries differ, e.g. {wrong}")
    merges = lambda m: [list(x) if isinstance(x, list) else x.split(" ") for x in m["merges"]]  # noqa: E731
    ours_m, theirs_m = merges(om), merges(tm)
    same("merge count", len(ours_m), len(theirs_m))
    same("first merges", ours_m[:5], theirs_m[:5])
    same("last merges", ours_m[-5:], theirs_m[-5:])
    if ours_m != theirs_m:
        first = next((k for k, (a, b) in enumerate(zip(ours_m, theirs_m)) if a != b), min(len(ours_m), len(theirs_m)))
        problems.append(f"merges differ from rank {first}")
    for key in ["bos_token", "eos_token", "unk_token", "pad_token"]:
        same(f"config.{key}", our_config.get(key), their_config.get(key))
    template = (out / "chat_template.jinja")
    their_template = template.read_text(encoding="utf-8") if template.exists() else their_config.get("chat_template")
    same("chat_template", our_config.get("chat_template"), their_template)
    single = (theirs.get("post_processor") or {}).get("single") or []
    same("config.add_bos_token vs post_processor", our_config.get("add_bos_token", False),
         bool(single) and "SpecialToken" in single[0])

    # The same texts through `tokenizers`, with both files.
    a = tokenizers.Tokenizer.from_file(str(folder / "ours" / "tokenizer.json"))
    b = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    cases = llama_cpp_cases(folder.name)
    texts = [t for t, _ in cases] + TEXTS
    for special in (False, True):
        for text in texts:
            ia, ib = a.encode(text, add_special_tokens=special).ids, b.encode(text, add_special_tokens=special).ids
            # SentencePiece: pieces after added tokens and leading spaces differ by design (see above).
            if ia != ib and not spm:
                problems.append(f"encode({text[:40]!r}, add_special_tokens={special}): ckpt {ia[:20]} != transformers {ib[:20]}")
    if cases:
        agree = sum(b.encode(t, add_special_tokens=False).ids == ids for t, ids in cases)
        ours_agree = sum(a.encode(t, add_special_tokens=False).ids == ids for t, ids in cases)
        print(f"  {folder.name}: llama.cpp's .out ids from transformers' tokenizer on {agree} of {len(cases)} cases, from ckpt's on {ours_agree}")
        if ours_agree != len(cases):
            problems.append(f"ckpt's tokenizer gives llama.cpp's ids on only {ours_agree} of {len(cases)} cases")
    summary = (f"{len(tm['vocab'])} tokens, {len(theirs_m)} merges, {len(theirs['added_tokens'])} added, "
               f"pre_tokenizer {(theirs.get('pre_tokenizer') or {}).get('type')}, normalizer {(theirs.get('normalizer') or {}).get('type')}")
    print(f"  {folder.name}: {summary}; {len(texts)} texts encoded")
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = Path(sys.argv[1])
    cases = sorted(p for p in root.iterdir() if (p / "vocab.gguf").exists() and (p / "ours" / "tokenizer.json").exists())
    if not cases:
        print(f"no cases in {root}: run the Swift tests with CKPT_GGUF_VOCAB_OUT={root} first", file=sys.stderr)
        return 2
    print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
    failed = 0
    for folder in cases:
        problems = check_case(folder)
        print(f"{folder.name}: {'same as transformers' if not problems else f'{len(problems)} differences'}")
        for p in problems[:20]:
            print(f"    {p}")
        failed += bool(problems)
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
