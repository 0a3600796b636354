"""core/fit/optim.py: plain mode is Adam; uniform mode keeps steps proportional to gradients."""

import pytest
import torch

from core.fit.optim import Adam


def _quadratic_steps(opt_cls, steps=25, **kw):
    torch.manual_seed(0)
    x = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    a = torch.rand(50, 3, dtype=torch.float64) * 10
    opt = opt_cls([x], lr=0.01, **kw)
    for _ in range(steps):
        opt.zero_grad()
        (a * x ** 2).sum().backward()
        opt.step()
    return x.detach()


def test_plain_mode_matches_torch_adam():
    ours = _quadratic_steps(Adam)
    ref = _quadratic_steps(torch.optim.Adam)
    assert torch.allclose(ours, ref, atol=1e-10)


def test_uniform_mode_steps_follow_the_gradient():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.0, 0.01, 0.0], dtype=torch.float64)
    for uniform, ratio in ((False, 1.0), (True, 100.0)):
        with torch.no_grad():
            x.zero_()
        opt = Adam([x], lr=0.1, uniform=uniform)
        opt.zero_grad()
        (x * g).sum().backward()
        opt.step()
        step = -x.detach()
        # Plain Adam moves both coordinates by lr (sign-like); uniform keeps the 100:1 ratio.
        assert abs(step[0] / step[1] - ratio) < 1e-3 * ratio
        assert step[2] == 0


def test_restored_state_gives_the_same_next_step():
    """The loop's rollback copies ``state`` and puts it back: the next step must be the one it would have been."""
    x = torch.ones(4, requires_grad=True)
    opt = Adam([{"params": [x], "lr": 0.1, "uniform": True}])
    (x ** 2).sum().backward()
    opt.step()
    saved_x = x.detach().clone()
    saved = {p: {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()}
    opt.zero_grad()
    (x ** 2).sum().backward()
    opt.step()
    expected = x.detach().clone()
    with torch.no_grad():
        x.copy_(saved_x)
    opt.state.clear()
    opt.state.update(saved)
    opt.zero_grad()
    (x ** 2).sum().backward()
    opt.step()
    assert float(opt.state[x]["step"]) == 2.0
    assert torch.equal(x.detach(), expected)


def test_bad_arguments():
    with pytest.raises(ValueError, match="learning rate"):
        Adam([torch.zeros(1, requires_grad=True)], lr=-1)
    with pytest.raises(ValueError, match="no parameters"):
        Adam([])
