#!/usr/bin/env python3
"""Golden ids for the tokenizer.json pipelines ckpt implements beyond the stock shared files:
Llama-3 and Qwen2 style byte-level BPE (Split regex + ByteLevel, ignore_merges, NFC), SmolLM2
style digits, ByteLevel with add_prefix_space, Metaspace with split, added-token flags
(lstrip, rstrip, single_word, normalized, longest match), unknown tokens without byte fallback.

Each variant is a shared tokenizer (../shared/assets/tokenizers/gpt2_tokenizer.json or
llama_tokenizer.json) or the tiny Llama's, with some top-level keys replaced ("patch") and some
model keys set ("model_patch"); the Swift tests apply the same patch to the same file (named by
its path from the repository root), so only the patches and the ids are committed. Ids come from the pinned `tokenizers` (tools/requirements.txt):

  ids        Tokenizer.encode(text).ids                        (add_special_tokens=True)
  ids_plain  Tokenizer.encode(text, add_special_tokens=False).ids
  decoded    Tokenizer.decode(ids_plain, skip_special_tokens=False)
  decodes    Tokenizer.decode(ids, skip_special_tokens=False) for recorded id lists (bytes that are
             not UTF-8, ids that name no token)

Writes fixtures/tokenizers/variants.json (a pure function of this script, the pinned wheel and
the shared files: a second run rewrites it byte for byte) and refreshes fixtures/SHA256SUMS.
Run: .venv/bin/python tools/make_tokenizer_goldens.py
"""

import copy
import hashlib
import json
import os
import sys
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
import tokenizers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "assets" / "tokenizers"
OUT = REPO / "fixtures" / "tokenizers" / "variants.json"

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
ASCII_CONTRACTIONS_REGEX = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
                            r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def added(id_, content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def byte_level(add_prefix_space=False, use_regex=True):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


GPT2_EOT = added(50256, "<|endoftext|>")

# Words added to the tiny Llama's vocabulary without merges that make them: BPE splits them, and
# with ignore_merges (Llama-3) a word that is itself a token is that token.
EXTRA_WORDS = ["\u0120zebra", "quixotic", "\u0120quixotic"]
BASE_FILES = {
    "gpt2_tokenizer.json": ("../shared/assets/tokenizers/gpt2_tokenizer.json", SHARED / "gpt2_tokenizer.json"),
    "llama_tokenizer.json": ("../shared/assets/tokenizers/llama_tokenizer.json", SHARED / "llama_tokenizer.json"),
    "tiny-llama": ("fixtures/models/tiny-llama/tokenizer.json", REPO / "fixtures" / "models" / "tiny-llama" / "tokenizer.json"),
}

VARIANTS = [
    ("llama3-style", "gpt2_tokenizer.json", {
        "added_tokens": [GPT2_EOT, added(50257, "<|begin_of_text|>"), added(50258, "<|end_of_text|>")],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(use_regex=False)]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [50257], "tokens": ["<|begin_of_text|>"]}}},
        ]},
    }, {"ignore_merges": True}),
    ("llama3-ascii-contractions", "gpt2_tokenizer.json", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(ASCII_CONTRACTIONS_REGEX), byte_level(use_regex=False)]},
    }, {}),
    ("qwen2-style", "gpt2_tokenizer.json", {
        "added_tokens": [GPT2_EOT, added(50257, "<|im_start|>"), added(50258, "<|im_end|>")],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(use_regex=False)]},
    }, {}),
    ("smollm2-style", "gpt2_tokenizer.json", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level()]},
    }, {}),
    ("digits-grouped", "gpt2_tokenizer.json", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False}, byte_level()]},
    }, {}),
    ("gpt2-prefix-space-roberta", "gpt2_tokenizer.json", {
        "pre_tokenizer": byte_level(add_prefix_space=True),
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 50256], "cls": ["<|endoftext|>", 50256],
                           "trim_offsets": True, "add_prefix_space": True},
    }, {}),
    ("added-token-flags", "gpt2_tokenizer.json", {
        "added_tokens": [GPT2_EOT,
                         added(50257, "<mask>", lstrip=True),
                         added(50258, "[SEP]", rstrip=True),
                         added(50259, "cat", special=False, single_word=True),
                         added(50260, "<|end", special=False),
                         added(50261, "dog", special=False, normalized=True, lstrip=True, rstrip=True),
                         added(50262, "\u4f60\u597d", special=False)],
    }, {}),
    ("lowercase-strip", "gpt2_tokenizer.json", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": True, "strip_right": True}, {"type": "Lowercase"}]},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            {"type": "Strip", "content": "!", "start": 2, "stop": 0}]},  # stop > 0 panics on an empty text in tokenizers
    }, {}),
    ("llama-metaspace-split", "llama_tokenizer.json", {
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    }, {}),
    ("llama-metaspace-first-raw-specials", "llama_tokenizer.json", {
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False},
    }, {}),
    ("tiny-ignore-merges", "tiny-llama", {}, {"ignore_merges": True, "vocab": "+EXTRA_WORDS"}),
    ("llama-unknown-fused", "llama_tokenizer.json", {}, {"byte_fallback": False}),
    ("llama-unknown-unfused", "llama_tokenizer.json", {}, {"byte_fallback": False, "fuse_unk": False}),
]

STRINGS = [
    "",
    " ",
    "   ",
    "\t",
    "\n\n\n",
    " \n \n",
    "Hello world",
    " Hello world",
    "Hello  world   ",
    "line one\r\nline two\r\n\r\n  indented\n",
    "\t\tx \t y\n\t",
    "a\u00a0b \u00a0 c\u2003\u2003d\u3000e\u0085f\u2028g",
    "I'm you're he's don't we'll they've I'd it's",
    "IT'S DON'T YOU'RE WE'LL THEY'VE I'D I'M",
    "x'ſ y'S 'Re 'lL 'K ''s 'sam",
    "1 12 123 1234 12345 123456 1234567",
    "3.14159 and 1,000,000 and 2024-01-01, x=-42",
    "\u0661\u0662\u0663 \u00bd\u2153 \u2167 ①②③ 𝟙𝟚𝟛",
    "café naïve résumé Ångström",
    "e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1e9b\u0323",
    "日本語のテキストと中文字符。한국어",
    "Ελληνικά кириллица العربية עברית",
    "🙂 emoji 👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷",
    "(hello) [world] {x} <y> «z»",
    "$%^&*()_+-=[]{}|;:',.<>/?`~\"!@#",
    "def f(x):\n    return x**2  # comment\n\tpass\n",
    "https://example.com/path?q=1&r=2#frag",
    "\u2581already \u2581 a metaspace",
    "\u0120G \u010aC",
    "<|endoftext|>",
    "Hello<|endoftext|>world <|endoftext|> x",
    "<|begin_of_text|>Hi<|end_of_text|>",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "a <mask> b <mask>c  <mask>",
    "x [SEP] y [SEP]   z[SEP]",
    "cat concat cat. cats _cat (cat)",
    "<|end <|endoftext <|endoftext|>",
    "hotdog dog  dog hot dog",
    "<s>Hello</s> <unk> x <s> y",
    " <s> Hello </s> ",
    "unknown \U0001f600\U0001f600 chars \u2603 and 世界",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 40,
    "zebra zebras quixotic  quixotic, zebra",
    "  \u039f\u0394\u039f\u03a3 \u0130stanbul \u1e9e \u01c5 \u2163 \u00c5\u212b!!!  \n",
    "!!!wow!!!!",
    "\u4f60\u597d\uff0c\u4f60\u597d\u4e16\u754c",
]

# Id lists whose decoding is recorded too: byte tokens that do not form UTF-8, unknown ids.
def decode_cases(tok, base):
    if base == "llama_tokenizer.json":
        b = lambda x: 3 + x  # <0x00> is id 3
        return [[b(0xE2), b(0x96)], [15043, b(0xE2), b(0x96), b(0x81), 15043], [b(0xFF), 29871, b(0xC3)],
                [1, 1, 2, 0, 29871, 29871], [29871], [13, 29871, 13], [31999, 99999999]]
    if base == "gpt2_tokenizer.json":
        byte_token = {b: tok.token_to_id(c) for b, c in bytes_to_unicode().items()}
        return [[byte_token[0xE2], byte_token[0x96]], [15496, byte_token[0xFF], 995], [50256, 50256],
                [byte_token[0xF0], byte_token[0x9F], byte_token[0x98], byte_token[0x80]], [99999999, 11],
                [tok.token_to_id("\u4f60\u597d") or 11]]
    return [[0, 1, 2, 3], [99999999]]



def ignore_merges_examples(tok_plain) -> list:
    """Words of the GPT-2 vocabulary that BPE does not reassemble into themselves: with
    ignore_merges (Llama-3) they become one token."""
    vocab = tok_plain.get_vocab()
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    found = []
    for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if not token.startswith("\u0120") or not token[1:].isalpha() or len(token) < 5:
            continue
        text = bytes(byte_decoder[c] for c in token).decode("utf-8", errors="strict")
        if len(tok_plain.encode(text, add_special_tokens=False).ids) > 1:
            found.append("word" + text)  # "word Xyz": the space-prefixed word stays one piece
            if len(found) == 4:
                break
    return found


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main():
    bases = {}
    for name, (_, path) in BASE_FILES.items():
        if not path.is_file():
            sys.exit(f"error: {path} missing (the shared assets are needed)")
        data = path.read_bytes()
        bases[name] = (json.loads(data.decode("utf-8")), hashlib.sha256(data).hexdigest())
    variants = []
    for vname, base, patch, model_patch in VARIANTS:
        if model_patch.get("vocab") == "+EXTRA_WORDS":
            vocab = dict(bases[base][0]["model"]["vocab"])
            for w in EXTRA_WORDS:
                vocab[w] = len(vocab)
            model_patch = {**model_patch, "vocab": vocab}
        raw = copy.deepcopy(bases[base][0])
        raw.update(patch)
        raw["model"].update(model_patch)
        tok = tokenizers.Tokenizer.from_str(json.dumps(raw))
        strings = list(STRINGS)
        if model_patch.get("ignore_merges"):
            plain = copy.deepcopy(bases[base][0])
            plain.update(patch)
            strings += ignore_merges_examples(tokenizers.Tokenizer.from_str(json.dumps(plain)))
        cases = []
        for s in strings:
            ids = tok.encode(s).ids
            plain_ids = tok.encode(s, add_special_tokens=False).ids
            cases.append({"text": s, "ids": ids, "ids_plain": plain_ids,
                          "decoded": tok.decode(plain_ids, skip_special_tokens=False)})
        decodes = [{"ids": ids, "text": tok.decode(ids, skip_special_tokens=False)} for ids in decode_cases(tok, base)]
        variants.append({"name": vname, "base": BASE_FILES[base][0], "base_sha256": bases[base][1],
                         "patch": patch, "model_patch": model_patch, "decodes": decodes, "cases": cases})
        print(f"{vname}: {len(cases)} cases", file=sys.stderr)
    doc = {
        "generator": "tools/make_tokenizer_goldens.py",
        "versions": {"tokenizers": tokenizers.__version__},
        "how": "the base file with its top-level keys replaced by 'patch' and its model keys set by "
               "'model_patch'; ids = encode(text).ids, ids_plain = encode(text, add_special_tokens=False).ids, "
               "decoded = decode(ids_plain, skip_special_tokens=False)",
        "variants": variants,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(compact_lines(doc) + "\n", encoding="utf-8")
    (OUT.parent / "README.md").write_text(README.format(
        version=tokenizers.__version__,
        rows="\n".join(f"| `{v['name']}` | `{v['base']}` | {describe(v)} |" for v in variants)), encoding="utf-8")
    write_sums(REPO / "fixtures")


def describe(v) -> str:
    parts = [f"{k}: {summary(x)}" for k, x in v["patch"].items()]
    parts += [f"model.{k}: {summary(x)}" for k, x in v["model_patch"].items()]
    return "; ".join(parts) or "(none)"


def summary(x) -> str:
    if isinstance(x, dict) and "type" in x:
        t = x.get("type")
        inner = x.get("pretokenizers") or x.get("normalizers") or x.get("processors") or x.get("decoders")
        if inner:
            return f"{t}[" + ", ".join(summary(i) for i in inner) + "]"
        if t == "Split":
            return "Split(" + x["pattern"]["Regex"][:24].replace("|", "\\|") + "…)"
        if t == "Digits":
            return "Digits(individual)" if x["individual_digits"] else "Digits(grouped)"
        if t in ("ByteLevel", "Metaspace"):
            opts = [k for k in ("add_prefix_space", "split") if x.get(k)]
            opts += [f"prepend {x['prepend_scheme']}"] if "prepend_scheme" in x else []
            opts += ["no regex"] if x.get("use_regex") is False else []
            return t + (f"({', '.join(opts)})" if opts else "")
        return t
    if isinstance(x, dict):
        return f"{len(x)} entries"
    if isinstance(x, list):
        return ", ".join(f"`{a['content']}`".replace("|", "\\|") + "".join(f" {k}" for k in ("lstrip", "rstrip", "single_word") if a[k])
                         + (" normalized" if a["normalized"] else "") for a in x)
    return json.dumps(x)


README = """# Tokenizer variant goldens

`variants.json`, made by `tools/make_tokenizer_goldens.py` with tokenizers {version} (rerun it
with the reference venv: `.venv/bin/python tools/make_tokenizer_goldens.py`; it needs
`../shared/assets/tokenizers`). Each variant is a base tokenizer.json with top-level keys replaced
(`patch`) and model keys set (`model_patch`); the Swift test `tokenizerVariant` applies the same
patch and compares, for every string, `encode(text)`, `encode(text, addSpecialTokens: false)` and
the decoding of the latter, plus the recorded `decodes` of id lists (invalid UTF-8 bytes, unknown
ids). The stock files themselves (gpt2, llama, tiny-llama, llama with Metaspace) are covered by
`fixtures/eval/tokenizers.json`.

| variant | base | patch |
|---|---|---|
{rows}
"""


def compact_lines(doc) -> str:
    """JSON with one line per variant field and per case, so diffs stay readable."""
    def dump(v):
        return json.dumps(v, ensure_ascii=True, separators=(",", ":"))
    head = ",\n".join(f" {dump(k)}:{dump(v)}" for k, v in doc.items() if k != "variants")
    parts = []
    for v in doc["variants"]:
        fields = ",\n".join(f"   {dump(k)}:{dump(x)}" for k, x in v.items() if k != "cases")
        cases = ",\n".join("    " + dump(c) for c in v["cases"])
        parts.append("  {\n" + fields + ',\n   "cases":[\n' + cases + "\n   ]\n  }")
    return "{\n" + head + ',\n "variants":[\n' + ",\n".join(parts) + "\n ]\n}"


def write_sums(out: Path):
    """fixtures/SHA256SUMS as tools/make_fixtures.py writes it."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}" for p in files]
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
