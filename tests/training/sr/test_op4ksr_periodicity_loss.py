"""L_AP: high on a planted periodic grid, low on a natural image, the same statistic as the periodicity metric,
natural periodicity shared with the reference is not punished, and its gradient removes a planted grid."""

import numpy as np
import pytest
import torch
from op4ksr_fixtures import natural

from pipelines.bench.metrics import autocorrelation as metric_autocorrelation
from pipelines.bench.metrics import periodicity
from training.sr.periodicity_loss import ap_loss, autocorrelation, lag_weights


def _grid(img: np.ndarray, period: int = 32, amp: float = 8.0) -> np.ndarray:
    out = img.astype(np.float32)
    out[:, ::period] += amp
    out[::period, :] += amp
    return np.clip(out, 0, 255).astype(np.uint8)


def _t(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def test_grid_high_natural_low_and_same_statistic_as_the_metric():
    photo = natural(256, 256, 3)
    grid = _grid(photo)
    assert periodicity(grid).peak > 0.05 > 0.004 > periodicity(photo).peak  # the metric agrees on the inputs
    low, high = ap_loss(_t(photo)).item(), ap_loss(_t(grid)).item()
    assert high > 50 * low and high > 1e-3
    r = autocorrelation(_t(grid), max_lag=64)[0].numpy()
    ref = metric_autocorrelation(grid, max_lag=64)
    assert r.shape == ref.shape
    assert np.abs(r - ref).max() < 0.1 * ref.max()  # torch port of the metric's R (blur/energy-map details differ)
    assert r[64 + 32, 64] > 0.05 and r[64 + 32, 64 + 32] > 0.05  # peaks at the token stride


def test_periodicity_shared_with_the_reference_is_not_punished():
    # output and reference are different photos carrying the same 32-px grid: the output's grid is allowed
    out, ref = _t(_grid(natural(256, 256, 4))), _t(_grid(natural(256, 256, 7)))
    plain = _t(natural(256, 256, 7))
    shared, excess = ap_loss(out, ref).item(), ap_loss(out, plain).item()
    assert excess > 1e-3 and shared < 0.1 * excess


def test_missing_periodicity_is_not_punished():
    # the output lacks the reference's periodic texture: nothing is in excess, so the loss is (near) zero, not
    # the reference's negative autocorrelation lobes (ReLU(R_ref), module docstring)
    out, ref = _t(natural(256, 256, 4)), _t(_grid(natural(256, 256, 7)))
    grid_cost = ap_loss(_t(_grid(natural(256, 256, 4))), _t(natural(256, 256, 7))).item()
    missing = ap_loss(out, ref).item()
    assert missing < 0.02 * grid_cost
    assert ap_loss(out, _t(natural(256, 256, 7))).item() < 0.02 * grid_cost  # and natural vs natural: ~0 (margin)


def test_stride_lattice_weighted_up():
    w = lag_weights(64, 4, (32, 16), 4.0)
    assert w[64, 64] == 0 and w[64, 66] == 0  # centre excluded
    assert w[64, 64 + 5] == 1 and w[64 + 32, 64 + 32] == 5 and w[64 - 16, 64] == 5


@pytest.mark.parametrize("norm", ["ref", "self"])
def test_gradient_is_finite_and_removes_a_grid(norm):
    photo = natural(96, 96, 5)
    x = _t(_grid(photo, amp=10.0)).requires_grad_(True)
    ref = _t(photo)
    opt = torch.optim.Adam([x], lr=3e-3)
    start = ap_loss(x, ref, norm=norm).item()
    for _ in range(8):
        loss = ap_loss(x, ref, norm=norm)
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        opt.step()
    assert ap_loss(x, ref, norm=norm).item() < 0.5 * start
