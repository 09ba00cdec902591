"""The serving scheduler without HTTP (edgediff.runtime.serve.scheduler): how one tick's
rows are packed, that a request alone is bitwise ``runtime.sample``, that under mixed
concurrent load every request stays within the float32 drift bound of its run alone
(edgediff.tolerance: the batch changes only the kernels' rounding; times |w| + |1 − w|
for guided requests, as the guided parity tests argue), and how requests join, leave
and are cancelled.

The model is the exact class-conditional 2-D mixture exported to ONNX: fast enough to
run thirteen solvers in a second."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgediff import runtime
from edgediff.catalogue import CATALOGUE
from edgediff.conditioning import guidance_gain
from edgediff.runtime import Condition, RunOptions
from edgediff.runtime.serve import Limits, RequestCancelledError, Scheduler, pack, plan_job
from edgediff.tolerance import TrajectoryScale


class Recorder:
    """The served denoiser, keeping each call's rows, σ's and class labels."""

    def __init__(self, denoiser, delay: float = 0.0):
        self.denoiser, self.info, self.delay = denoiser, denoiser.info, delay
        self.calls: list[dict] = []

    def __call__(self, x, sigma, **feeds):
        labels = feeds.get("class_labels")
        self.calls.append({"rows": len(x), "sigmas": sigma.copy(),
                           "labels": None if labels is None else labels.copy()})
        time.sleep(self.delay)
        return self.denoiser(x, sigma, **feeds)


def alone(path, body, callback=None):
    """The request's samples from ``runtime.sample``, as one batch, on an instance of the
    model of its own (an ONNX Runtime denoiser keeps the conditioning its last call wrote
    into its buffers of that batch size, and an unconditional run through ``bind``
    leaves them as they are)."""
    D = runtime.load(path, threads=1)
    return runtime.sample(D, body["n"], seed=body["seed"], solver=body["solver"],
                          steps=body["steps"], options=body.get("options"),
                          condition=Condition(body.get("class_label"), body.get("guidance"),
                                              None, None, body.get("guidance_interval")),
                          run=RunOptions(batch=body["n"], callback=callback))


def test_pack_fills_calls_in_arrival_order_and_splits_only_a_wide_submission():
    assert pack([3, 5, 9, 2], 10) == [[(0, 0, 3), (1, 0, 5)], [(2, 0, 9)], [(3, 0, 2)]]
    assert pack([4, 25, 3], 10) == [[(0, 0, 4), (1, 0, 6)], [(1, 6, 16)], [(1, 16, 25)],
                                    [(2, 0, 3)]]
    with pytest.raises(ValueError):
        pack([1], 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=12), st.integers(1, 16))
def test_pack_respects_max_batch_keeps_fifo_and_covers_every_row_once(sizes, max_batch):
    calls = pack(sizes, max_batch)
    assert all(0 < sum(b - a for _, a, b in call) <= max_batch for call in calls)
    pieces = [p for call in calls for p in call]
    assert [k for k, _, _ in pieces] == sorted(k for k, _, _ in pieces)  # FIFO
    for k, size in enumerate(sizes):
        mine = [(a, b) for j, a, b in pieces if j == k]
        assert mine[0][0] == 0 and mine[-1][1] == size
        assert all(b == a2 for (_, b), (a2, _) in itertools.pairwise(mine))
        assert len(mine) == 1 or size > max_batch  # split only when wider than a call


BODIES = {  # different solvers, step counts, labels and guidance, at once
    "heun": dict(n=3, seed=1, solver="heun", steps=8, class_label=[0, 1, 2]),
    "edm": dict(n=2, seed=2, solver="edm", steps=6, options={"S_churn": 10.0}),
    "dpmpp_2m": dict(n=2, seed=3, solver="dpmpp_2m", steps=10, class_label=1, guidance=2.5),
    "ddpm": dict(n=2, seed=4, solver="ddpm", steps=12, class_label=0, guidance=2.0,
                 guidance_interval=[0.5, 10.0]),
    "euler_ancestral": dict(n=1, seed=5, solver="euler_ancestral", steps=8, class_label=2),
    "unipc": dict(n=2, seed=6, solver="unipc", steps=6, guidance=3.0),
}


@pytest.mark.parametrize("name", ["heun", "edm", "euler_ancestral"])
def test_a_request_alone_is_bitwise_runtime_sample(mixture, mixture_path, name):
    """Alone, every call holds exactly the request's rows, as in runtime.sample: the
    same inputs to the same kernels, so the same bits."""
    body = BODIES[name]
    recorder = Recorder(mixture)
    with Scheduler(recorder) as scheduler:
        job = plan_job(mixture.info, body, Limits())
        got = scheduler.submit(job, job.rows).result(30)
    assert np.array_equal(got, alone(mixture_path, body))
    assert {c["rows"] for c in recorder.calls} == {body["n"]}
    assert len(recorder.calls) == CATALOGUE[name].nfe(body["steps"])


def test_mixed_concurrent_load_stays_within_the_drift_bound(mixture, mixture_path):
    """Six requests at once, 18 rows per step against max_batch 12: the later ones join
    as the first leave, calls mix rows at different σ's, and each request ends within
    its own trajectory's float32 drift bound of its run alone."""
    recorder = Recorder(mixture)
    with Scheduler(recorder, max_batch=12, gather_s=0.05) as scheduler:
        jobs = {name: plan_job(mixture.info, body, Limits()) for name, body in BODIES.items()}
        tickets = {name: scheduler.submit(job, job.rows) for name, job in jobs.items()}
        got = {name: ticket.result(60) for name, ticket in tickets.items()}
        assert scheduler.stats()["completed"] == len(BODIES)
    rows = [c["rows"] for c in recorder.calls]
    assert max(rows) <= 12 and max(rows) > max(job.rows for job in jobs.values())
    assert max(len(np.unique(c["sigmas"])) for c in recorder.calls) >= 3  # several steps
    for name, body in BODIES.items():
        scale = TrajectoryScale.for_solver(CATALOGUE[name], mixture.info.data_range)
        ref = alone(mixture_path, body, scale)
        bound = scale.bound() * (guidance_gain(body["guidance"]) if "guidance" in body else 1)
        err = np.abs(got[name] - ref).max()
        print(f"{name}: served vs alone {err:.2e}, bound {bound:.2e}")
        assert err <= bound
        other = alone(mixture_path, {**body, "seed": body["seed"] + 100})
        assert np.abs(got[name] - other).max() > bound  # the bound has teeth


def test_a_guided_request_sends_both_passes_in_one_call(mixture, mixture_path):
    body = BODIES["dpmpp_2m"] | {"n": 3, "class_label": [0, 1, 2]}
    recorder = Recorder(mixture)
    with Scheduler(recorder) as scheduler:
        job = plan_job(mixture.info, body, Limits())
        got = scheduler.submit(job, job.rows).result(30)
    assert job.rows == 6
    assert len(recorder.calls) == CATALOGUE["dpmpp_2m"].nfe(body["steps"])  # not twice
    null = mixture.info.null_label
    for call in recorder.calls:
        assert call["labels"].tolist() == [0, 1, 2, null, null, null]
        assert len(np.unique(call["sigmas"])) == 1
    scale = TrajectoryScale.for_solver(CATALOGUE["dpmpp_2m"], mixture.info.data_range)
    ref = alone(mixture_path, body, scale)
    assert np.abs(got - ref).max() <= guidance_gain(2.5) * scale.bound()


def _labelled(mixture, label: int, steps: int):
    return plan_job(mixture.info, dict(n=2, seed=label, solver="euler", steps=steps,
                                       class_label=label), Limits())


@pytest.mark.parametrize("mode", ["step", "request", "single"])
def test_batching_modes_decide_who_shares_a_call(mixture, mode):
    """Requests 0 (2 steps) and 1 (8 steps) fill max_batch 4; request 2 waits. In step
    mode it joins 1 as soon as 0 leaves; in request mode only after the whole group
    has finished; single mode never packs two requests."""
    recorder = Recorder(mixture)
    scheduler = Scheduler(recorder, max_batch=4, mode=mode, gather_s=0.05)
    jobs = [_labelled(mixture, k, steps) for k, steps in enumerate((2, 8, 4))]
    tickets = [scheduler.submit(job, job.rows) for job in jobs]  # all waiting at the start
    with scheduler:
        for ticket in tickets:
            ticket.result(30)
    together = [set(c["labels"].tolist()) for c in recorder.calls]
    assert all(len(c["labels"]) <= 4 for c in recorder.calls)
    if mode == "single":
        assert all(len(s) == 1 for s in together)
        assert [next(iter(s)) for s in together] == [0] * 2 + [1] * 8 + [2] * 4  # FIFO
    else:
        assert {0, 1} in together and {0, 2} not in together
        assert ({1, 2} in together) == (mode == "step")


def test_a_cancelled_request_leaves_the_batch_and_the_others_finish(mixture):
    recorder = Recorder(mixture, delay=0.002)
    with Scheduler(recorder, gather_s=0.05) as scheduler:
        slow, other = _labelled(mixture, 0, 400), _labelled(mixture, 1, 100)
        doomed = scheduler.submit(slow, slow.rows, deadline=time.monotonic() + 0.1)
        kept = scheduler.submit(other, other.rows)
        with pytest.raises(RequestCancelledError, match="deadline") as info:
            doomed.result(30)
        assert info.value.reason == "deadline"
        assert kept.result(30).shape == (2, 2)
        stats = scheduler.stats()
    assert stats["cancelled"] == {"deadline": 1} and stats["completed"] == 1
    zero = [k for k, c in enumerate(recorder.calls) if 0 in c["labels"]]
    assert 0 < len(zero) < 400 and zero == list(range(len(zero)))  # it ran, then left
    assert sum(1 in c["labels"] for c in recorder.calls) == 100  # the other, every step
    after = recorder.calls[zero[-1] + 1:]
    assert after and all(set(c["labels"]) == {1} for c in after)  # then alone
    assert threading.active_count() < 50
