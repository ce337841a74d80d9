"""FID and Inception Score for image generators, via torchmetrics, with no download at run time.

torchmetrics' default extractor is torch-fidelity's InceptionV3, whose weights it downloads on
first use; a job must not depend on that. So ``evaluate.feature_extractor`` names the extractor's
file, loaded here:

- a ``torch.export`` program (``.pt2``, ``torch.export.save``; export it in eval mode with a
  dynamic batch dimension) or a TorchScript archive (``torch.jit.save``; deprecated by torch but
  still common), taking uint8 images ``(N, 3, H, W)`` (what torch-fidelity's Inception takes) and
  returning ``(N, D)``. FID
  uses those features; IS treats the same outputs as class logits, so give a classifier (e.g.
  Inception's logits) if you want a meaningful IS;
- otherwise (a plain ``state_dict`` file, e.g. ``pt_inception-2015-12-05-6726825d.pth``), when
  ``torch-fidelity`` is installed, torchmetrics' own InceptionV3 built from those weights
  (``feature_extractor_weights_path``): 2048-d pool features for FID, logits for IS.

Images (``evaluate.generated_images`` / ``evaluate.real_images``): a folder of PNG / JPEG files
(resized to the first image's size) or a ``.npy`` / ``.pt`` uint8 array ``(N, 3, H, W)`` or
``(N, H, W, 3)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import JobError

log = logging.getLogger("genai")

# Below this many images per set the FID estimate is unstable: the 2048-d Inception feature
# covariance is rank-deficient with fewer samples than dimensions, and FID is biased upwards at
# small N (Chong & Forsyth 2020, "Effectively Unbiased FID"). pytorch-fid's README says the same.
MIN_STABLE_FID_SAMPLES = 2048
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_images(location: str | Path, field: str) -> Any:
    """uint8 ``(N, 3, H, W)`` tensor from a folder of images or a ``.npy`` / ``.pt`` array."""
    import numpy as np
    import torch

    path = Path(location)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise JobError(f"no {'/'.join(IMAGE_SUFFIXES)} files in {path}", field)
        from PIL import Image

        first = Image.open(files[0]).convert("RGB")
        arrays = [np.asarray(first)]
        arrays += [np.asarray(Image.open(f).convert("RGB").resize(first.size)) for f in files[1:]]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if not path.is_file():
        raise JobError(f"{path} does not exist (a folder of images, .npy or .pt)", field)
    if path.suffix == ".npy":
        images = torch.from_numpy(np.load(path))
    elif path.suffix in (".pt", ".pth"):
        images = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise JobError(f"{path}: expected a folder of images, a .npy or a .pt file", field)
    if images.dim() != 4 or 3 not in (images.shape[1], images.shape[-1]):
        raise JobError(f"{path}: expected (N, 3, H, W) or (N, H, W, 3), got {tuple(images.shape)}",
                       field)  # fmt: skip
    if images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    if images.dtype != torch.uint8:
        raise JobError(f"{path}: expected uint8 pixels (0-255), got {images.dtype}", field)
    return images.contiguous()


def load_extractor(path: str | Path) -> tuple[Any, Any]:
    """``(fid_feature, is_feature)`` arguments for torchmetrics from a weights file.

    Raises:
        JobError: missing file, or a state_dict without torch-fidelity installed.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise JobError(f"{path} does not exist", "evaluate.feature_extractor")
    if path.suffix == ".pt2":
        # Exported in eval mode by its author; an exported module refuses .eval() itself.
        module = torch.export.load(str(path)).module()
        return module, module
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
        return module, module
    except RuntimeError:
        pass  # not TorchScript: maybe a torch-fidelity Inception state_dict
    import importlib.util

    if importlib.util.find_spec("torch_fidelity") is None:
        raise JobError(f"{path} is not a TorchScript / torch.export file, and using it as "
                       "InceptionV3 weights needs torch-fidelity (pip install torch-fidelity)",
                       "evaluate.feature_extractor")  # fmt: skip
    from torchmetrics.image.fid import NoTrainInceptionV3

    fid = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                             feature_extractor_weights_path=str(path))  # fmt: skip
    logits = NoTrainInceptionV3(name="inception-v3-compat", features_list=["logits_unbiased"],
                                feature_extractor_weights_path=str(path))  # fmt: skip
    return fid, logits


def image_scores(generated: Any, real: Any | None, extractor_path: str | Path, *,
                 batch_size: int = 64, splits: int = 10) -> dict:  # fmt: skip
    """FID (when ``real`` is given) and Inception Score of ``generated`` (uint8 NCHW tensors).

    Returns:
        ``{"fid", "inception_score_mean", "inception_score_std", "generated_images",
        "real_images", "feature_dim", "warnings"}``.
    """
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    fid_feature, is_feature = load_extractor(extractor_path)
    warnings: list[str] = []
    result: dict = {"generated_images": len(generated), "warnings": warnings}
    with torch.no_grad():
        inception = InceptionScore(feature=is_feature, splits=max(1, min(splits, len(generated))))
        for chunk in generated.split(batch_size):
            inception.update(chunk)
        mean, std = inception.compute()
        result["inception_score_mean"], result["inception_score_std"] = mean.item(), std.item()
        if real is None:
            return result
        n = min(len(generated), len(real))
        if n < 2:
            raise JobError("FID needs at least 2 images in each set", "evaluate.real_images")
        fid = FrechetInceptionDistance(feature=fid_feature, input_img_size=tuple(real.shape[1:]))
        for images, is_real in ((real, True), (generated, False)):
            for chunk in images.split(batch_size):
                fid.update(chunk, real=is_real)
        result["fid"] = fid.compute().item()
        result["real_images"] = len(real)
        result["feature_dim"] = int(fid.real_features_sum.numel())
    if n < MIN_STABLE_FID_SAMPLES:
        warnings.append(f"FID from {n} images per set is unstable (biased and high-variance): "
                        f"use at least {MIN_STABLE_FID_SAMPLES}, so that the feature covariance is "
                        "well estimated; compare FIDs only at equal sample counts")  # fmt: skip
        log.warning(warnings[-1])
    return result
