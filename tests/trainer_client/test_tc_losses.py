"""Gen-SIS disentanglement losses and NT-Xent on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genview.trainer_client.losses import disentanglement_loss_dino, disentanglement_loss_simclr, nt_xent_loss


def test_dino_loss_uniform_student_is_log_d():
    # A uniform student gives -sum(t * log(1/D)) = log D whatever the teacher.
    student = torch.zeros(2, 4)
    teacher1, teacher2 = torch.randn(2, 4), torch.randn(2, 4)
    loss = disentanglement_loss_dino(student, teacher1, teacher2, 0.3)
    assert loss.item() == pytest.approx(math.log(4), abs=1e-6)


def test_dino_loss_hand_computed_mixture():
    # Teachers [2, 0] and [0, 2] mixed 50/50 give [1, 1]: a uniform target after sharpening.
    # Student logits [tps * ln 3, 0] -> softmax [3/4, 1/4]; loss = -(ln 0.75 + ln 0.25) / 2.
    tps = 0.1
    student = torch.tensor([[tps * math.log(3.0), 0.0]])
    loss = disentanglement_loss_dino(student, torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]]), 0.5,
                                     student_temperature=tps, teacher_temperature=0.04)
    assert loss.item() == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2, abs=1e-6)


def test_dino_loss_weight_one_is_the_plain_dino_term_with_center():
    torch.manual_seed(0)
    s, t1, t2, c = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5), torch.randn(5)
    expected = -(F.softmax((t1 - c) / 0.04, dim=1) * F.log_softmax(s / 0.1, dim=1)).sum(1).mean()
    got = disentanglement_loss_dino(s, t1, t2, torch.ones(3), center=c)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dino_loss_per_sample_weights_and_gradients():
    # Row-wise weights: row 0 takes teacher 1 only, row 1 teacher 2 only (T = 1 for both temperatures).
    s = torch.zeros(2, 2, requires_grad=True)
    t1 = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    t2 = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    loss = disentanglement_loss_dino(s, t1, t2, torch.tensor([1.0, 0.0]), student_temperature=1.0, teacher_temperature=1.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)  # uniform student
    loss.backward()
    # d/ds of -(t . log_softmax(s)) = softmax(s) - t = [0.5 - 0.75, 0.5 - 0.25] per row, / 2 for the mean.
    assert torch.allclose(s.grad, torch.tensor([[-0.125, 0.125], [-0.125, 0.125]]), atol=1e-6)
    assert t1.grad is None


def test_simclr_disentanglement_single_sample():
    # f_int = f_1 = e1, f_2 = e2; B = 1 so candidates are {f_1, f_2} (own interpolated image excluded).
    # tau = 1: loss = -a ln(e / (e + 1)) - (1 - a) ln(1 / (e + 1)).
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    a = 0.7
    loss = disentanglement_loss_simclr(e1, e1, e2, a, temperature=1.0)
    e = math.e
    assert loss.item() == pytest.approx(-a * math.log(e / (e + 1)) - (1 - a) * math.log(1 / (e + 1)), abs=1e-6)


def test_simclr_disentanglement_counts_other_images_as_negatives():
    # B = 2, orthogonal features, tau = 1, weight 1. Anchor 0 (f_int[0] = e1) scores its candidates
    # f_1 = [e1, e2], f_2 = [e3, e4], f_int[1] = e2 (its own f_int[0] excluded): sims 1, 0, 0, 0, 0,
    # so loss_0 = -ln(e / (e + 4)); anchor 1 is symmetric. Other samples' images are negatives.
    e1, e2, e3, e4 = torch.eye(4)
    f_int = torch.stack([e1, e2])
    f_1 = torch.stack([e1, e2])
    f_2 = torch.stack([e3, e4])
    loss = disentanglement_loss_simclr(f_int, f_1, f_2, 1.0, temperature=1.0)
    e = math.e
    # Anchor 1 (e2): f_1[1] = e2 (sim 1), f_1[0], f_2[0], f_2[1], f_int[0] at 0 -> same value.
    assert loss.item() == pytest.approx(-math.log(e / (e + 4)), abs=1e-6)


def test_simclr_disentanglement_rejects_bad_weights():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="primary_weight"):
        disentanglement_loss_simclr(x, x, x, 1.5)
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        disentanglement_loss_simclr(x, x, x, torch.tensor([0.1, 0.2, 0.3]))


def test_nt_xent_hand_computed():
    # Two pairs of identical orthogonal unit vectors, tau = 1: for each anchor, its pair at sim 1 and
    # two others at sim 0 -> loss = -ln(e / (e + 2)).
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = nt_xent_loss(z1, z1.clone(), temperature=1.0)
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 2)), abs=1e-6)
