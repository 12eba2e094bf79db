"""Bilevel hypergradients and BO-REP against the best baseline (asv).

* ``Hypergradient.time_<estimator>``: one hypergradient estimate (``optlib.bilevel.hypergradient``) of each estimator
  ("cg", "neumann", "z-iterate", "unroll", "exact") on the hyper-cleaning task of
  ``optlib.problems.bilevel_tasks`` (digits, 300 training examples: x in R^300, y in R^650), one minibatch of 64
  at both levels, from a lower point refined by 50 SGD steps. Knobs: the estimators' defaults, except the
  Neumann and unroll step 1 (``1/l_g1`` of the task).
* ``Accuracy.track_test_acc_<method>``: clean-test accuracy after 600 oracle calls (``scale.bench.bilevel``'s quick
  sizes and the fixed settings of that module, steps at the grid centre) of ``bo-rep`` and of ``soba`` (the best
  baseline of the measured runs of hyper-cleaning), seed 0.
* ``TextAccuracy.track_test_acc_<method>``: clean-test accuracy of the recurrent hyper-cleaning task
  (``text-cleaning``: tiny-shakespeare lines, one-layer RNN lower level) after 4000 oracle calls, 600 training
  lines, seed 0, steps at the grid centre, for ``bo-rep`` and ``stocbio`` and ``soba``.

Single-threaded, as the report runs.
"""

from __future__ import annotations

import torch

from ._commit import requires, skip_if_absent

driver = requires("optlib.bilevel.driver")
hypergradients = requires("optlib.bilevel.hypergradient")
tasks = requires("optlib.problems.bilevel_tasks")
bb = requires("scale.bench.bilevel")
common = requires("scale.bench.common")

THREADS = 1
KNOBS = {"cg": {}, "neumann": {"alpha": 1.0, "check_step": False}, "z-iterate": {}, "unroll": {"lr": 1.0},
         "exact": {}}


class Hypergradient:
    timeout = 300
    number = 1
    repeat = (3, 10, 20.0)

    def setup(self):
        common.pin_threads(THREADS)
        self.hypergradient = hypergradients.hypergradient
        self.task = tasks.hyper_cleaning(n_train=300, n_val=150, seed=0)
        p = self.task.problem
        gen = torch.Generator().manual_seed(0)
        self.y = driver.sgd_lower(p, p.x0, p.y0, 50, 1.0, gen)
        self.ub, self.lb = p.batches(gen)

    def _run(self, method):
        p = self.task.problem
        self.hypergradient(p, p.x0, self.y, method, upper_batch=self.ub, lower_batch=self.lb,
                      generator=torch.Generator().manual_seed(1), **KNOBS[method])

    def time_cg(self):
        self._run("cg")

    def time_neumann(self):
        self._run("neumann")

    def time_z_iterate(self):
        self._run("z-iterate")

    def time_unroll(self):
        self._run("unroll")

    def time_exact(self):
        self._run("exact")


class Accuracy:
    timeout = 300

    def setup(self):
        common.pin_threads(THREADS)
        self.run_one, self.grid = bb.run_one, bb.grid
        self.cfg = bb.Config(**{**bb.PRESETS["quick"], "seeds": 1})

    def _acc(self, method):
        return self.run_one(self.cfg, "cleaning", method, self.grid("cleaning", method, 1)[0], 0)["final_acc"]

    def track_test_acc_bo_rep(self):
        return self._acc("bo-rep")

    def track_test_acc_soba(self):
        return self._acc("soba")

    track_test_acc_bo_rep.unit = "accuracy"
    track_test_acc_bo_rep.better = "higher"
    track_test_acc_soba.unit = "accuracy"
    track_test_acc_soba.better = "higher"


class TextAccuracy:
    timeout = 300

    def setup(self):
        common.pin_threads(THREADS)
        self.run_one, self.grid = bb.run_one, bb.grid
        skip_if_absent(bb.PRESETS, "text")  # the text-cleaning task came after the digits one
        self.cfg = bb.Config(**{**bb.PRESETS["text"], "seeds": 1, "budget": 4000, "text_n_train": 600})

    def _acc(self, method):
        task = "text-cleaning"
        return self.run_one(self.cfg, task, method, self.grid(task, method, 1)[0], 0)["final_acc"]

    def track_test_acc_bo_rep(self):
        return self._acc("bo-rep")

    def track_test_acc_stocbio(self):
        return self._acc("stocbio")

    def track_test_acc_soba(self):
        return self._acc("soba")

    track_test_acc_bo_rep.unit = "accuracy"
    track_test_acc_bo_rep.better = "higher"
    track_test_acc_stocbio.unit = "accuracy"
    track_test_acc_stocbio.better = "higher"
    track_test_acc_soba.unit = "accuracy"
    track_test_acc_soba.better = "higher"
