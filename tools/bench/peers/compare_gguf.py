#!/usr/bin/env python3
"""Compares two GGUF files with gguf-py's reader: every tensor's type, shape and bytes, and the
metadata keys and values.

Usage: compare_gguf.py A.gguf B.gguf

Prints one JSON document: tensors compared and the names whose type, shape or bytes differ;
metadata keys only one file has, and keys whose values differ (arrays compared element by
element). GGUF.* bookkeeping fields are left out.
"""

import json
import sys

import numpy as np
from gguf import GGUFReader


def field_value(field):
    try:
        return field.contents()
    except Exception:  # older gguf-py: no contents()
        return [bytes(field.parts[i]).hex() for i in field.data]


def main() -> int:
    a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    differing, same_bytes = [], 0
    for name in sorted(set(ta) & set(tb)):
        x, y = ta[name], tb[name]
        if x.tensor_type != y.tensor_type or list(x.shape) != list(y.shape):
            differing.append(f"{name}: {x.tensor_type.name}{list(x.shape)} vs {y.tensor_type.name}{list(y.shape)}")
        elif not np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)):
            differing.append(f"{name}: bytes differ")
        else:
            same_bytes += 1
    keys_a = {k for k in a.fields if not k.startswith("GGUF.")}
    keys_b = {k for k in b.fields if not k.startswith("GGUF.")}
    values_differ = [k for k in sorted(keys_a & keys_b) if field_value(a.fields[k]) != field_value(b.fields[k])]
    print(json.dumps({
        "tensors_first": len(ta), "tensors_second": len(tb), "tensors_compared": len(set(ta) & set(tb)),
        "tensors_identical": same_bytes, "tensors_differing": differing[:20],
        "tensors_only_first": sorted(set(ta) - set(tb))[:10], "tensors_only_second": sorted(set(tb) - set(ta))[:10],
        "types": sorted({t.tensor_type.name for t in a.tensors}),
        "keys_only_first": sorted(keys_a - keys_b), "keys_only_second": sorted(keys_b - keys_a),
        "keys_values_differ": values_differ, "keys_same": len(keys_a & keys_b) - len(values_differ),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
