"""The loops of :func:`.road_solver.solve_multigrid`, plain Python until :func:`compiled` has numba compile
them (``cache=True``: once per machine; numba is imported there, never by importing this module).

Grids: a stencil is float64 (H, W, 9), entry 3 (dr + 1) + dc + 1 coupling a point to its neighbour (dr, dc)
(0 off the grid); vectors are float64 (H + 2, W + 2, :data:`LANES`) with a zero border. Coarse point I sits on fine
point 2 I along an axis whose step is 2 (the same point where it is 1); P interpolates bilinearly, only
into the fine grid's active points (the unknowns).
"""
from __future__ import annotations

import threading
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

#: channels per solve: vectors have 4 (the last ones 0 where an image has fewer), which the compiler turns
#: into one vector instruction per stencil entry (3 channels: 1.5x slower per sweep); _dot and _step spell them out
LANES = 4


def _parents(r, step):
    """The coarse points whose interpolation reaches fine point r along an axis: (first, its weight,
    second, its weight), the second's weight 0 where there is one."""
    if step == 1 or r % 2 == 0:
        return r // step, 1.0, r // step, 0.0
    return (r - 1) // 2, 0.5, (r + 1) // 2, 0.5


def _galerkin(stencil, active, rows, columns, step_r, step_c):
    """The coarse stencil float64 (rows, columns, 9) of P^T A P (all 0 at points without an active child)."""
    height, width = active.shape
    out = np.zeros((rows, columns, 9))
    for r in range(height):
        a0, aw0, a1, aw1 = _parents(r, step_r)
        for c in range(width):
            if not active[r, c]:
                continue
            b0, bw0, b1, bw1 = _parents(c, step_c)
            for k in range(9):
                value = stencil[r, c, k]
                rr, cc = r + k // 3 - 1, c + k % 3 - 1
                if value == 0.0 or rr < 0 or cc < 0 or rr >= height or cc >= width or not active[rr, cc]:
                    continue
                e0, ew0, e1, ew1 = _parents(rr, step_r)
                f0, fw0, f1, fw1 = _parents(cc, step_c)
                for i in range(4):
                    pr, wr = (a0, aw0) if i < 2 else (a1, aw1)
                    pc, wc = (b0, bw0) if i % 2 == 0 else (b1, bw1)
                    if wr == 0.0 or wc == 0.0:
                        continue
                    for j in range(4):
                        qr, vr = (e0, ew0) if j < 2 else (e1, ew1)
                        qc, vc = (f0, fw0) if j % 2 == 0 else (f1, fw1)
                        if vr != 0.0 and vc != 0.0:
                            out[pr, pc, 3 * (qr - pr + 1) + qc - pc + 1] += wr * wc * value * vr * vc
    return out


def _smooth(stencil, inverse, rhs, x, active, forward):
    """One Gauss-Seidel sweep over x, in place, at the active points, in reading order or backwards
    (``inverse``: 1 / the stencil's diagonal)."""
    height, width = stencil.shape[0], stencil.shape[1]
    for t in range(height):
        r = t if forward else height - 1 - t
        for u in range(width):
            c = u if forward else width - 1 - u
            if not active[r, c]:
                continue
            a0, a1, a2, a3 = stencil[r, c, 0], stencil[r, c, 1], stencil[r, c, 2], stencil[r, c, 3]
            a5, a6, a7, a8 = stencil[r, c, 5], stencil[r, c, 6], stencil[r, c, 7], stencil[r, c, 8]
            scale = inverse[r, c]
            for ch in range(LANES):
                x[r + 1, c + 1, ch] = scale * (
                    rhs[r + 1, c + 1, ch] - a0 * x[r, c, ch] - a1 * x[r, c + 1, ch] - a2 * x[r, c + 2, ch]
                    - a3 * x[r + 1, c, ch] - a5 * x[r + 1, c + 2, ch]
                    - a6 * x[r + 2, c, ch] - a7 * x[r + 2, c + 1, ch] - a8 * x[r + 2, c + 2, ch])


def _sweep_from_zero(stencil, inverse, rhs, x, out, active):
    """A forward Gauss-Seidel sweep from x = 0 (x's old values at active points are never read: the
    neighbours after a point are still 0 when it is swept), then out = rhs - A x: at each point minus what
    the neighbours swept after it took away, -(sum of their a_ij x_j). 8 products a point, not 9 + 9."""
    height, width = stencil.shape[0], stencil.shape[1]
    for r in range(height):
        for c in range(width):
            if active[r, c]:
                a0, a1, a2, a3, scale = stencil[r, c, 0], stencil[r, c, 1], stencil[r, c, 2], stencil[r, c, 3], inverse[r, c]
                for ch in range(LANES):
                    x[r + 1, c + 1, ch] = scale * (rhs[r + 1, c + 1, ch] - a0 * x[r, c, ch] - a1 * x[r, c + 1, ch]
                                                   - a2 * x[r, c + 2, ch] - a3 * x[r + 1, c, ch])
    for r in range(height):
        for c in range(width):
            if active[r, c]:
                a5, a6, a7, a8 = stencil[r, c, 5], stencil[r, c, 6], stencil[r, c, 7], stencil[r, c, 8]
                for ch in range(LANES):
                    out[r + 1, c + 1, ch] = -(a5 * x[r + 1, c + 2, ch] + a6 * x[r + 2, c, ch]
                                              + a7 * x[r + 2, c + 1, ch] + a8 * x[r + 2, c + 2, ch])


def _residual(stencil, rhs, x, out, active):
    """out = rhs - A x at the active points (elsewhere untouched)."""
    height, width = stencil.shape[0], stencil.shape[1]
    for r in range(height):
        for c in range(width):
            if not active[r, c]:
                continue
            a0, a1, a2, a3, a4 = stencil[r, c, 0], stencil[r, c, 1], stencil[r, c, 2], stencil[r, c, 3], stencil[r, c, 4]
            a5, a6, a7, a8 = stencil[r, c, 5], stencil[r, c, 6], stencil[r, c, 7], stencil[r, c, 8]
            for ch in range(LANES):
                out[r + 1, c + 1, ch] = (
                    rhs[r + 1, c + 1, ch] - a0 * x[r, c, ch] - a1 * x[r, c + 1, ch] - a2 * x[r, c + 2, ch]
                    - a3 * x[r + 1, c, ch] - a4 * x[r + 1, c + 1, ch] - a5 * x[r + 1, c + 2, ch]
                    - a6 * x[r + 2, c, ch] - a7 * x[r + 2, c + 1, ch] - a8 * x[r + 2, c + 2, ch])


def _restrict(fine, active, coarse, step_r, step_c):
    """coarse = P^T fine (P's rows at the active points)."""
    coarse[:] = 0.0
    for r in range(active.shape[0]):
        a0, aw0, a1, aw1 = _parents(r, step_r)
        for c in range(active.shape[1]):
            if active[r, c]:
                b0, bw0, b1, bw1 = _parents(c, step_c)
                for ch in range(LANES):
                    v = fine[r + 1, c + 1, ch]
                    coarse[a0 + 1, b0 + 1, ch] += aw0 * bw0 * v
                    coarse[a1 + 1, b0 + 1, ch] += aw1 * bw0 * v
                    coarse[a0 + 1, b1 + 1, ch] += aw0 * bw1 * v
                    coarse[a1 + 1, b1 + 1, ch] += aw1 * bw1 * v


def _interpolate(coarse, active, x, step_r, step_c):
    """x += P coarse."""
    for r in range(active.shape[0]):
        a0, aw0, a1, aw1 = _parents(r, step_r)
        for c in range(active.shape[1]):
            if active[r, c]:
                b0, bw0, b1, bw1 = _parents(c, step_c)
                for ch in range(LANES):
                    x[r + 1, c + 1, ch] += (aw0 * (bw0 * coarse[a0 + 1, b0 + 1, ch] + bw1 * coarse[a0 + 1, b1 + 1, ch])
                                            + aw1 * (bw0 * coarse[a1 + 1, b0 + 1, ch]
                                                     + bw1 * coarse[a1 + 1, b1 + 1, ch]))


def _dot(a, b, out):
    """out (LANES,) = each lane's dot product of a and b, float64 (N, LANES)."""
    s0 = s1 = s2 = s3 = 0.0
    for i in range(a.shape[0]):
        s0 += a[i, 0] * b[i, 0]
        s1 += a[i, 1] * b[i, 1]
        s2 += a[i, 2] * b[i, 2]
        s3 += a[i, 3] * b[i, 3]
    out[0], out[1], out[2], out[3] = s0, s1, s2, s3


def _step(x, direction, residual, product, step, squares):
    """x += step p and r += step product (product = -A p), squares = |r|^2 per lane; all (N, LANES)."""
    s0 = s1 = s2 = s3 = 0.0
    t0, t1, t2, t3 = step[0], step[1], step[2], step[3]
    for i in range(x.shape[0]):
        x[i, 0] += t0 * direction[i, 0]
        x[i, 1] += t1 * direction[i, 1]
        x[i, 2] += t2 * direction[i, 2]
        x[i, 3] += t3 * direction[i, 3]
        r0 = residual[i, 0] + t0 * product[i, 0]
        r1 = residual[i, 1] + t1 * product[i, 1]
        r2 = residual[i, 2] + t2 * product[i, 2]
        r3 = residual[i, 3] + t3 * product[i, 3]
        residual[i, 0], residual[i, 1], residual[i, 2], residual[i, 3] = r0, r1, r2, r3
        s0 += r0 * r0
        s1 += r1 * r1
        s2 += r2 * r2
        s3 += r3 * r3
    squares[0], squares[1], squares[2], squares[3] = s0, s1, s2, s3


def _combine(z, direction, beta):
    """direction = z + beta direction, (N, C), beta (C,)."""
    for i in range(z.shape[0]):
        for ch in range(LANES):
            direction[i, ch] = z[i, ch] + beta[ch] * direction[i, ch]


def compiled() -> SimpleNamespace:
    """The loops above compiled by numba (imported here, the first time), cached on disk (``cache=True``);
    one thread compiles, the others wait for it."""
    with _LOCK:
        return _compile()


_LOCK = threading.Lock()


@lru_cache(maxsize=None)
def _compile() -> SimpleNamespace:
    import numba

    global _parents  # the loops call it through this module's globals, so numba must compile it first
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    if not isinstance(_parents, numba.core.dispatcher.Dispatcher):
        _parents = jit(_parents)
    return SimpleNamespace(**{function.__name__.lstrip("_"): jit(function) for function in (
        _galerkin, _smooth, _sweep_from_zero, _residual, _restrict, _interpolate, _dot, _step, _combine)})
