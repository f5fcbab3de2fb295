"""The linear system of ROAD's imputation (:mod:`.road`), solved two ways with the same answer:

- :func:`solve_multigrid`, the fast path: conjugate gradients preconditioned by one geometric multigrid
  V-cycle, every loop compiled by numba (``cache=True``: compiled once per machine). Coarse grids halve each
  side (coarse point I sits on fine point 2I, bilinear interpolation P restricted to the unknowns, which are
  the removed pixels), coarse operators are Galerkin's ``P^T A P`` (9-point stencils), smoothing is one
  Gauss-Seidel sweep forward before and one backward after the coarse correction (so the V-cycle is
  symmetric), the coarsest grid (at most 16 points) is solved by a pseudo-inverse. It stops when every
  channel's residual is at most :data:`RTOL` times its right-hand side (2-norms; 9-12 iterations on photos,
  within 1.1e-7 grey levels of LU's values); if it has not after :data:`MAX_ITERATIONS` it gives None and
  the caller solves by LU.
- :func:`solve_lu`, the reference: SuperLU with a nested-dissection ordering and diagonal pivots (SciPy).

:func:`solve` takes the fast path where numba is installed and not switched off (``GRADCAM_NO_JIT=1``,
the same switch as the render kernels') and more than :data:`SMALL` pixels are removed, else LU. numba is
imported only when such a system is solved.
"""
from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np

#: each channel's residual 2-norm, relative to its right-hand side's, at which the fast path stops
RTOL = 1e-10
#: iterations after which the fast path gives up (it needs 9-12 on photos; LU takes over)
MAX_ITERATIONS = 100
#: at most this many removed pixels: LU is as cheap as the fast path or cheaper (224x224, benchmarks/road.py)
SMALL = 20000
#: the largest grid solved directly (pseudo-inverse), in points
COARSEST = 16


def system(image: np.ndarray, removed: np.ndarray, weights) -> tuple[np.ndarray, np.ndarray]:
    """The system on the whole grid: stencil float64 (H, W, 9) (entry 3 (dr + 1) + dc + 1 couples a pixel to
    its neighbour (dr, dc); kept pixels are identity rows) and right-hand side float64 (H, W, C) (0 at kept
    pixels). Removed pixel i: ``total_i x_i - sum_j w_ij x_j = sum_k w_ik image_k``, j removed and k kept
    in-image neighbours, ``total_i`` the sum of i's in-image neighbours' weights."""
    from scipy import ndimage

    height, width = removed.shape
    kernel = np.zeros((3, 3))
    for down, right, weight in weights:
        kernel[down + 1, right + 1] = weight
    # correlate: out[r, c] = sum of kernel[dr + 1, dc + 1] in[r + dr, c + dc], 0 off the image
    known = np.where(removed[..., None], 0.0, image.astype(np.float64))
    rhs = ndimage.correlate(known, kernel[..., None], mode="constant")
    total = ndimage.correlate(np.ones((height, width)), kernel, mode="constant")
    open_ = np.pad(removed, 1)
    coupled = np.stack([open_[k // 3: k // 3 + height, k % 3: k % 3 + width] for k in range(9)], -1)
    stencil = np.where(coupled & removed[..., None], -kernel.ravel(), 0.0)
    stencil[..., 4] = np.where(removed, total, 1.0)
    rhs[~removed] = 0.0
    return stencil, rhs


def solve_lu(stencil: np.ndarray, rhs: np.ndarray, removed: np.ndarray, order: str = "dissection") -> np.ndarray:
    """float64 (n, C): the removed pixels' values (row-major order) by sparse LU of :func:`system`'s rows,
    the unknowns in :func:`dissection`'s order (1.5-1.8x less CPU at 224x224 than ``order="mmd"``,
    SuperLU's own minimum-degree ordering, the solver before)."""
    from scipy import sparse
    from scipy.sparse.linalg import splu

    height, width = removed.shape
    count = int(removed.sum())
    rank = np.empty(count, np.int64)
    if order == "mmd":
        rank[:] = np.arange(count)
    else:
        rank[np.argsort(dissection(height, width)[removed], kind="stable")] = np.arange(count)
    index = np.full((height + 2, width + 2), -1, np.int64)
    index[1:-1, 1:-1][removed] = rank
    columns = np.stack([index[k // 3: k // 3 + height, k % 3: k % 3 + width][removed] for k in range(9)], 1)
    values = stencil[removed]
    coupled = (columns >= 0) & (values != 0)
    rows = np.broadcast_to(rank[:, None], columns.shape)
    # an M-matrix: SuperLU keeps the diagonal pivots and the given symmetric order
    matrix = sparse.csc_matrix((values[coupled], (rows[coupled], columns[coupled])), shape=(count, count))
    factors = splu(matrix, permc_spec="MMD_AT_PLUS_A" if order == "mmd" else "NATURAL", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})
    ordered = np.empty((count, rhs.shape[2]))
    ordered[rank] = rhs[removed]
    return factors.solve(ordered)[rank]


@lru_cache(maxsize=8)
def dissection(height: int, width: int, leaf: int = 4) -> np.ndarray:
    """int64 (H, W): each pixel's place in a nested-dissection order of the grid: the longer side's middle
    line last, each half before it, recursively, blocks of at most ``leaf`` x ``leaf`` in reading order."""
    key = np.zeros((height, width), np.int64)
    stack, done = [(0, height, 0, width, False)], 0
    while stack:  # a depth-first walk: (rows, columns, whether only the separator is left to number)
        r0, r1, c0, c1, separator = stack.pop()
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            continue
        if separator or h * w <= leaf * leaf:
            key[r0:r1, c0:c1] = done + np.arange(h * w).reshape(h, w)
            done += h * w
        elif h >= w:
            middle = r0 + h // 2
            stack += [(middle, middle + 1, c0, c1, True), (middle + 1, r1, c0, c1, False), (r0, middle, c0, c1, False)]
        else:
            middle = c0 + w // 2
            stack += [(r0, r1, middle, middle + 1, True), (r0, r1, middle + 1, c1, False), (r0, r1, c0, middle, False)]
    key.setflags(write=False)
    return key


_BROKEN = False


def available() -> bool:
    """Whether :func:`solve` takes the fast path: numba installed and not switched off."""
    from ..inputs import resample_fast

    return resample_fast.available()


def solve(stencil: np.ndarray, rhs: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """float64 (n, C): :func:`solve_multigrid`'s answer where it is available, the system is not small
    (:data:`SMALL`) and it converges, else LU's. A numba that fails to compile is tried once per process."""
    global _BROKEN
    if available() and not _BROKEN and removed.sum() > SMALL:
        try:
            values = solve_multigrid(stencil, rhs, removed, RTOL, MAX_ITERATIONS)
        except Exception:  # numba missing a piece, a failed compile: the reference solver still works
            _BROKEN, values = True, None
        if values is not None:
            return values
    return solve_lu(stencil, rhs, removed)


def _hierarchy(stencil: np.ndarray, active: np.ndarray, channels: int, jit: SimpleNamespace) -> tuple[list, tuple]:
    """[(stencil, 1 / its diagonal, active, step_r, step_c, buffers)] from fine to coarse, and (the
    coarsest stencil, its pseudo-inverse). Buffers: float64 (h + 2, w + 2, C), a V-cycle's x and residual."""
    levels = []
    while True:
        height, width = active.shape
        if height * width <= COARSEST:
            return levels, (stencil, _pseudo_inverse(stencil))
        step_r, step_c = (2 if height >= 3 else 1), (2 if width >= 3 else 1)
        buffers = np.zeros((2, height + 2, width + 2, channels))
        levels.append((stencil, 1.0 / stencil[..., 4], active, step_r, step_c, buffers))
        stencil = jit.galerkin(stencil, active, height // step_r + step_r - 1, width // step_c + step_c - 1,
                               step_r, step_c)
        active = stencil[..., 4] > 0  # a point without an active child: an identity row, never interpolated
        stencil[~active, 4] = 1.0


def _pseudo_inverse(stencil: np.ndarray) -> np.ndarray:
    """The coarsest grid's matrix (symmetric, semi-definite where coarse points share their only fine
    points) inverted on its range: float64 (n, n), n = h w."""
    height, width = stencil.shape[:2]
    index = np.arange(height * width).reshape(height, width)
    matrix = np.zeros((height * width,) * 2)
    for k in range(9):
        dr, dc = k // 3 - 1, k % 3 - 1
        rows, columns = slice(max(0, -dr), min(height, height - dr)), slice(max(0, -dc), min(width, width - dc))
        target = index[rows.start + dr: rows.stop + dr, columns.start + dc: columns.stop + dc]
        matrix[index[rows, columns].ravel(), target.ravel()] = stencil[rows, columns, k].ravel()
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    keep = values > values.max() * 1e-13
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def _vcycle(levels: list, coarsest: tuple, rhs: np.ndarray, jit: SimpleNamespace, depth: int = 0) -> np.ndarray:
    """One V-cycle from zero on level ``depth`` (symmetric: Gauss-Seidel forward before, backward after);
    the answer is the level's buffer, overwritten by the next V-cycle."""
    if depth == len(levels):
        out = np.zeros_like(rhs)
        inner = rhs[1:-1, 1:-1]
        out[1:-1, 1:-1] = (coarsest[1] @ inner.reshape(-1, rhs.shape[2])).reshape(inner.shape)
        return out
    stencil, inverse, active, step_r, step_c, (x, residual) = levels[depth]
    jit.sweep_from_zero(stencil, inverse, rhs, x, residual, active)  # x's inactive points stay 0
    below = levels[depth + 1][5][1] if depth + 1 < len(levels) else np.empty(
        (coarsest[0].shape[0] + 2, coarsest[0].shape[1] + 2, rhs.shape[2]))
    coarse = np.empty_like(below)
    jit.restrict(residual, active, coarse, step_r, step_c)
    jit.interpolate(_vcycle(levels, coarsest, coarse, jit, depth + 1), active, x, step_r, step_c)
    jit.smooth(stencil, inverse, rhs, x, active, False)
    return x


def solve_multigrid(stencil: np.ndarray, rhs: np.ndarray, removed: np.ndarray,
                    rtol: float = RTOL, max_iterations: int = MAX_ITERATIONS) -> np.ndarray | None:
    """float64 (n, C), the removed pixels' values, by multigrid-preconditioned conjugate gradients on
    :func:`system`'s grid (each channel its own step sizes, 4 at a time); None where it has not converged."""
    from .road_kernels import LANES, compiled

    jit = compiled()
    rows, columns = np.flatnonzero(removed.any(axis=1)), np.flatnonzero(removed.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1))  # the rest is not coupled
    stencil, removed = np.ascontiguousarray(stencil[box]), np.ascontiguousarray(removed[box])
    levels, coarsest = _hierarchy(stencil, removed, LANES, jit)
    out = np.empty((int(removed.sum()), rhs.shape[2]))
    for first in range(0, rhs.shape[2], LANES):
        group = rhs[box][..., first:first + LANES]
        padded = np.zeros((group.shape[0] + 2, group.shape[1] + 2, LANES))
        padded[1:-1, 1:-1, :group.shape[2]] = group
        x = _conjugate_gradients(levels, coarsest, stencil, removed, padded, rtol, max_iterations, jit)
        if x is None:
            return None
        out[:, first:first + LANES] = x[1:-1, 1:-1][removed][:, :group.shape[2]]
    return out


def _conjugate_gradients(levels: list, coarsest: tuple, stencil: np.ndarray, removed: np.ndarray,
                         residual: np.ndarray, rtol: float, max_iterations: int, jit) -> np.ndarray | None:
    """x float64 (H + 2, W + 2, LANES) with A x = rhs (given as ``residual``, overwritten), or None."""
    lanes = residual.shape[2]
    x, product, zero = np.zeros_like(residual), np.zeros_like(residual), np.zeros_like(residual)
    flat = [array.reshape(-1, lanes) for array in (x, residual, product)]
    rz, curvature, squares = np.empty(lanes), np.empty(lanes), np.empty(lanes)
    jit.dot(flat[1], flat[1], squares)
    goal = rtol ** 2 * squares
    direction = _vcycle(levels, coarsest, residual, jit).copy()
    flat_direction = direction.reshape(-1, lanes)
    jit.dot(flat[1], flat_direction, rz)
    for _ in range(max_iterations + 1):
        if np.all(squares <= goal):
            return x
        jit.residual(stencil, zero, direction, product, removed)  # -A p
        jit.dot(flat_direction, flat[2], curvature)
        step = np.divide(rz, -curvature, out=np.zeros(lanes), where=curvature < 0)
        jit.step(flat[0], flat_direction, flat[1], flat[2], step, squares)
        z = _vcycle(levels, coarsest, residual, jit).reshape(-1, lanes)
        rz_next = np.empty(lanes)
        jit.dot(flat[1], z, rz_next)
        jit.combine(z, flat_direction, np.divide(rz_next, rz, out=np.zeros(lanes), where=rz > 0))
        rz = rz_next
    return None
