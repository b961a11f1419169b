"""KD, DKD, MLKD and logit standardisation against independent transcriptions and hand numbers.

The PyTorch functions below are written from the reference formulas (mdistiller's ``KD.py`` and
``DKD.py``, the MLKD authors' ``KD_ours.py``, Sun et al.'s ``normalize``) for these tests; each
sld_jax objective must match them in value and in gradient w.r.t. the student logits.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import losses

torch = pytest.importorskip("torch")
F = torch.nn.functional

B, C = 8, 10


@pytest.fixture
def batch(rng):
    """Student/teacher logits of two views and labels; some teacher rows are wrong."""
    arrays = {
        name: (rng.standard_normal((B, C)) * scale).astype(np.float32)
        for name, scale in (("sw", 2.0), ("ss", 2.0), ("tw", 3.0), ("ts", 3.0))
    }
    arrays["y"] = rng.integers(0, C, B).astype(np.int64)
    return arrays


def _torch_value_and_grads(objective, batch):
    sw = torch.tensor(batch["sw"], requires_grad=True)
    ss = torch.tensor(batch["ss"], requires_grad=True)
    loss = objective(sw, ss, torch.tensor(batch["tw"]), torch.tensor(batch["ts"]), torch.tensor(batch["y"]))
    loss.backward()
    grads = [np.zeros((B, C), np.float32) if x.grad is None else x.grad.numpy() for x in (sw, ss)]
    return loss.item(), grads[0], grads[1]


def _jax_value_and_grads(objective, batch, **kwargs):
    def loss(sw, ss):
        return objective(sw, ss, batch["tw"], batch["ts"], jnp.asarray(batch["y"], jnp.int32), **kwargs)[0]

    value, (gw, gs) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(batch["sw"], batch["ss"])
    return float(value), np.asarray(gw), np.asarray(gs)


def _assert_match(jax_out, torch_out, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(jax_out[0], torch_out[0], rtol=rtol)
    np.testing.assert_allclose(jax_out[1], torch_out[1], atol=atol)
    np.testing.assert_allclose(jax_out[2], torch_out[2], atol=atol)


# --- reference transcriptions -------------------------------------------------------------------


def torch_swap(logit, target):
    out = logit.clone()
    top = logit.argmax(1)
    wrong = target != top
    rows = torch.nonzero(wrong).flatten()
    out[rows, target[rows]], out[rows, top[rows]] = logit[rows, top[rows]], logit[rows, target[rows]]
    return out


def torch_kd(student, teacher, temperature):
    log_q = F.log_softmax(student / temperature, dim=1)
    p = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_q, p, reduction="none").sum(1).mean() * temperature**2


def torch_normalize(logit):
    return (logit - logit.mean(-1, keepdim=True)) / (1e-7 + logit.std(-1, keepdim=True))


def torch_dkd(student, teacher, target, alpha, beta, temperature):
    gt = torch.zeros_like(student).scatter_(1, target.unsqueeze(1), 1).bool()
    other = ~gt
    ps = F.softmax(student / temperature, dim=1)
    pt = F.softmax(teacher / temperature, dim=1)
    ps = torch.cat([(ps * gt).sum(1, keepdim=True), (ps * other).sum(1, keepdim=True)], 1)
    pt = torch.cat([(pt * gt).sum(1, keepdim=True), (pt * other).sum(1, keepdim=True)], 1)
    tckd = F.kl_div(torch.log(ps), pt, reduction="sum") * temperature**2 / target.shape[0]
    pt2 = F.softmax(teacher / temperature - 1000.0 * gt, dim=1)
    log_ps2 = F.log_softmax(student / temperature - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_ps2, pt2, reduction="sum") * temperature**2 / target.shape[0]
    return alpha * tckd + beta * nckd


def torch_cc(student, teacher, temperature):
    ps, pt = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    return ((pt.T @ pt - ps.T @ ps) ** 2).sum() / student.shape[1]


def torch_bc(student, teacher, temperature):
    ps, pt = F.softmax(student / temperature, 1), F.softmax(teacher / temperature, 1)
    return ((pt @ pt.T - ps @ ps.T) ** 2).sum() / student.shape[0]


def torch_mlkd_reference(
    sw, ss, tw, ts, y, temps=(4.0, 3.0, 5.0, 2.0, 6.0), ce_w=0.1, kd_w=0.9, standardize=False
):
    """The MLKD reference objective, quirks included, as in the authors' code.

    With ``standardize`` the instance-level KD terms see z-scored logits (Sun et al.'s MLKD with
    ``--logit-stand``); the masks and the batch/class terms keep the raw logits.
    """

    def kd_term(student, teacher, temperature):
        if standardize:
            student, teacher = torch_normalize(student), torch_normalize(teacher)
        return torch_kd(student, teacher, temperature)

    p = F.softmax(tw, 1)
    confidence = p.max(1).values
    mask = confidence <= float(np.percentile(confidence.numpy(), 50))
    class_confidence = p.sum(0)
    class_mask = class_confidence <= float(np.percentile(class_confidence.numpy(), 50))
    ce = ce_w * (F.cross_entropy(sw, y) + F.cross_entropy(ss, y))
    kd_weak = sum(kd_w * (kd_term(sw, tw, t) * mask).mean() for t in temps)
    strong_views = [(ss, ts)] * 3 + [(sw, tw)] * 2  # T = 2 and 6 use the weak view
    kd_strong = sum(kd_w * kd_term(s, t_, temp) for (s, t_), temp in zip(strong_views, temps))
    cc_weak = sum(kd_w * (torch_cc(sw, tw, t) * class_mask).mean() for t in temps)
    bc_weak = sum(kd_w * (torch_bc(sw, tw, t) * mask).mean() for t in temps)
    return ce + kd_weak + kd_strong + cc_weak + bc_weak


# --- KD -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [False, True])
def test_kd_objective_matches_mdistiller_kd(batch, swap):
    transform = losses.swap_logits if swap else None

    def reference(sw, ss, tw, ts, y):
        tw = torch_swap(tw, y) if swap else tw
        ts = torch_swap(ts, y) if swap else ts
        ce = 0.1 * (F.cross_entropy(sw, y) + F.cross_entropy(ss, y))
        return ce + 0.9 * (torch_kd(sw, tw, 4.0) + torch_kd(ss, ts, 4.0))

    _assert_match(
        _jax_value_and_grads(losses.kd_objective, batch, teacher_transform=transform),
        _torch_value_and_grads(reference, batch),
    )


def test_kd_objective_single_view_and_hand_value():
    # Two classes, T = 1: KL([0.5, 0.5] || softmax([0, log 3])) = 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75).
    s = jnp.array([[0.0, math.log(3.0)]])
    t = jnp.zeros((1, 2))
    loss, terms = losses.kd_objective(
        s, None, t, None, jnp.array([1]), temperature=1.0, ce_weight=0.0, kd_weight=1.0
    )
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    np.testing.assert_allclose(terms["kd"], expected, rtol=1e-6)
    np.testing.assert_allclose(losses.kd_loss(s, t, temperature=1.0), [expected], rtol=1e-6)


# --- DKD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", [False, True])
def test_dkd_objective_matches_mdistiller_dkd(batch, swap):
    transform = losses.swap_logits if swap else None
    alpha, beta, temperature, warmup = 1.0, 8.0, 4.0, losses.dkd_warmup_factor(5, warmup=20)

    def reference(sw, ss, tw, ts, y):
        del ss, ts  # mdistiller's DKD is single-view
        tw = torch_swap(tw, y) if swap else tw
        return F.cross_entropy(sw, y) + warmup * torch_dkd(sw, tw, y, alpha, beta, temperature)

    got = _jax_value_and_grads(
        lambda sw, ss, tw, ts, y, **kw: losses.dkd_objective(sw, None, tw, None, y, **kw),
        batch,
        alpha=alpha,
        beta=beta,
        temperature=temperature,
        warmup_factor=warmup,
        teacher_transform=transform,
    )
    _assert_match(got, _torch_value_and_grads(reference, batch))
    assert warmup == 0.25
    by_epoch = _jax_value_and_grads(
        lambda sw, ss, tw, ts, y, **kw: losses.dkd_objective(sw, None, tw, None, y, **kw),
        batch,
        alpha=alpha,
        beta=beta,
        temperature=temperature,
        epoch=5,
        warmup=20,
        teacher_transform=transform,
    )
    np.testing.assert_allclose(by_epoch[0], got[0], rtol=1e-6)


def test_dkd_hand_computed_parts():
    # Student uniform over 3 classes; teacher probabilities (0.5, 0.25, 0.25); label 0; T = 1.
    s = jnp.zeros((1, 3))
    t = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    y = jnp.array([0])
    tckd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))  # binary KL
    nckd = 0.0  # the non-target parts are both uniform
    np.testing.assert_allclose(
        losses.dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=1.0), [tckd + 8.0 * nckd], rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=1.0), [0.0], atol=1e-7
    )


# --- MLKD ---------------------------------------------------------------------------------------


def test_mlkd_reference_quirks_match_the_authors_code(batch):
    _assert_match(
        _jax_value_and_grads(losses.mlkd_objective, batch),
        _torch_value_and_grads(torch_mlkd_reference, batch),
    )


def test_mlkd_with_swap_matches_reference_on_swapped_teachers(batch):
    def reference(sw, ss, tw, ts, y):
        return torch_mlkd_reference(sw, ss, torch_swap(tw, y), torch_swap(ts, y), y)

    _assert_match(
        _jax_value_and_grads(losses.mlkd_objective, batch, teacher_transform=losses.swap_logits),
        _torch_value_and_grads(reference, batch),
    )


@pytest.mark.parametrize("swap", [False, True])
def test_ls_mlkd_matches_sun_et_al(batch, swap):
    """LS-MLKD (``--logit-stand --base-temp 2 --kd-weight 9``), and with swapped teachers (+ SLD)."""
    temps = (2.0, 3.0, 5.0, 2.0, 6.0)

    def reference(sw, ss, tw, ts, y):
        if swap:
            tw, ts = torch_swap(tw, y), torch_swap(ts, y)
        return torch_mlkd_reference(sw, ss, tw, ts, y, temps=temps, kd_w=9.0, standardize=True)

    _assert_match(
        _jax_value_and_grads(
            losses.mlkd_objective,
            batch,
            temperatures=temps,
            kd_weight=9.0,
            logit_standardization=True,
            teacher_transform=losses.swap_logits if swap else None,
        ),
        _torch_value_and_grads(reference, batch),
    )


def test_mlkd_corrected_form_by_hand(batch):
    """The corrected form, recomputed in numpy from its definition."""
    sw, ss, tw, ts, y = (batch[k] for k in ("sw", "ss", "tw", "ts", "y"))
    temps = losses.MLKD_TEMPERATURES

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def kl_rows(s, t, temp):
        p, q = softmax(t / temp), softmax(s / temp)
        return (p * (np.log(p) - np.log(q))).sum(-1) * temp**2

    p = softmax(tw)
    inst = p.max(1) <= np.percentile(p.max(1), 50)
    cls = p.sum(0) <= np.percentile(p.sum(0), 50)
    ce = np.mean(-np.log(softmax(sw)[np.arange(B), y])) + np.mean(-np.log(softmax(ss)[np.arange(B), y]))
    kd = sum(np.mean(kl_rows(sw, tw, t) * inst) + np.mean(kl_rows(ss, ts, t)) for t in temps)

    def gram_terms(s, t, temp, axis_weights, over_classes):
        ps, pt = softmax(s / temp), softmax(t / temp)
        gs, gt = (ps.T @ ps, pt.T @ pt) if over_classes else (ps @ ps.T, pt @ pt.T)
        w = np.ones(gs.shape[1]) if axis_weights is None else axis_weights
        return ((gt - gs) ** 2 * w[None, :]).sum() / (C if over_classes else B)

    cc = sum(gram_terms(sw, tw, t, cls, True) + gram_terms(ss, ts, t, None, True) for t in temps)
    bc = sum(gram_terms(sw, tw, t, inst, False) + gram_terms(ss, ts, t, inst, False) for t in temps)
    expected = 0.1 * ce + 0.9 * (kd + cc + bc)

    objective = jax.jit(lambda *a: losses.mlkd_objective(*a, reference_quirks=False))
    loss, terms = objective(sw, ss, tw, ts, jnp.asarray(y, jnp.int32))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(terms["cc"], 0.9 * cc, rtol=1e-5)
    np.testing.assert_allclose(terms["bc"], 0.9 * bc, rtol=1e-5)


def test_mlkd_padding_mask_equals_the_real_batch(batch):
    pad = 3
    padded = {
        k: np.concatenate([v, np.full((pad,) + v.shape[1:], np.nan if v.dtype.kind == "f" else -1, v.dtype)])
        for k, v in batch.items()
    }
    mask = jnp.arange(B + pad) < B

    @jax.jit
    def run(sw, ss, tw, ts, y, real_mask):
        out = {}
        for quirks in (True, False):

            def loss(sw):
                return losses.mlkd_objective(
                    sw, ss, tw, ts, y, where=real_mask, reference_quirks=quirks, temperatures=(4.0,)
                )[0]

            out[quirks] = jax.value_and_grad(loss)(sw)
        return out

    want = run(*(batch[k] for k in ("sw", "ss", "tw", "ts")), jnp.asarray(batch["y"], jnp.int32), None)
    have = run(*(padded[k] for k in ("sw", "ss", "tw", "ts")), jnp.asarray(padded["y"], jnp.int32), mask)
    for quirks in (True, False):
        got, grads = have[quirks]
        np.testing.assert_allclose(got, want[quirks][0], rtol=1e-5)
        np.testing.assert_allclose(np.asarray(grads)[:B], want[quirks][1], atol=1e-6)
        assert np.all(np.isfinite(grads)) and np.all(np.asarray(grads)[B:] == 0)


# --- logit standardisation -----------------------------------------------------------------------


def test_standardized_kd_matches_sun_et_al(batch):
    def reference(sw, ss, tw, ts, y):
        ce = 0.1 * (F.cross_entropy(sw, y) + F.cross_entropy(ss, y))
        kd = torch_kd(torch_normalize(sw), torch_normalize(tw), 2.0)
        kd = kd + torch_kd(torch_normalize(ss), torch_normalize(ts), 2.0)
        return ce + 9.0 * kd

    _assert_match(
        _jax_value_and_grads(losses.standardized_kd_objective, batch),
        _torch_value_and_grads(reference, batch),
        atol=1e-5,
    )


def test_standardize_logits_statistics_and_invariance(rng):
    z = jnp.asarray(rng.standard_normal((B, C)) * 5 + 3, jnp.float32)
    standardize = jax.jit(losses.standardize_logits)
    out = standardize(z)
    np.testing.assert_allclose(np.mean(out, -1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.std(out, -1, ddof=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(standardize(4.0 * z - 7.0), out, atol=1e-5)
    # A constant row has std 0: the result is 0 with a finite gradient.
    z = z.at[0].set(1.0)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(losses.standardize_logits(x) ** 2)))(z)
    assert np.all(np.isfinite(grad))


def test_dkd_accepts_standardisation(batch):
    y = jnp.asarray(batch["y"], jnp.int32)
    args = (batch["sw"], batch["ss"], batch["tw"], batch["ts"], y)
    scaled = (batch["sw"], batch["ss"], 3.0 * batch["tw"] - 1.0, 3.0 * batch["ts"], y)
    objective = jax.jit(losses.dkd_objective, static_argnames="logit_standardization")
    a = objective(*args, logit_standardization=True)[1]["kd"]
    b = objective(*scaled, logit_standardization=True)[1]["kd"]
    c = objective(*scaled, logit_standardization=False)[1]["kd"]
    # An affine change of the teacher leaves the z-scored DKD unchanged (and changes plain DKD).
    np.testing.assert_allclose(a, b, rtol=1e-4)
    assert abs(float(c) - float(a)) > 1e-3
