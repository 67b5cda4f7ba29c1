"""From whatever a pretraining loader yields to the two augmented views (T, T') on the device.

Three kinds of batch, one per data path:
- uint8 (B, 3, H, W): an in-memory dataset (digits, CIFAR, STL-10); each view's random resized
  crop is drawn and resampled on the device by `BatchAugment`;
- uint8 (B, 2, 3, S, S): ImageFolder with the CPU decoder; both crops were cut from the full
  image by the loader workers, the rest of T / T' runs here;
- a `collate_jpeg` dict: ImageFolder with the GPU decoder; decoded and cropped here first.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from byol_ray.learn.data.augment import BatchAugment, ViewParams
from byol_ray.learn.data.gpu_decode import decode_crops


class ViewPair(nn.Module):
    """Loader batch -> (view T, view T'), float32 normalised (B, 3, S, S), on this module's
    device."""

    def __init__(self, views: tuple[ViewParams, ViewParams], image_size: int, mean, std):
        super().__init__()
        self.t = BatchAugment(views[0], image_size, mean, std)
        self.t_prime = BatchAugment(views[1], image_size, mean, std)

    @torch.no_grad()
    def forward(self, batch: Tensor | dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Move the batch to the device (decoding it first if it is JPEG bytes), augment it."""
        device = self.t.mean.device
        if isinstance(batch, dict):
            crops = decode_crops(batch, self.t.image_size, device)
        else:
            batch = batch.to(device, non_blocking=True)
            if batch.ndim == 4:
                return self.t(batch), self.t_prime(batch)
            crops = batch
        return self.t(crops[:, 0], crop=False), self.t_prime(crops[:, 1], crop=False)
