"""Write tests/metrics/data/road_oracle.npz: pytorch-grad-cam's own ROAD code (``pytorch_grad_cam/metrics/
road.py`` and ``perturbation_confidence.py``) run on small fixed arrays, for tests/metrics/test_road.py.

It runs in a side environment, never gradcam's (torch is no dependency of gradcam), and imports no gradcam:

    python3 -m venv /work/oracle_venv
    /work/oracle_venv/bin/pip install torch==2.13.0 numpy scipy opencv-python-headless
    /work/oracle_venv/bin/pip install grad-cam==1.5.7 --no-deps
    /work/oracle_venv/bin/python tools/make_road_oracle.py

pytorch-grad-cam's package ``__init__`` imports every CAM (and torchvision); the metrics need only torch,
NumPy, SciPy and OpenCV, so the package is entered as a bare namespace and its metric modules loaded as
they are (torchvision, used only by the detection targets, is an empty stand-in). Noise is 0 everywhere
(``NoisyLinearImputer``'s default noise is set to 0) so that the results are deterministic.

What is saved (``i`` numbers the cases; removed = True where pytorch-grad-cam's mask is 0):
- ``impute_image_i`` float32 (H, W, 3), ``impute_removed_i`` bool (H, W), ``impute_result_i`` float32 (H, W, 3):
  ``NoisyLinearImputer(noise=0)`` on the image (as a (3, H, W) tensor) and the mask;
- ``mask_heatmap_i`` float32 (H, W), ``mask_morf_i`` / ``mask_lerf_i`` bool (P, H, W) at ``mask_percentiles``:
  the masks ``RemoveMostRelevantFirst`` / ``RemoveLeastRelevantFirst`` hand to their imputer;
- ``score_image_i``, ``score_heatmap_i``, ``score_weights_i`` float32 (K, 3 H W) and ``score_bias_i`` (K,) of a
  linear-softmax model over the (3, H, W) pixels, ``score_class_i``; ``score_morf_i`` / ``score_lerf_i`` (P,):
  ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst`` at each default percentile with the softmax target
  (the class's probability after imputation minus before), ``score_morf_average_i``, ``score_lerf_average_i``,
  ``score_combined_i``: ``ROADMostRelevantFirstAverage``, ``ROADLeastRelevantFirstAverage``, ``ROADCombined``.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "metrics" / "data" / "road_oracle.npz"
PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]
MASK_PERCENTILES = [0, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 100]


def load_reference():
    """pytorch-grad-cam's road and perturbation_confidence modules and its softmax target."""
    root = Path(importlib.util.find_spec("pytorch_grad_cam").origin).parent
    for name, folder in (("pytorch_grad_cam", root), ("pytorch_grad_cam.utils", root / "utils")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    from pytorch_grad_cam.metrics import perturbation_confidence, road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    road.NoisyLinearImputer.__init__.__defaults__ = (0.0, road.neighbors_weights)
    assert road.ROADMostRelevantFirst(50).perturbation.imputer.noise == 0.0
    return road, perturbation_confidence, ClassifierOutputSoftmaxTarget


def smooth_image(rng, height, width):
    """float32 (H, W, 3) in [0, 255]: random pixels averaged over 3 x 3, so imputation has a picture to follow."""
    noise = rng.random((height + 2, width + 2, 3))
    mean = sum(noise[i : i + height, j : j + width] for i in range(3) for j in range(3)) / 9
    return (mean * 255).astype(np.float32)


def impute_cases(rng):
    cases = []
    for height, width, share in ((16, 16, 0.3), (20, 24, 0.7), (16, 16, 0.95), (24, 20, 0.5)):
        cases.append((smooth_image(rng, height, width), rng.random((height, width)) < share))
    block = np.zeros((32, 32), bool)
    block[:10, 20:] = True  # touching two edges
    block[14:22, 6:13] = True  # inside
    cases.append((smooth_image(rng, 32, 32), block))
    corner = np.zeros((16, 16), bool)
    corner[0, 0] = corner[7, 9] = True
    cases.append((smooth_image(rng, 16, 16), corner))
    return cases


def heatmaps(rng):
    tied = rng.random((32, 32)).astype(np.float32)
    tied = np.round(tied * 8) / 8  # nine levels
    tied[rng.random((32, 32)) < 0.4] = 0  # a plateau of zeros as Grad-CAM's ReLU leaves
    return [rng.random((16, 16)).astype(np.float32), rng.random((24, 20)).astype(np.float32), tied.astype(np.float32)]


def main() -> None:
    road, perturbation, softmax_target = load_reference()
    rng = np.random.default_rng(20220201)
    out = {"mask_percentiles": np.array(MASK_PERCENTILES, np.float64), "percentiles": np.array(PERCENTILES, np.float64),
           "versions": np.array([f"{name} {importlib.metadata.version(name)}" for name in
                                 ("grad-cam", "torch", "numpy", "scipy")])}
    imputer = road.NoisyLinearImputer(noise=0.0)
    for i, (image, removed) in enumerate(impute_cases(rng)):
        tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())
        result = imputer(tensor, torch.from_numpy((~removed).astype(np.float32)))
        out.update({f"impute_image_{i}": image, f"impute_removed_{i}": removed,
                    f"impute_result_{i}": result.numpy().transpose(1, 2, 0).astype(np.float32)})

    def handed_mask(remover, percentile, heatmap):
        seen = remover(percentile, lambda image, mask: mask)(None, torch.from_numpy(heatmap))
        return np.asarray(seen) == 0  # pytorch-grad-cam: 1 kept, 0 imputed

    maps = heatmaps(rng)
    for i, heatmap in enumerate(maps):
        out[f"mask_heatmap_{i}"] = heatmap
        removers = (("morf", perturbation.RemoveMostRelevantFirst), ("lerf", perturbation.RemoveLeastRelevantFirst))
        for key, remover in removers:
            out[f"mask_{key}_{i}"] = np.stack([handed_mask(remover, p, heatmap) for p in MASK_PERCENTILES])

    for i, heatmap in enumerate(maps):
        height, width = heatmap.shape
        image = smooth_image(rng, height, width)
        classes = 5
        weights = (rng.standard_normal((classes, 3 * height * width)) * 2e-3).astype(np.float32)
        bias = rng.standard_normal(classes).astype(np.float32)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * height * width, classes))
        with torch.no_grad():
            model[1].weight.copy_(torch.from_numpy(weights))
            model[1].bias.copy_(torch.from_numpy(bias))
        model.eval()
        tensor = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
        category = int(i % classes)
        targets, cams = [softmax_target(category)], heatmap[None]
        morf = [road.ROADMostRelevantFirst(p)(tensor, cams, targets, model)[0] for p in PERCENTILES]
        lerf = [road.ROADLeastRelevantFirst(p)(tensor, cams, targets, model)[0] for p in PERCENTILES]
        out.update({f"score_image_{i}": image, f"score_heatmap_{i}": heatmap, f"score_weights_{i}": weights,
                    f"score_bias_{i}": bias, f"score_class_{i}": np.array(category),
                    f"score_morf_{i}": np.array(morf, np.float32), f"score_lerf_{i}": np.array(lerf, np.float32),
                    **{f"score_{key}_{i}": metric(PERCENTILES)(tensor, cams, targets, model) for key, metric in (
                        ("morf_average", road.ROADMostRelevantFirstAverage),
                        ("lerf_average", road.ROADLeastRelevantFirstAverage), ("combined", road.ROADCombined))}})
    for key, value in out.items():
        if np.asarray(value).dtype.kind == "f":
            assert np.all(np.isfinite(value)), f"{key} is not finite"
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUTPUT, **out)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes, {len(out)} arrays)")


if __name__ == "__main__":
    main()
