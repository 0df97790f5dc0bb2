#!/usr/bin/env python3
"""Reference implementation of GPTQ as GPTQModel runs it (`GPTQ.quantize`, default path), in plain
torch on the CPU, float32 unless told otherwise, plus ckpt's NF4 extension.

GPTQModel is ModelCloud/GPTQModel @ f4c327a (2026-08-23, version.py 7.3.4), the commit that
docs/w4a16-formats-spec.md pins as `GM`. Line numbers below ("gptq.py:1248") are of
gptqmodel/quantization/gptq.py, quantizer.py and config.py at that commit. GPTQModel itself is not
installed here; this file follows its source operation by operation (same torch ops, same order,
same dtypes), so on the same torch build it gives the same bytes. This was checked once by running
GPTQModel's own gptq.py and quantizer.py at that commit (their other imports stubbed, act_group_aware
off, H injected) against gptq() on 480 integer configurations (bits 3/4/8, G 32/64/128/-1, sym/asym,
desc_act, static_groups, dead columns, K up to 320 with several lazy blocks, the damp auto-increment)
and on every integer case of the goldens: Q, scales, zeros, g_idx and damp were bit-identical.
tools/make_gptq_goldens.py writes the goldens from it (fixtures/w4a16/gptq_cases.*).

Public functions
  hessian(batches, method)        H = 2/n Σ x xᵀ over batches of rows x (tokens), f32
  gptq(W, H, ...)                 -> GPTQOutput (codes, scales, zeros, g_idx, Q, damp, ...)
  rtn(W, ...)                     round-to-nearest with the same quantizer (the baseline)
  find_params, quantize_int       GPTQModel's Quantizer.find_params (with its mse search) / quantize
  nf4_quantize                    ckpt's NF4 rule
  hessian_inverse(H, ...)         GPTQModel's hessian_inverse (damping, retries)

Conventions. W is [N, K] (nn.Linear.weight: N outputs, K inputs), H is [K, K]. G = group_size,
G = -1 means one group per row. ng = number of groups = ceil(K/G) (1 for G = -1). Unsigned codes
u ∈ [0, maxq], maxq = 2^bits − 1. Outputs are in the ORIGINAL column order; scales and zeros are
[N, ng] with column j = the j-th group in the order GPTQModel appended it, which g_idx[k] indexes.

------------------------------------------------------------------------------------------------
NF4 mode (ckpt's own extension; GPTQModel has no such mode)
------------------------------------------------------------------------------------------------
The GPTQ column loop, error feedback and damping are exactly those of the integer mode. Only the
quantizer differs:
  * groups: G = 64 columns along K (any G > 0 with K % G == 0 is accepted), contiguous in the
    ORIGINAL column order, so that row-major [N, K] flattened into blocks of 64 is exactly
    bitsandbytes' blockwise layout (absmax [N, K/64] row-major = bitsandbytes' absmax order).
  * parameter per row and group: absmax = max_j |w_j| over the group's G columns (f32, exact).
    Measured exactly where GPTQModel calls find_params:
      - static_groups = False: when the loop reaches the group's first column c (c % G == 0), on
        the global W as the previous lazy blocks left it (gptq.py:1229-1230, including GPTQModel's
        quirk that updates made earlier in the same 128-column block are not yet in it);
      - static_groups = True: before the loop, on the original W with dead columns zeroed
        (gptq.py:1024-1034).
  * act_order (desc_act) is allowed only together with static_groups = True (otherwise ValueError):
    a group formed in permuted order would not be contiguous in the original order and could not
    be stored as bitsandbytes blocks. With static groups the groups are the original contiguous
    ones and g_idx[k] = k // G, as GPTQModel's static_groups + desc_act gives (gptq.py:1291-1301).
  * code: x = f32(w / absmax); d_i = f32(|f32(x − t_i)|) for the 16 entries t_0 < … < t_15 of
    bitsandbytes' NF4 table (get_4bit_type('nf4'); the same values as NF4_TABLE below and as
    fixtures/quant/dynamic_map.safetensors 'nf4'); code = the smallest i with d_i minimal (ties go
    to the lower index, i.e. the more negative value). No clamp is applied to x; clamping x to
    [−1, 1] first would choose the same code. If absmax == 0 (all-zero group at measurement time),
    code = 7 (t_7 = 0.0) and q = 0 for every column of that group, whatever the column's value has
    become through error feedback.
  * q = f32(t_code · absmax); the error fed back is (w − q)/d exactly as for integers.
  * outputs: codes = NF4 indices (0..15), scales = absmax [N, ng] f32, zeros = 0.0 [N, ng],
    g_idx[k] = k // G.

------------------------------------------------------------------------------------------------
The algorithm step by step (integer mode), with GPTQModel citations
------------------------------------------------------------------------------------------------
Hessian (not part of GPTQ.quantize). `hessian(batches)`:
  method="running_average" (default; AutoGPTQ, original GPTQ, GPTQModel v2.0.0 `process_batch`
  gptq.py@v2.0.0:90-125): for each batch X [m, K] (m rows = tokens):
      first batch: H = zeros(K, K) f32;  later batches: H = f32(H · f32(n/(n+m)))   (L119)
      n += m;  Y = f32(f32(sqrt(2/n)) · Xᵀ)   (L123; sqrt and 2/n in double, then rounded to f32)
      H += Y·Yᵀ   (L125; an f32 GEMM, whose summation order is the BLAS's)
    NB GPTQModel v2.0.0 counted n in SEQUENCES (a 2-D input is unsqueezed to one sequence, L96-98);
    here n counts rows, so H ≈ 2/n_tokens Σ x xᵀ.
  method="sum_then_scale" (current GPTQModel f4c327a): xtx = Σ_batches f32(Xᵀ·X) (gptq.py:493,
    add_batch :356-375 adds per batch), then H = f32(xtx · f32(2/n_tokens)) (materialize_global_
    hessian :667). The two differ only by f32 rounding (and GPTQ is invariant to scaling H).

GPTQ.quantize (gptq.py:962-1354), with the processor's `quantizer.configure(perchannel=True)`
(looper/gptq_processor.py:179-181; maxq = 2^bits − 1, quantizer.py:87):
 1. W = weight widened to f32 (clone_module, gptq.py:343), H as accumulated.
 2. Row parameters: find_params(W) over whole rows (gptq.py:1010), BEFORE dead columns are
    zeroed. They are the parameters when G = −1 (appended at gptq.py:1331-1333).
 3. Dead columns (gptq.py:1014-1017): dead = diag(H) == 0 (exact compare); H[i,i] = 1 for dead i
    (diagonal entries only: H[dead, dead] pairs the two index lists), W[:, dead] = 0.
 4. static_groups and G > 0 (gptq.py:1024-1034): for g = 0, G, 2G, …: params of W[:, g:g+G]
    (after step 3, before permutation); appended to scales/zeros in that order. With G = −1 the
    range is empty and static_groups has no effect.
 5. desc_act (gptq.py:1036-1052): perm = argsort(diag(H), descending) (of H after step 3, so a dead
    column sorts as 1.0); W = W[:, perm]; H = H[perm][:, perm]; invperm = argsort(perm). GPTQModel
    calls torch.argsort without stable=True; this reference uses stable=True (ties by ascending
    index) and the goldens script checks that the unstable sort gives the same perm.
 6. hessian_inverse(H) (gptq.py:859-956):
      orig = diag(H) (clone); floor_base = 1e-6 · max|orig| (1.0 if that is 0 or not finite);
      for attempt = 0..6:
        cur = orig (attempt 0) or clamp(orig + f, min=f), f = floor_base·10^(attempt−1) (:888-893)
        diag(H) = cur; mean = torch.mean(cur) (f32, torch's summation order) (:901-902)
        damp = damp_percent
        while 0 < damp < 1:                                              (:909)
          diag(H) += f32(f32(damp) · mean)            (:911; the product is an f32 multiply)
          L = cholesky(H) (lower); Hinv = cholesky(cholesky_inverse(L), upper=True)   (:915-916)
          success: restore diag(H) = cur, return (Hinv, damp)            (:918-925)
          LinAlgError: restore diag(H) = cur; damp += damp_auto_increment (a Python double add)
                       if damp_auto_increment != 0, else leave the while loop  (:926-942)
      all attempts failed: return (None, 1.0) (:956) -> step 7 runs without error feedback
      (round-to-nearest in blocks of G, gptq.py:1204-1208) and the reported damp is 1.0.
    Hinv = U is upper triangular with UᵀU = (H + λI)⁻¹. QuantizeConfig requires
    0 < damp_percent < 1 (config.py:3234-3235); the GPTQ-method defaults are damp_percent 0.05 and
    damp_auto_increment 0.01 (config.py:2148-2153); hf_quantize passes 0.01 and 0.0015 (:836-845).
 7. Column loop, lazy blocks of B = 128 (gptq.py:1210-1257). now_idx = 1 (:1022).
      for i1 in 0, B, 2B, …:  i2 = min(i1+B, K)
        W1 = W[:, i1:i2].clone(); U1 = U[i1:i2, i1:i2]                     (:1214, :1220)
        for i in 0 ..< i2−i1:  c = i1 + i;  w = W1[:, i];  d = U1[i, i]     (:1223-1225)
          if G ≠ −1 and not static_groups:
            if c % G == 0: params = find_params(W[:, c:c+G])  -- the GLOBAL W (:1229-1230)
            if c // G == now_idx − 1: append params to scales/zeros; now_idx += 1   (:1232-1235)
          if G ≠ −1 and static_groups: params = groups[(perm[c] if desc_act else c) // G]
                                                                                (:1236-1241)
          (G = −1: the row parameters of step 2)
          u = clamp(round(w/s) + z, 0, maxq); q = s·(u − z)         (:1243, quantizer.py:26-27)
          Losses1[:, i] = (w − q)²/d²;  e = (w − q)/d                          (:1246-1247)
          W1[:, i:] −= e ⊗ U1[i, i:]   -- elementwise f32(W1 − f32(e·U)): a K=1 matmul (:1248)
          Err1[:, i] = e                                                       (:1249)
        Q[:, i1:i2] = Q1;  Losses[:, i1:i2] = Losses1/2                        (:1251-1253)
        W[:, i2:] −= Err1 · U[i1:i2, i2:]   (an f32 GEMM into a temporary, then a subtraction) (:1254)
    The quirk: find_params at column c reads the global W, which has the updates of the previous
    blocks only (line 1254), not those of columns i1..c−1 of this block (they live in W1). With
    G < B the second and later groups of a block are measured on weights without in-block feedback.
 8. Outputs (gptq.py:1289-1336): g_idx_perm[c] = perm[c] // G if (static_groups and desc_act)
    else c // G (G = K for G = −1); with desc_act: Q = Q[:, invperm], g_idx = g_idx_perm[invperm],
    i.e. dynamic groups give g_idx[perm[i]] = i // G and static ones g_idx[k] = k // G.
    scales = cat(scales, dim=1), zeros likewise, [N, ng] in append order. GPTQModel then casts Q to
    the module dtype (:1326-1329); `Q` here is the f32 value before that cast. The codes u are the
    clamp(round(w/s)+z) of step 7 (GPTQModel does not return them; its packer re-derives them from
    Q, scales and zeros).

find_params(x) per row of x [N, m] (quantizer.py:95-139, 191-195; mse = 0 by default, config.py:3207
GPTQConfig.mse, which skips the shrink search at :141-182; see "mse" below):
    xmin = minimum(min_j x, 0); xmax = maximum(max_j x, 0)                      (:114-116)
    if sym: xmax = maximum(|xmin|, xmax); where xmin < 0: xmin = −xmax         (:118-122)
            -> QUIRK: a row with no negative value keeps xmin = 0, so s = xmax/maxq with z = 8
    where xmin == 0 and xmax == 0: xmin = −1, xmax = +1                        (:123-125)
    s = f32(f32(xmax − xmin) / maxq)                                           (:135)
    z = (maxq + 1)/2 if sym else round_half_even(f32(−xmin / s))               (:136-139)
  For sym xmax − xmin = 2·xmax exactly. For asym a row without negatives gives z = round(−0.0/s)
  = −0.0; the goldens store +0.0 (the integer is 0 either way).
quantize (quantizer.py:19-27): u = clamp(round_half_even(f32(x / s)) + z, 0, maxq) (torch.round
  is half-to-even), q = f32(s · f32(u − z)).

mse > 0: the shrink search (quantizer.py:141-182). The config value is the norm itself
(`mse = float(qcfg.mse)`, :141; GPTQConfig.mse, config.py:3207), the grid and maxshrink are
configure()'s defaults 100 and 0.8 (:69-73; gptq_processor.py:179-181 passes neither), so
int(0.8·100) = 80 trials. After s and z above (xmin, xmax already widened to 0, made symmetric,
an all-zero row at [-1, 1]), per row, best = inf; for i in 0..79:
    p = 1 − i/100 (a Python double; `p * xmin` on an f32 tensor multiplies by f32(p))     (:147-149)
    s1 = f32(f32(xmax1 − xmin1) / maxq)                                                   (:150-154)
    z1 = round_half_even(f32(−xmin1 / s1)) if asym, else the symmetric z (:137) unchanged   (:155)
    candidates: z1, and for 2-bit asymmetric codes (maxq == 3, :44-51) also the other
      integer beside −xmin1/s1 (`_adjacent_zero_point`: floor and ceil clamped to [0, maxq],
      whichever z1 is not; :53-66, :157-164)
    per candidate: q = quantize(x, s1, z) (dequantized, :19-27); err = Σ_j f32(|q − x|^mse) in
      torch's f32 sum, the exponent an f32 (pow_ with a Python float on an f32 tensor) (:167-177);
      where err < best (strict: the first of equal errors stays): best, s, z := err, s1, z (:178-182).
  An all-zero row keeps s = 2/maxq (every trial's error is 0; the first wins). ckpt's NF4 mode gets
  the same search over the absmax (its extension): trial absmax f32(p)·absmax, q = nearest code ×
  it, the same error and strict comparison; an all-zero row keeps absmax 0.
  Diagnostic: mse_margin per row = (err of the best trial with other parameters − best) / best,
  in f64 from the f32 errors: a row whose margin is tiny may choose differently under another
  summation order (ckpt sums in SIMD lanes with a polynomial |e|^mse).
  Checked once against GPTQModel's own quantizer.py at f4c327a (its imports stubbed,
  Quantizer(qcfg).configure(perchannel=True), qcfg.mse = 2.4): find_params gave bit-identical scale
  and zero on 160 row sets (bits 2/3/4/8, sym and asym, bf16-rounded rows, rows without negatives,
  all-zero rows, outlier columns).

Not covered (GPTQModel features off on this path): act_group_aware (GAR; the GPTQ method's default
when desc_act is unset, config.py:3243-3244 — ckpt runs with it off), mock_quantization,
the sample-count fallback strategies (gptq.py:975-994), tensor-parallel padding, Conv layers.
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

# Before torch: pins the environment for determinism (see fixture_common.py).
import fixture_common  # noqa: E402,F401

import math  # noqa: E402

import torch  # noqa: E402

GPTQMODEL = "ModelCloud/GPTQModel @ f4c327a17eb3e24524d5a97a3d682e3696ae6a28 (version.py 7.3.4)"

# bitsandbytes get_4bit_type('nf4') (its literal list, divided by its absmax 1.0), ascending.
NF4_TABLE = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
             -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
             0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
             0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
NF4_ZERO_CODE = 7


def nf4_table(dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(NF4_TABLE, dtype=torch.float32).to(dtype)


# ---------------------------------------------------------------------------------------------
# Hessian


def hessian(batches, method: str = "running_average") -> torch.Tensor:
    """H [K, K] f32 from batches of layer inputs (each [..., K], rows = tokens); see the module
    docstring. A single tensor is one batch."""
    if torch.is_tensor(batches):
        batches = [batches]
    H = None
    n = 0
    for X in batches:
        X = X.reshape(-1, X.shape[-1])
        m = X.shape[0]
        if m == 0:
            continue
        if method == "running_average":
            # GPTQModel v2.0.0 process_batch (gptq.py@v2.0.0:116-125), n counted in rows.
            if H is None:
                H = torch.zeros((X.shape[1], X.shape[1]), dtype=torch.float32)
            else:
                H *= n / (n + m)
            n += m
            inp = X.t()
            inp = math.sqrt(2 / n) * inp.float()
            H += inp.matmul(inp.t())
        elif method == "sum_then_scale":
            # GPTQModel f4c327a: compute_hessian_xtx (:492-493), add_batch (:366-371).
            mat32 = X.to(dtype=torch.float32)
            xtx = torch.matmul(mat32.T, mat32)
            H = xtx if H is None else H.add_(xtx)
            n += m
        else:
            raise ValueError(f"unknown Hessian method {method!r}")
    if H is None:
        raise ValueError("no rows")
    if method == "sum_then_scale":
        H.mul_(2.0 / float(n))  # materialize_global_hessian (:667)
    return H


# ---------------------------------------------------------------------------------------------
# Quantizers


MSE_GRID = 100        # Quantizer.configure(grid=100), quantizer.py:72
MSE_MAXSHRINK = 0.8   # Quantizer.configure(maxshrink=0.8), quantizer.py:73


def _shrink_search(x: torch.Tensor, mse: float, initial, trial):
    """The loop of quantizer.py:141-182 for one row set: initial = the unshrunk params (a tuple of
    [N] tensors), trial(p) -> list of (params, q) per zero candidate, q the dequantized x. Returns
    the chosen params ([N] tensors; the initial ones where nothing beats inf), the per-row
    margin (see the module docstring) and the index i of the chosen trial."""
    N = x.shape[0]
    best = torch.full([N], float("inf"), dtype=x.dtype)     # :143
    chosen = [c.clone() for c in initial]
    shrink = torch.zeros(N, dtype=torch.long)
    errs, params = [], []
    for i in range(int(MSE_MAXSHRINK * MSE_GRID)):          # :146
        p = 1 - i / MSE_GRID                                 # :147
        for cand, q in trial(p):
            q = q - x                                        # :174
            q.abs_()                                         # :175
            q.pow_(mse)                                      # :176
            err = torch.sum(q, 1)                            # :177
            tmp = err < best                                 # :178
            if torch.any(tmp):                               # :179-182
                best[tmp] = err[tmp]
                shrink[tmp] = i
                for c, v in zip(chosen, cand):
                    c[tmp] = v[tmp]
            errs.append(err.double())
            params.append(torch.stack([c.double() for c in cand], 1))
    E = torch.stack(errs, 1)                                 # [N, T]
    P = torch.stack(params, 1)                               # [N, T, k]
    won = torch.stack([c.double() for c in chosen], 1).unsqueeze(1)
    other = (P != won).any(2)                                # trials with other parameters
    b = best.double()
    gap = torch.where(other, E - b.unsqueeze(1), torch.full_like(E, float("inf"))).min(1)[0]
    # A best error of exactly 0 (an all-zero row) is 0 in any summation: no tie to record.
    margin = torch.where(b > 0, gap / b.clamp(min=1e-300), torch.full_like(b, float("inf")))
    return chosen, margin, shrink


def _adjacent_zero_point(xmin, scale, primary, maxq: int):
    """quantizer.py:53-66."""
    ideal = -xmin / scale
    lower = torch.floor(ideal).clamp_(0, maxq)
    upper = torch.ceil(ideal).clamp_(0, maxq)
    return torch.where(primary == lower, upper, lower)


def find_params(x: torch.Tensor, bits: int, sym: bool, mse: float = 0.0):
    """GPTQModel Quantizer.find_params(x, weight=True) with perchannel=True: per row of
    x [N, m], (scale [N, 1], zero [N, 1]) in x's dtype; mse > 0 runs the shrink search. Also
    returns, per row, whether the symmetric 'xmin stays 0' quirk applied (no negative value,
    xmax > 0), whether the row was all zero (xmin = -1, xmax = 1 substituted), and the search's
    margin (inf without it)."""
    maxq = torch.tensor(2 ** bits - 1)                       # quantizer.py:87
    tmp = torch.zeros(x.shape[0], dtype=x.dtype)             # :114
    xmin = torch.minimum(x.min(1)[0], tmp)                   # :115
    xmax = torch.maximum(x.max(1)[0], tmp)                   # :116
    if sym:
        xmax = torch.maximum(torch.abs(xmin), xmax)          # :119
        neg = xmin < 0                                       # :120
        if torch.any(neg):
            xmin[neg] = -xmax[neg]                           # :122
    quirk = (xmin == 0) & (xmax > 0) if sym else torch.zeros_like(xmin, dtype=torch.bool)
    both = (xmin == 0) & (xmax == 0)                         # :123
    xmin[both] = -1                                          # :124
    xmax[both] = +1                                          # :125
    scale = (xmax - xmin) / maxq                             # :135
    if sym:
        zero = torch.full_like(scale, (maxq + 1) / 2)        # :137
    else:
        zero = torch.round(-xmin / scale)                    # :139
    mse_margin = torch.full_like(scale, float("inf"), dtype=torch.float64)
    if mse > 0:                                              # :141-142
        adjacent = int(maxq.item()) == 3 and not sym         # :44-51, :144

        def trial(p):
            xmin1 = p * xmin                                 # :148
            xmax1 = p * xmax                                 # :149
            scale1 = (xmax1 - xmin1) / maxq                  # :150-154
            zero1 = torch.round(-xmin1 / scale1) if not sym else zero   # :155
            zeros = [zero1]
            if adjacent:                                     # :157-164
                zeros.append(_adjacent_zero_point(xmin1, scale1, zero1, maxq=3))
            out = []
            for z in zeros:                                  # :166-173
                u = torch.clamp(torch.round(x / scale1.unsqueeze(1)) + z.unsqueeze(1), 0, maxq)
                out.append(((scale1, z), scale1.unsqueeze(1) * (u - z.unsqueeze(1))))
            return out

        (scale, zero), mse_margin, shrink = _shrink_search(x, mse, (scale, zero), trial)
        xmin = (1 - shrink.double() / MSE_GRID).float() * xmin   # the chosen trial's xmin1, for the zero margin
    # asymmetric zero-point rounding margin (distance of -xmin/s to the nearest .5, relative)
    if sym:
        zmargin = torch.full_like(scale, float("inf"), dtype=torch.float64)
    else:
        v = (-xmin / scale).double()
        zmargin = (v - (torch.floor(v) + 0.5)).abs() / torch.clamp(v.abs(), min=1.0)
    return scale.reshape(-1, 1), zero.reshape(-1, 1), {"quirk": quirk, "all_zero": both, "zero_margin": zmargin,
                                                       "mse_margin": mse_margin}


def quantize_int(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int):
    """quantizer.py:19-27 (maxq >= 0, not groupwise): returns (u, q, margin). u are the unsigned
    codes (integer-valued, x's dtype), q = scale·(u − zero). margin: |x/s − (nearest tie)| /
    max(|x/s|, 1) in f64 where the tie lies between two codes that differ after the clamp, else inf."""
    maxq = torch.tensor(2 ** bits - 1)
    v = x / scale
    u = torch.clamp(torch.round(v) + zero, 0, maxq)          # :26
    q = scale * (u - zero)                                   # :27
    vd = v.double()
    k = torch.floor(vd)
    lo = k + zero.double()  # codes k+z and k+1+z straddle the tie at k + 0.5
    relevant = (lo >= 0) & (lo <= 2 ** bits - 2)
    margin = (vd - (k + 0.5)).abs() / torch.clamp(vd.abs(), min=1.0)
    margin = torch.where(relevant, margin, torch.full_like(margin, float("inf")))
    return u, q, margin


def nf4_values(x: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
    """ckpt's NF4 rule for x [N, m] against absmax [N, 1]: the chosen values q [N, m]
    (nf4_quantize's q, every column at once)."""
    table = nf4_table(x.dtype)
    zero_group = absmax == 0
    v = x / torch.where(zero_group, torch.ones_like(absmax), absmax)
    dist = (v.unsqueeze(2) - table.reshape(1, 1, -1)).abs()  # [N, m, 16]
    code = torch.zeros_like(v, dtype=torch.long)
    best = dist[:, :, 0].clone()
    for i in range(1, 16):  # strict '<': equal distances keep the lower index
        better = dist[:, :, i] < best
        code = torch.where(better, torch.full_like(code, i), code)
        best = torch.where(better, dist[:, :, i], best)
    code = torch.where(zero_group, torch.full_like(code, NF4_ZERO_CODE), code)
    return table[code] * absmax


def nf4_params(x: torch.Tensor, mse: float = 0.0):
    """absmax per row of x [N, m] -> ([N, 1], search margin [N]); with mse > 0, the shrink search
    of find_params over the absmax (ckpt's extension, module docstring)."""
    absmax = x.abs().max(1)[0]
    margin = torch.full_like(absmax, float("inf"), dtype=torch.float64)
    if mse > 0:
        def trial(p):
            a1 = p * absmax
            return [((a1,), nf4_values(x, a1.unsqueeze(1)))]

        (absmax,), margin, _ = _shrink_search(x, mse, (absmax,), trial)
    return absmax.reshape(-1, 1), margin


def nf4_quantize(x: torch.Tensor, absmax: torch.Tensor):
    """ckpt's NF4 rule (module docstring): returns (code, q, margin) for x [N, 1], absmax [N, 1].
    margin = distance of x/absmax to the nearest midpoint between neighbouring table entries
    (absolute, in units of the group absmax), inf where absmax == 0."""
    table = nf4_table(x.dtype)
    zero_group = absmax == 0
    v = x / torch.where(zero_group, torch.ones_like(absmax), absmax)
    dist = (v - table.reshape(1, -1)).abs()                  # [N, 16]
    code = torch.zeros_like(v, dtype=torch.long)
    best = dist[:, 0:1].clone()
    for i in range(1, 16):  # strict '<': equal distances keep the lower index
        better = dist[:, i:i + 1] < best
        code = torch.where(better, torch.full_like(code, i), code)
        best = torch.where(better, dist[:, i:i + 1], best)
    code = torch.where(zero_group, torch.full_like(code, NF4_ZERO_CODE), code)
    q = table[code] * absmax
    mids = ((table[:-1].double() + table[1:].double()) / 2).reshape(1, -1)
    margin = (v.double() - mids).abs().min(1, keepdim=True)[0]
    margin = torch.where(zero_group, torch.full_like(margin, float("inf")), margin)
    return code.to(x.dtype), q, margin


# ---------------------------------------------------------------------------------------------
# Hessian inverse


def hessian_inverse(H: torch.Tensor, damp_percent: float, damp_auto_increment: float):
    """gptq.py:859-956. H is modified in place (its diagonal is left as the last attempt's
    floored diagonal, as in GPTQModel). Returns (U or None, damp, attempts, lam) where attempts lists
    every (floor attempt, damp, ok) tried and lam the f32 value added to the diagonal on success."""
    diag_view = H.diagonal()
    orig_diag = diag_view.clone()
    base_abs_max = torch.max(orig_diag.abs()).item()
    if not math.isfinite(base_abs_max) or base_abs_max == 0.0:
        base_abs_max = 1.0
    floor_base = base_abs_max * 1e-6
    attempts = []
    for attempt in range(7):                                 # max_floor_attempts = 6, :883-888
        if attempt == 0:
            current_diag = orig_diag
        else:
            floor_increment = floor_base * math.pow(10.0, attempt - 1)
            current_diag = torch.clamp(orig_diag + floor_increment, min=floor_increment)
        diag_view.copy_(current_diag)
        mean = torch.mean(current_diag)                      # :902
        damp = damp_percent
        while 0 < damp < 1:                                  # :909
            lam = damp * mean
            try:
                diag_view.add_(lam)                          # :911
                L = torch.linalg.cholesky(H)                 # :915
                U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)   # :916
                diag_view.copy_(current_diag)
                attempts.append({"floor_attempt": attempt, "damp": damp, "ok": True})
                return U, damp, attempts, {"lambda": lam.item(), "mean_diag": mean.item()}
            except torch.linalg.LinAlgError:
                diag_view.copy_(current_diag)
                attempts.append({"floor_attempt": attempt, "damp": damp, "ok": False})
                if damp_auto_increment != 0:
                    damp += damp_auto_increment              # :937
                else:
                    break
    return None, 1.0, attempts, None                         # :956


# ---------------------------------------------------------------------------------------------
# GPTQ


@dataclass
class GPTQOutput:
    codes: torch.Tensor      # [N, K] integer-valued (f32/f64), original column order
    scales: torch.Tensor     # [N, ng]
    zeros: torch.Tensor      # [N, ng] integer-valued (+0.0 normalised); 0 for nf4
    g_idx: torch.Tensor      # [K] int32
    Q: torch.Tensor          # [N, K] fake-quantized weight, original column order
    damp: float              # damp_percent that succeeded (1.0 if the inverse failed)
    perm: list | None        # processing order (desc_act), or None
    dead: list               # dead column indices
    attempts: list           # hessian_inverse attempts
    lam: dict | None         # λ added and mean(diag H) (f32 values, as Python floats)
    loss_sum: float          # torch.sum(Losses) (GPTQModel's avg_loss · nsamples)
    margin: torch.Tensor     # [N, K] f64 tie margins of the code decisions (original order)
    zero_margin: list = field(default_factory=list)   # per appended group: [N] f64 (asym only)
    mse_margin: list = field(default_factory=list)    # per appended group: [N] f64 (mse > 0 only)
    quirk_groups: int = 0    # (row, group) pairs where the symmetric xmin-stays-0 quirk applied
    all_zero_groups: int = 0  # (row, group) pairs with xmin = xmax = 0 (or absmax 0 for nf4)


def _params(x, mode, bits, sym, mse=0.0):
    if mode == "nf4":
        a, margin = nf4_params(x, mse)
        inf = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
        return (a, torch.zeros_like(a), {"quirk": torch.zeros_like(inf, dtype=torch.bool),
                                         "all_zero": (a == 0).reshape(-1), "zero_margin": inf, "mse_margin": margin})
    return find_params(x, bits, sym, mse)


def _quant(x, p, mode, bits):
    if mode == "nf4":
        return nf4_quantize(x, p[0])
    return quantize_int(x, p[0], p[1], bits)


def gptq(W: torch.Tensor, H: torch.Tensor, *, bits: int = 4, group_size: int = 128, sym: bool = True,
         act_order: bool = False, static_groups: bool = False, damp_percent: float = 0.01,
         damp_auto_increment: float = 0.01, blocksize: int = 128, mode: str = "int",
         dtype: torch.dtype = torch.float32, inverse_dtype: torch.dtype | None = None,
         mse: float = 0.0) -> GPTQOutput:
    """GPTQModel's GPTQ.quantize (see the module docstring). W [N, K], H [K, K]; neither is modified.
    dtype: the arithmetic (float32 = GPTQModel). inverse_dtype: the dtype in which H's damped
    inverse Cholesky factor is computed (default dtype), then cast to dtype; the goldens script uses
    float64 to estimate how far an implementation with an f64 inverse may drift."""
    if mode not in ("int", "nf4"):
        raise ValueError(f"unknown mode {mode!r}")
    N, K = W.shape
    G = group_size
    if mode == "nf4":
        bits = 4
        if G <= 0 or K % G:
            raise ValueError(f"nf4 needs group_size > 0 dividing K={K}, got {G}")
        if act_order and not static_groups:
            raise ValueError("nf4 with act_order needs static_groups")
    inverse_dtype = inverse_dtype or dtype

    W = W.to(dtype).clone()                                  # clone_module().float(), :343
    H = H.to(dtype).clone()
    base = _params(W, mode, bits, sym, mse)                  # :1010, before dead columns

    dead = torch.diag(H) == 0                                # :1015
    H[dead, dead] = 1                                        # :1016
    W[:, dead] = 0                                           # :1017

    scales, zeros, zmargins, mmargins = [], [], [], []
    quirk_groups = all_zero_groups = 0
    now_idx = 1                                              # :1022
    groups = None
    if static_groups and G != -1:                            # :1024-1034
        groups = []
        for i in range(0, K, G):
            p = _params(W[:, i:i + G], mode, bits, sym, mse)
            scales.append(p[0])
            zeros.append(p[1])
            zmargins.append(p[2]["zero_margin"])
            mmargins.append(p[2]["mse_margin"])
            quirk_groups += int(p[2]["quirk"].sum())
            all_zero_groups += int(p[2]["all_zero"].sum())
            groups.append(p)

    perm = invperm = None
    if act_order:                                            # :1036-1052
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)

    Hi = H.to(inverse_dtype)
    U, damp, attempts, lam = hessian_inverse(Hi, damp_percent, damp_auto_increment)   # :1084
    if U is not None:
        U = U.to(dtype)

    Losses = torch.zeros_like(W)
    Q = torch.zeros_like(W)
    C = torch.zeros_like(W)
    M = torch.zeros_like(W, dtype=torch.float64)
    cur = base
    if G == -1:
        quirk_groups += int(base[2]["quirk"].sum())
        all_zero_groups += int(base[2]["all_zero"].sum())
    block = blocksize
    if U is None and G and G > 0:                            # :1204-1208
        block = G
    for i1 in range(0, K, block):                            # :1210
        i2 = min(i1 + block, K)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()                             # :1214
        Q1 = torch.zeros_like(W1)
        C1 = torch.zeros_like(W1)
        M1 = torch.zeros_like(W1, dtype=torch.float64)
        Err1 = torch.zeros_like(W1) if U is not None else None
        Losses1 = torch.zeros_like(W1) if U is not None else None
        if U is not None:
            U1 = U[i1:i2, i1:i2]                             # :1220
        for i in range(count):
            c = i1 + i
            w = W1[:, i]                                     # :1223
            if U is not None:
                d = U1[i, i]                                 # :1225
            if G != -1:
                if not static_groups:
                    if c % G == 0:                           # :1229-1230 (global W)
                        cur = _params(W[:, c:c + G], mode, bits, sym, mse)
                        quirk_groups += int(cur[2]["quirk"].sum())
                        all_zero_groups += int(cur[2]["all_zero"].sum())
                    if (c // G) - now_idx == -1:             # :1232-1235
                        scales.append(cur[0])
                        zeros.append(cur[1])
                        zmargins.append(cur[2]["zero_margin"])
                        mmargins.append(cur[2]["mse_margin"])
                        now_idx += 1
                else:                                        # :1236-1241
                    idx = perm[c].item() if act_order else c
                    cur = groups[idx // G]
            u, q, margin = _quant(w.unsqueeze(1), cur, mode, bits)   # :1243
            q = q.flatten()
            Q1[:, i] = q                                     # :1244
            C1[:, i] = u.flatten()
            M1[:, i] = margin.flatten()
            if U is not None:
                Losses1[:, i] = (w - q) ** 2 / d ** 2        # :1246
                err1 = (w - q) / d                           # :1247
                W1[:, i:] -= err1.unsqueeze(1).matmul(U1[i, i:].unsqueeze(0))   # :1248
                Err1[:, i] = err1                            # :1249
        Q[:, i1:i2] = Q1                                     # :1251
        C[:, i1:i2] = C1
        M[:, i1:i2] = M1
        if U is not None:
            Losses[:, i1:i2] = Losses1 / 2                   # :1253
            W[:, i2:] -= Err1.matmul(U[i1:i2, i2:])          # :1254

    loss_sum = torch.sum(Losses).item() if U is not None else float("nan")   # :1266

    gs = G if G != -1 else K                                 # :1289
    if static_groups and act_order:                          # :1291-1294
        g_idx = [perm[i].item() // gs for i in range(K)]
    else:
        g_idx = [i // gs for i in range(K)]
    g_idx = torch.tensor(g_idx, dtype=torch.int32)           # :1296
    if act_order:                                            # :1298-1301
        Q = Q[:, invperm]
        C = C[:, invperm]
        M = M[:, invperm]
        g_idx = g_idx[invperm]

    if scales == []:                                         # :1331-1333
        scales.append(base[0])
        zeros.append(base[1])
        zmargins.append(base[2]["zero_margin"])
        mmargins.append(base[2]["mse_margin"])
    scale = torch.cat(scales, dim=1)                         # :1335-1336
    zero = torch.cat(zeros, dim=1) + 0.0                     # + 0.0: -0.0 -> +0.0

    return GPTQOutput(codes=C, scales=scale, zeros=zero, g_idx=g_idx, Q=Q, damp=damp,
                      perm=None if perm is None else perm.tolist(),
                      dead=torch.nonzero(dead).flatten().tolist(), attempts=attempts, lam=lam,
                      loss_sum=loss_sum, margin=M, zero_margin=zmargins, mse_margin=mmargins, quirk_groups=quirk_groups,
                      all_zero_groups=all_zero_groups)


def rtn(W: torch.Tensor, *, bits: int = 4, group_size: int = 128, sym: bool = True, mode: str = "int",
        dtype: torch.dtype = torch.float32, mse: float = 0.0) -> torch.Tensor:
    """Round-to-nearest with the same quantizer, groups of the original W in original order: the
    baseline GPTQ must beat. Returns Q [N, K]."""
    W = W.to(dtype)
    K = W.shape[1]
    G = group_size if group_size != -1 else K
    Q = torch.zeros_like(W)
    for g in range(0, K, G):
        x = W[:, g:g + G]
        p = _params(x, mode, bits, sym, mse)
        for j in range(x.shape[1]):
            Q[:, g + j] = _quant(x[:, j:j + 1], p, mode, bits)[1].flatten()
    return Q


def dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
               mode: str = "int") -> torch.Tensor:
    """Q from the stored tensors: scale·(u − z) for integers, table[u]·absmax for nf4, with the
    group of column k = g_idx[k]. Bit-identical to gptq()'s Q (the same f32 operations)."""
    gi = g_idx.long()
    s = scales[:, gi]
    if mode == "nf4":
        return nf4_table(s.dtype)[codes.long()] * s
    return s * (codes - zeros[:, gi])


def weighted_error(W: torch.Tensor, Q: torch.Tensor, H: torch.Tensor) -> float:
    """trace((W−Q) H (W−Q)ᵀ) / trace(W H Wᵀ) in f64."""
    W, Q, H = W.double(), Q.double(), H.double()
    D = W - Q
    return (torch.trace(D @ H @ D.T) / torch.trace(W @ H @ W.T)).item()
