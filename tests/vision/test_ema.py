"""The weight average (vision/ema.py) by hand, and flip averaging at test time."""

import pytest
import torch
from torch import nn

from lmlab.vision.ema import WeightEMA, ema_decay, ema_update
from lmlab.vision.train import predict


def test_ema_update_by_hand():
    avg = [torch.tensor([1.0, 2.0]), torch.tensor([[-4.0]])]
    ema_update(avg, [torch.tensor([3.0, 0.0]), torch.tensor([[6.0]])], 0.75)
    # 0.75 * 1 + 0.25 * 3 = 1.5; 0.75 * 2 + 0 = 1.5; 0.75 * -4 + 0.25 * 6 = -1.5
    assert avg[0].tolist() == [1.5, 1.5] and avg[1].tolist() == [[-1.5]]


def test_ema_decay_warms_up_then_holds():
    assert ema_decay(1, 0.999) == pytest.approx(1 / 10, rel=1e-12)
    assert ema_decay(91, 0.999) == pytest.approx(91 / 100, rel=1e-12)  # t = 90
    assert ema_decay(10**6, 0.999) == 0.999
    assert ema_decay(5, 0.5) == pytest.approx(5 / 14, rel=1e-12)  # t = 4: below 0.5
    assert ema_decay(20, 0.5) == 0.5  # 20 / 29 > 0.5


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))


def test_weight_ema_follows_optimizer_steps_by_hand():
    net = _net()
    w0 = net[0].weight.detach().clone()
    ema = WeightEMA(net, 0.9)
    opt = ema.attach(torch.optim.SGD(net.parameters(), lr=1.0))
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    net(x).sum().backward()
    grad = net[0].weight.grad.clone()
    opt.step()
    w1 = w0 - grad
    # update 1: decay min(0.9, 1/10) = 0.1 -> 0.1 * w0 + 0.9 * w1
    assert ema.updates == 1
    assert torch.allclose(ema.avg["0.weight"], 0.1 * w0 + 0.9 * w1, rtol=0, atol=1e-6)
    # BN running mean: init 0, one batch with momentum 0.1 -> 0.1 * batch mean; averaged too
    rm = net[1].running_mean.clone()
    assert torch.allclose(ema.avg["1.running_mean"], 0.9 * rm, rtol=0, atol=1e-7)
    assert "1.num_batches_tracked" not in ema.avg  # integer buffers stay the model's
    opt.zero_grad()
    net(x).sum().backward()
    g2 = net[0].weight.grad.clone()
    opt.step()
    # update 2: decay min(0.9, 2/11)
    d = 2 / 11
    want = d * (0.1 * w0 + 0.9 * w1) + (1 - d) * (w1 - g2)
    assert torch.allclose(ema.avg["0.weight"], want, rtol=0, atol=1e-6)


def test_swapped_holds_the_average_then_restores_the_weights():
    net = _net()
    ema = WeightEMA(net, 0.9)
    ema.avg["0.weight"].fill_(7.0)
    before = net[0].weight.detach().clone()
    with ema.swapped():
        assert torch.equal(net[0].weight, torch.full_like(before, 7.0))
    assert torch.equal(net[0].weight, before)
    ema.copy_to()
    assert torch.equal(net[0].weight, torch.full_like(before, 7.0))


def test_the_average_travels_in_the_optimizer_state():
    net = _net()
    ema = WeightEMA(net, 0.9)
    opt = ema.attach(torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 2)).pow(2).sum().backward()
        opt.step()
    sd = opt.state_dict()
    assert sd["ema"]["updates"] == 3
    other = _net()
    ema2 = WeightEMA(other, 0.9)
    opt2 = ema2.attach(torch.optim.SGD(other.parameters(), lr=0.5, momentum=0.9))
    opt2.load_state_dict(sd)
    assert ema2.updates == 3 and "ema" in sd  # the caller's dict is left whole
    for n, t in ema.avg.items():
        assert torch.equal(ema2.avg[n], t), n
    plain = torch.optim.SGD(_net().parameters(), lr=0.5)
    with pytest.raises(KeyError, match="without ema"):
        ema2.attach(torch.optim.SGD(other.parameters(), lr=0.5)).load_state_dict(
            plain.state_dict())


def test_flip_averaging_is_the_mean_of_the_two_logits():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(7, 1, 6, 6)
    both = predict(net, x, batch_size=3, tta_flip=True)
    mean = (predict(net, x, batch_size=3) + predict(net, x.flip(3), batch_size=3)) / 2
    assert torch.allclose(both, mean, rtol=0, atol=1e-6)
    assert not torch.allclose(both, predict(net, x, batch_size=3))  # the mirror counted

    from types import SimpleNamespace

    from lmlab.vision.setup import test_logits

    cfg = SimpleNamespace(eval_batch_size=3, channels_last=False)
    plain, mirrored = test_logits(cfg, net, SimpleNamespace(x=x))
    assert torch.equal(plain, predict(net, x, batch_size=3))
    assert torch.allclose(mirrored, mean, rtol=0, atol=1e-6)
