"""Losses the seeds train with: SimCLR's NT-Xent and Gen-SIS's disentanglement losses (seed 003).

Gen-SIS's ``alpha`` is the weight of the primary image (Alg. 1: ``alpha * teach_1 + (1 - alpha) *
teach_2``; Eq. 8: alpha on the f_1 term). Here it is called ``primary_weight``, the name genview's
stores use too (manifest column and sample json ``primary_weights``), so pass the triplet's
``primary_weight``. (Format v1 stores wrote the secondary's weight as ``alpha``; the trainer
client converts those on reading.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Seed 000, Table 6: SimCLR's contrastive temperature.
SIMCLR_TEMPERATURE = 0.2
#: DINO's defaults (student 0.1; teacher 0.04 warmed up to 0.07), which Gen-DINO keeps.
DINO_STUDENT_TEMPERATURE = 0.1
DINO_TEACHER_TEMPERATURE = 0.04


def _weight_column(primary_weight: float | torch.Tensor, rows: int, like: torch.Tensor) -> torch.Tensor:
    """Return the per-row weight as a [rows, 1] tensor (a scalar is repeated); checks it lies in [0, 1]."""
    w = torch.as_tensor(primary_weight, dtype=like.dtype, device=like.device).reshape(-1)
    if w.numel() == 1:
        w = w.expand(rows)
    if w.numel() != rows:
        raise ValueError(f"primary_weight has {w.numel()} values for a batch of {rows}")
    if bool(((w < 0) | (w > 1)).any()):
        raise ValueError("primary_weight must lie in [0, 1]")
    return w.reshape(rows, 1)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = SIMCLR_TEMPERATURE) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2B embeddings must pick its pair among the other 2B - 1 (cosine / temperature)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be [B, D], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.t() / temperature
    logits = logits.masked_fill(torch.eye(2 * batch, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(logits, targets)


def disentanglement_loss_dino(
    student_interp: torch.Tensor,
    teacher_primary: torch.Tensor,
    teacher_secondary: torch.Tensor,
    primary_weight: float | torch.Tensor,
    center: torch.Tensor | None = None,
    student_temperature: float = DINO_STUDENT_TEMPERATURE,
    teacher_temperature: float = DINO_TEACHER_TEMPERATURE,
) -> torch.Tensor:
    """Gen-SIS disentanglement loss for DINO-style teachers (seed 003, Algorithm 1).

    The teacher's raw outputs for the primary and secondary views are mixed with the primary's
    weight (``primary_weight * t1 + (1 - primary_weight) * t2``), then centred and sharpened like
    DINO's teacher; the student's sharpened output for the interpolated view must match it:
    ``-(softmax((t_mix - c) / tpt) * log_softmax(s_int / tps)).sum(1).mean()``. Teacher outputs
    are detached. All logits are [B, D]; ``center`` is DINO's running centre [D] (zeros if None).
    """
    if not student_interp.shape == teacher_primary.shape == teacher_secondary.shape or student_interp.dim() != 2:
        raise ValueError("student_interp, teacher_primary and teacher_secondary must all be [B, D] of one shape")
    w = _weight_column(primary_weight, student_interp.shape[0], student_interp)
    mixed = w * teacher_primary.detach() + (1 - w) * teacher_secondary.detach()
    if center is not None:
        mixed = mixed - center.detach().reshape(1, -1)
    teacher = F.softmax(mixed / teacher_temperature, dim=1)
    log_student = F.log_softmax(student_interp / student_temperature, dim=1)
    return -(teacher * log_student).sum(dim=1).mean()


def disentanglement_loss_simclr(
    f_interp: torch.Tensor,
    f_primary: torch.Tensor,
    f_secondary: torch.Tensor,
    primary_weight: float | torch.Tensor,
    temperature: float = SIMCLR_TEMPERATURE,
) -> torch.Tensor:
    """Gen-SIS disentanglement loss for SimCLR (seed 003, Eq. 8).

    For the interpolated image i, its primary and secondary are positives weighted by alpha and
    1 - alpha: ``-a log(e^{s(int,1)/t} / sum_k e^{s(int,k)/t}) - (1 - a) log(e^{s(int,2)/t} / sum_k ...)``,
    s = cosine similarity. "Every other image in the batch" is a negative: the sum over k runs over
    all primaries, secondaries and interpolated images of the batch except i's own interpolated
    image. Features are [B, D].
    """
    if not f_interp.shape == f_primary.shape == f_secondary.shape or f_interp.dim() != 2:
        raise ValueError("f_interp, f_primary and f_secondary must all be [B, D] of one shape")
    batch = f_interp.shape[0]
    w = _weight_column(primary_weight, batch, f_interp).reshape(-1)
    anchors = F.normalize(f_interp, dim=1)
    candidates = F.normalize(torch.cat([f_primary, f_secondary, f_interp]), dim=1)
    logits = anchors @ candidates.t() / temperature  # [B, 3B]
    rows = torch.arange(batch, device=f_interp.device)
    own = torch.zeros_like(logits, dtype=torch.bool)
    own[rows, 2 * batch + rows] = True
    logits = logits.masked_fill(own, float("-inf"))  # an image is not its own negative
    log_prob = F.log_softmax(logits, dim=1)
    return -(w * log_prob[rows, rows] + (1 - w) * log_prob[rows, batch + rows]).mean()
