"""core/fit/optim.py: plain mode is Adam; uniform mode keeps steps proportional to gradients."""

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


def test_state_round_trips_for_rollback():
    x = torch.ones(4, requires_grad=True)
    opt = Adam([{"params": [x], "lr": 0.1, "uniform": True}])
    (x ** 2).sum().backward()
    opt.step()
    saved = opt.state_dict()
    opt2 = Adam([{"params": [x], "lr": 0.1, "uniform": True}])
    opt2.load_state_dict(saved)
    assert float(opt2.state[x]["step"]) == 1.0
    assert torch.equal(opt2.state[x]["exp_avg"], opt.state[x]["exp_avg"])
