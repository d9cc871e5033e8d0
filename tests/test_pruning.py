"""Pruning's rules and a point's decisions, on plain numbers (no store, no training)."""

from __future__ import annotations

import math

import pytest

from lstm_cli.fit.hooks.pruning import ASHA, MEDIAN, Pruner, keeps, rung_key, rungs
from lstm_cli.tracking.tags import PRUNED_TAG


def test_rungs_are_grace_times_powers_of_the_factor_before_the_last_epoch():
    assert rungs(10, 3, 100) == [10, 30, 90]
    assert rungs(2, 2, 16) == [2, 4, 8]  # 16 is the last epoch: nothing left to save there
    assert rungs(5, 3, 5) == []
    assert rungs(1, 2, 9) == [1, 2, 4, 8]


def test_median_stops_a_point_worse_than_the_median_of_the_others():
    assert not keeps(MEDIAN, 0.5, [0.9, 0.8, 0.1], 3, lower_is_better=False)  # median 0.8
    assert keeps(MEDIAN, 0.8, [0.9, 0.8, 0.1], 3, lower_is_better=False)  # equal: goes on
    assert keeps(MEDIAN, 0.5, [], 3, lower_is_better=False)  # the first point: nobody to lose to
    assert not keeps(MEDIAN, 2.0, [0.5, 0.4], 3, lower_is_better=True)  # a loss: lower wins
    assert keeps(MEDIAN, 0.3, [0.5, 0.4], 3, lower_is_better=True)


def test_asha_keeps_the_top_fraction_of_the_points_recorded_at_the_rung():
    others = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # with this point: 9 recorded
    assert keeps(ASHA, 0.75, others, 3, lower_is_better=False)  # in the top third
    assert not keeps(ASHA, 0.55, others, 3, lower_is_better=False)  # below it
    assert not keeps(ASHA, 0.1, [0.9], 3, lower_is_better=False)  # two recorded: the better goes on
    assert keeps(ASHA, 0.9, [0.1], 3, lower_is_better=False)
    # Ties at chance level (hopeless points): a point equal to the cutoff goes on, as in Ray.
    assert keeps(ASHA, 0.1, [0.1, 0.1], 3, lower_is_better=False)
    assert not keeps(ASHA, 0.1, [0.1, 0.9], 3, lower_is_better=False)
    assert keeps(ASHA, 0.2, [0.3, 0.9], 3, lower_is_better=True)  # a loss: lower wins


def test_a_diverged_point_loses_and_diverged_others_do_not_count():
    assert not keeps(ASHA, math.nan, [2.3], 3, lower_is_better=True)
    assert keeps(ASHA, math.nan, [], 3, lower_is_better=True)
    assert keeps(MEDIAN, 0.5, [math.nan, math.nan], 3, lower_is_better=False)


class Store:
    """What a sweep's store holds at each rung: this point's value and the others'."""

    def __init__(self, others: dict[str, list[float]], mine: dict[str, float] | None = None):
        self.others, self.mine = others, mine or {}
        self.reads: list[str] = []
        self.recorded: list[tuple[str, float, int]] = []
        self.away = False

    def read(self, key: str) -> tuple[float | None, list[float]]:
        self.reads.append(key)
        if self.away:
            raise ConnectionError("the server is away")
        return self.mine.get(key), self.others.get(key, [])

    def record(self, key: str, value: float, epoch: int) -> None:
        self.recorded.append((key, value, epoch))


def pruner(store: Store, kind: str = ASHA, metric: str = "val_accuracy") -> Pruner:
    return Pruner(kind, metric, 2, 2, 10, store.read, store.record)


def test_a_point_reads_and_records_at_its_rungs_only():
    store = Store({rung_key("val_accuracy", 2): [0.5], rung_key("val_accuracy", 4): [0.6]})
    p = pruner(store)
    decisions = [p.decide(epoch, 0.7) for epoch in range(1, 10)]
    assert decisions == [False] * 9 and p.pruned_at is None
    assert store.reads == ["rung/2/val_accuracy", "rung/4/val_accuracy", "rung/8/val_accuracy"]
    assert [(k, e) for k, _, e in store.recorded] == [
        (k, int(k.split("/")[1])) for k in store.reads
    ]


def test_a_losing_point_stops_at_the_rung_and_says_where():
    store = Store({rung_key("val_loss", 4): [0.2, 0.3]})
    p = pruner(store, metric="val_loss")
    assert not p.decide(2, 2.0)  # nobody at rung 2 yet
    assert p.decide(4, 2.0)
    assert p.pruned_at == 4
    assert store.recorded[-1] == ("rung/4/val_loss", 2.0, 4)  # recorded: later points see it


def test_a_rung_recorded_before_a_stop_is_not_recorded_again():
    key = rung_key("val_accuracy", 2)
    store = Store({key: [0.1]}, mine={key: 0.8})
    assert not pruner(store).decide(2, 0.8)
    assert store.recorded == []  # one value per rung and run, after a resume or a requeue


def test_a_store_that_cannot_be_read_never_stops_a_point():
    store = Store({rung_key("val_accuracy", 2): [0.9, 0.95]})
    store.away = True
    p = pruner(store)
    assert not p.decide(2, 0.1)
    assert store.recorded == [("rung/2/val_accuracy", 0.1, 2)]  # handed to the run's writer


def test_the_tag_is_the_one_the_summaries_read():
    from lstm_cli.sweeps import summary

    record = {"status": "FINISHED", "pruned_at_epoch": "4"}  # the tag, as the children read
    assert summary.status(record) == summary.PRUNED
    assert summary.status({"status": "FINISHED", "pruned_at_epoch": ""}) == "FINISHED"
    assert PRUNED_TAG == "pruned_at_epoch"  # the tag the points get
    assert summary.status({"status": "FAILED"}) == "FAILED"


@pytest.mark.parametrize("kind", ["median", "asha"])
def test_pruning_a_single_run_or_without_a_validation_split_is_one_line(kind):
    from lstm_cli.config import compose, schema
    from lstm_cli.runtime.errors import UserError

    with pytest.raises(UserError, match=f"prune={kind} compares the points of a sweep: add -m"):
        compose.preflight([f"prune={kind}"])
    cfg = compose.compose([f"prune={kind}", "data.val_size=0"])
    with pytest.raises(UserError, match=f"prune={kind} needs a validation split"):
        schema.check(cfg)
    with pytest.raises(UserError, match=r"prune\.reduction_factor=1 is invalid"):
        schema.check(compose.compose([f"prune={kind}", "prune.reduction_factor=1"]))
